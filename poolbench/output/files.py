"""Writing result files: atomically, so a reader (or a CI upload) never sees half a file."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import TextIO


def write_text(path: str | Path, text: str, stdout: TextIO | None = None) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename; ``-`` is stdout."""
    if str(path) == "-":
        out = stdout or sys.stdout
        out.write(text)
        out.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a plain open() (not mkstemp, which makes 0600 files) so the file gets the usual
    # permissions of the umask, like any other file the user writes
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
