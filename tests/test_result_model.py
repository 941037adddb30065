"""The typed result model: every saved document reads back and writes out the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from poolbench.result import (
    LoadInfo,
    PhaseInfo,
    PoolInfo,
    RunResult,
    WorkloadInfo,
    pool_capacity,
)
from poolbench.result.document import load_document
from poolbench.scenario.model import Load, Phase, PoolSettings, WorkloadGroup

from .conftest import run_yaml

DATA = Path(__file__).parent / "data"
RUN_DOCUMENTS = sorted(
    p for p in DATA.glob("*.json") if "run_id" in json.loads(p.read_text(encoding="utf-8"))
)


FRESH = """
name: fresh
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.5s}
workload:
  - {name: ok, share: 90%}
  - {session: leaky, share: 10%}
load: {workers: 3}
duration: 1s
interval: 250ms
leak_detection: 0.3s
thresholds: {timeouts: "< 1000"}
"""


def runs_in(document: dict[str, Any]) -> list[dict[str, Any]]:
    if document.get("kind") == "size" or "runs" in document:
        return list(document["runs"])
    return [document]


def as_in(written: Any, original: Any) -> Any:
    """``written`` cut down to the keys ``original`` has (newer versions add keys)."""
    if isinstance(original, dict) and isinstance(written, dict):
        return {
            k: as_in(written[k], v) if k in written else KeyError(k) for k, v in original.items()
        }
    if isinstance(original, list) and isinstance(written, list) and len(original) == len(written):
        return [as_in(w, o) for w, o in zip(written, original, strict=True)]
    return written


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.name)
def test_every_saved_run_round_trips(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    runs = runs_in(document)
    assert runs
    for run in runs:
        result = RunResult.from_dict(run)
        written = result.to_dict()
        # every key and value the document carries comes back unchanged (keys added since
        # take their default), and reading our own output gives the same object
        assert as_in(written, run) == run
        assert RunResult.from_dict(written) == result
        assert json.loads(json.dumps(written)) == written


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.name)
def test_every_saved_document_round_trips_whole(path: Path) -> None:
    """One run, a comparison and a sizing (its predictions, trials, recommendation)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    typed = load_document(document)
    written = typed.to_dict()
    assert as_in(written, document) == document
    assert load_document(written) == typed
    assert typed.compared == ("runs" in document)
    assert (typed.sizing is not None) == (document.get("kind") == "size")


@pytest.mark.postgres
def test_a_fresh_run_round_trips_exactly(pg_url: str) -> None:
    """What this version writes, it reads back to the same object and the same JSON."""
    result = run_yaml(FRESH, pg_url)
    written = json.loads(json.dumps(result.to_dict()))
    assert RunResult.from_dict(written) == result
    assert RunResult.from_dict(written).to_dict() == written
    assert written["pool"]["pool_size"] == 2 and written["load"]["model"] == "closed"
    assert "rate" not in written["load"] and "name" in written["load"]["phases"][0]
    assert written["summary"]["leak_sites"] and written["summary"]["passed"] is True


def test_older_documents_take_defaults_for_keys_they_lack() -> None:
    run = json.loads((DATA / "bursts.json").read_text(encoding="utf-8"))
    assert "faults" not in run and "leak_detection_s" not in run["scenario"]
    result = RunResult.from_dict(run)
    assert result.faults == [] and result.processes == []
    assert result.scenario.leak_detection_s is None
    assert result.load.workload[0].task is None
    assert isinstance(result.pool, PoolInfo) and result.pool.capacity == 8
    assert isinstance(result.load.phases[0], PhaseInfo)


def test_a_newer_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="schema_version 99 is newer"):
        RunResult.from_dict({"schema_version": 99})


@pytest.mark.parametrize(
    ("poolclass", "size", "overflow", "capacity"),
    [
        ("QueuePool", 5, 10, 15),
        ("QueuePool", 5, 0, 5),
        ("QueuePool", 0, 10, None),  # pool_size 0: no limit
        ("QueuePool", 5, -1, None),  # max_overflow -1: no limit
        ("NullPool", 5, 10, None),
        ("QueuePool", None, 10, None),  # not recorded
    ],
)
def test_the_capacity_rule(
    poolclass: str, size: int | None, overflow: int, capacity: int | None
) -> None:
    assert pool_capacity(poolclass, size, overflow) == capacity
    info = PoolInfo(poolclass=poolclass, pool_size=size or 0, max_overflow=overflow, pool_timeout=1)
    assert info.capacity == capacity
    if size is not None:
        settings = PoolSettings(poolclass=poolclass, pool_size=size, max_overflow=overflow)
        assert settings.capacity == capacity


@pytest.mark.parametrize(
    ("model", "record"),
    [(PoolSettings, PoolInfo), (Load, LoadInfo), (Phase, PhaseInfo), (WorkloadGroup, WorkloadInfo)],
)
def test_every_scenario_setting_has_a_place_in_the_result(model: Any, record: Any) -> None:
    """A key added to the scenario but not to the result would vanish from --json."""
    assert set(model.model_fields) <= set(record.__dataclass_fields__)


def test_load_omits_what_the_scenario_did_not_set() -> None:
    load = LoadInfo(
        model="closed", workers=4, phases=[PhaseInfo(name="steady", duration=2.0, workers=4)]
    )
    assert load.to_dict() == {
        "model": "closed",
        "workers": 4,
        "phases": [{"name": "steady", "duration": 2.0, "workers": 4}],
        "workload": [],
    }
