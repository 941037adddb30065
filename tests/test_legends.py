"""A table's legend explains exactly the columns that table shows."""

from __future__ import annotations

import json
from pathlib import Path

from poolbench.output.compare import MEANINGS, comparison_table
from poolbench.output.summary import TIMELINE_MEANINGS, timeline_table
from poolbench.result.document import load_document

DATA = Path(__file__).parent / "data"


def runs(name: str, copies: int = 1):
    run = json.loads((DATA / name).read_text(encoding="utf-8"))
    return load_document({"schema_version": 1, "runs": [run] * copies}).runs


def explained(caption: str, meanings: dict[str, str]) -> set[str]:
    return {name for name, meaning in meanings.items() if meaning in caption}


def test_timeline_legend_names_only_the_columns_shown():
    for name in ("bursts.json", "failover.json", "rare-leak.json"):
        table = timeline_table(runs(name)[0])
        shown = {str(column.header) for column in table.columns}
        assert explained(str(table.caption), TIMELINE_MEANINGS) == shown & set(TIMELINE_MEANINGS)
        assert "inval" in shown and "connections invalidated" in str(table.caption)


def test_comparison_legend_names_only_the_columns_shown():
    table = comparison_table(runs("bursts.json", 2))
    shown = {str(column.header) for column in table.columns}
    assert "refused" not in shown  # nobody hit too many connections
    assert explained(str(table.caption), MEANINGS) == shown & set(MEANINGS)
    assert "too many connections" not in str(table.caption)
