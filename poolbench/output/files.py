"""Writing result files safely, whatever the path names.

- A regular file or a missing path is replaced atomically (a temporary file beside it,
  then a rename), so a reader or a CI upload never sees half a file.
- Anything else that can be written (a character device such as ``/dev/null``, a FIFO,
  a symlink to either) is opened and written in place: renaming over it would replace
  the device with a regular file.
- A directory, or a path that cannot be written, is refused. :func:`check_paths` runs
  the same tests before a run starts, so a long run never ends with its results lost.

Failures raise :class:`~poolbench.errors.OutputFileError`, naming the file.
"""

from __future__ import annotations

import os
import stat
import sys
import uuid
from pathlib import Path
from typing import TextIO

from ..errors import OutputFileError

STDOUT = "-"


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _kind(path: Path) -> str:
    """'missing', 'regular', 'directory' or 'special' (device, FIFO, socket), after symlinks."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write: {_describe(exc)}") from None
    if stat.S_ISREG(mode):
        return "regular"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special"


def _existing_ancestor(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_path(path: str | os.PathLike[str]) -> None:
    """Refuse, before anything is measured, a path that :func:`write_text` could not write."""
    if os.fspath(path) == STDOUT:
        return
    target = Path(path)
    kind = _kind(target)
    if kind == "directory":
        raise OutputFileError(f"{target}: is a directory; give a file name")
    if kind in ("regular", "special"):
        if not os.access(target, os.W_OK):
            raise OutputFileError(f"{target}: cannot write: permission denied")
        return
    ancestor = _existing_ancestor(target)
    if not ancestor.is_dir():
        raise OutputFileError(f"{target}: cannot write: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputFileError(f"{target}: cannot write: {ancestor} is not writable")


def check_paths(*paths: str | os.PathLike[str] | None) -> None:
    """:func:`check_path` for each path given (``None`` for an output not asked for)."""
    for path in paths:
        if path is not None and os.fspath(path) != "":
            check_path(path)


def write_text(path: str | os.PathLike[str], text: str, stdout: TextIO | None = None) -> None:
    """Write ``text`` to ``path`` (``-`` is stdout); OutputFileError naming it if that fails."""
    if os.fspath(path) == STDOUT:
        out = stdout or sys.stdout
        out.write(text)
        out.flush()
        return
    target = Path(path)
    kind = _kind(target)
    try:
        if kind == "directory":
            raise IsADirectoryError(21, "is a directory")
        if kind == "special":
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(text)
        elif kind == "regular":
            real = Path(os.path.realpath(target))
            if os.access(real.parent, os.W_OK | os.X_OK):
                _replace(real, text)
            else:  # a writable file in a directory we cannot add to: in place
                with open(real, "w", encoding="utf-8") as fh:
                    fh.write(text)
        else:
            _replace(target, text)
    except OSError as exc:
        raise OutputFileError(f"{target}: cannot write: {_describe(exc)}") from None


def _replace(target: Path, text: str) -> None:
    """Write via a temporary file in the same directory and a rename over ``target``."""
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
