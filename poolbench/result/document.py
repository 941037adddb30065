"""What one result file holds, typed: one run, the variants of a comparison, or a sizing.

:func:`load_document` reads any document ``--json`` wrote, of this schema version or an
older one; every renderer (terminal, JSON, CSV, JUnit, HTML) takes the
:class:`ResultDocument` it returns, or the :class:`RunResult` objects in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .run import SCHEMA_VERSION, RunResult, check_version
from .sizing import SizingResult


@dataclass
class ResultDocument:
    """One run, or several (``{"runs": [...]}``: variants, or a sizing search's trials)."""

    runs: list[RunResult]
    compared: bool = False  # written as {"runs": [...]}, each run a variant
    sizing: SizingResult | None = None

    @classmethod
    def of(cls, results: Sequence[RunResult]) -> ResultDocument:
        """One run is written as itself; several (variants) as ``{"runs": [...]}``."""
        return cls(list(results), compared=len(results) != 1)

    @classmethod
    def of_sizing(cls, sizing: SizingResult) -> ResultDocument:
        return cls(list(sizing.runs), compared=True, sizing=sizing)

    def to_dict(self) -> dict[str, Any]:
        if self.sizing is not None:
            return self.sizing.to_dict()
        if not self.compared:
            return self.runs[0].to_dict()
        return {"schema_version": SCHEMA_VERSION, "runs": [r.to_dict() for r in self.runs]}


def load_document(data: Mapping[str, Any]) -> ResultDocument:
    """``data`` (a parsed --json file) typed. ValueError when it is no result poolbench
    wrote, or was written by a newer version; KeyError or TypeError when it is malformed."""
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    check_version(data)
    if data.get("kind") == "size":
        return ResultDocument.of_sizing(SizingResult.from_dict(data))
    if "runs" in data:
        runs = data["runs"]
        if not isinstance(runs, list) or not all(isinstance(r, Mapping) for r in runs):
            raise ValueError("runs is not a list of results")
        return ResultDocument([RunResult.from_dict(r) for r in runs], compared=True)
    return ResultDocument([RunResult.from_dict(data)])
