"""Results as JSON (docs/results.md describes every key)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from ..result import SCHEMA_VERSION, RunResult


def result_document(results: list[RunResult]) -> dict[str, Any]:
    """One run is written as itself; several (from --vary) as ``{"runs": [...]}``."""
    if len(results) == 1:
        return results[0].to_dict()
    return {"schema_version": SCHEMA_VERSION, "runs": [r.to_dict() for r in results]}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(document: dict[str, Any], path: str, stdout: TextIO | None = None) -> None:
    """Write to ``path`` atomically (a reader never sees half a file); ``-`` is stdout."""
    text = dumps(document)
    if path == "-":
        out = stdout or sys.stdout
        out.write(text)
        out.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
