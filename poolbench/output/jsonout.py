"""Results as JSON (docs/results.md describes every key)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from ..result import SCHEMA_VERSION, RunResult
from .files import write_text


def result_document(results: list[RunResult]) -> dict[str, Any]:
    """One run is written as itself; several (variants) as ``{"runs": [...]}``."""
    if len(results) == 1:
        return results[0].to_dict()
    return {"schema_version": SCHEMA_VERSION, "runs": [r.to_dict() for r in results]}


def results_of(document: dict[str, Any]) -> list[RunResult]:
    """The runs of a document written by ``result_document``."""
    runs = document.get("runs", [document])
    return [RunResult.from_dict(run) for run in runs]


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(document: dict[str, Any], path: str, stdout: TextIO | None = None) -> None:
    """Write to ``path`` atomically; ``-`` is stdout."""
    write_text(path, dumps(document), stdout)
