"""Results as JSON (docs/results.md describes every key)."""

from __future__ import annotations

import json
from typing import TextIO

from ..result.document import ResultDocument
from .files import write_text


def dumps(document: ResultDocument) -> str:
    return json.dumps(document.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(document: ResultDocument, path: str, stdout: TextIO | None = None) -> None:
    """Write to ``path`` atomically; ``-`` is stdout."""
    write_text(path, dumps(document), stdout)
