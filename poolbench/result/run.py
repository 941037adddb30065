"""One run as a whole: its timeline of samples, its summary, and what it was set up with.

Renderers (terminal, JSON, CSV, HTML) are pure functions of these classes; none of
them touches engine state. ``to_dict()`` gives the JSON form documented in
docs/results.md; bump SCHEMA_VERSION when a key changes meaning or disappears.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import Record, build
from .nodes import GroupLatencies, MergeInfo, NodeInfo
from .settings import (
    DatabaseInfo,
    LoadInfo,
    PoolInfo,
    ProcessInfo,
    ScenarioInfo,
    settings_label,
    variant_label,
)
from .summary import Summary
from .timeline import Sample, TimelineRow, fold, server_state_order

SCHEMA_VERSION = 1


@dataclass
class FaultEvent(Record):
    """Something a scenario's faults did to the server during the run."""

    t_s: float
    kind: str  # "kill" or "restart"
    detail: str
    ended: int | None = None  # connections the server ended (kill)
    error: str | None = None


@dataclass
class RunHeader(Record):
    """What a run is about to do, for the live view's first lines."""

    run_id: str
    scenario: str
    description: str
    database: DatabaseInfo
    pool: PoolInfo  # each process's pool
    load: LoadInfo  # its phases are the ones the run will drive
    pool_size: int  # every process's pool_size together (0 for NullPool)
    capacity: int | None  # the most connections the run may open; None when unlimited
    concurrency: int  # threads driving the load: workers, or the open loop's bound
    phased: bool  # the scenario declared phases (else one phase of its whole duration)
    duration_s: float
    interval_s: float
    variant: dict[str, Any] | None = None
    variant_name: str | None = None
    processes: int = 1

    def label(self, otherwise: str = "") -> str:
        """The variant this run is, named as every output names it (RunResult.label)."""
        return variant_label(self.variant_name, self.variant, otherwise)


@dataclass
class Progress(Record):
    """The run so far, handed to the live view with each sample."""

    elapsed_s: float
    duration_s: float
    phase: str
    operations: int
    ok: int
    timeouts: int
    errors: int
    leaked: int
    leaked_open: int
    throughput_ops_s: float
    first_timeout_at_s: float | None
    first_timeout_message: str | None


@dataclass
class RunResult(Record):
    """Everything one run measured, as written to --json."""

    run_id: str
    scenario: ScenarioInfo
    started_at: str
    database: DatabaseInfo
    pool: PoolInfo
    load: LoadInfo
    interval_s: float
    timeline: list[Sample]
    summary: Summary
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    variant: dict[str, Any] | None = None
    variant_name: str | None = None
    faults: list[FaultEvent] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)  # a fleet's, one each
    node: NodeInfo | None = None  # set when the run was one node of many (run --join)
    histograms: list[GroupLatencies] | None = None  # set for nodes, for an exact merge
    merge: MergeInfo | None = None  # set for the merge of a run's nodes (poolbench merge)

    OMIT_NONE = frozenset({"node", "histograms", "merge"})

    def header(self) -> RunHeader:
        """The header the live view showed, rebuilt from what the run recorded, for
        outputs that had no live view (``--progress none``, ``poolbench report``)."""
        processes = max(1, len(self.processes))
        load = self.load
        per_pool = self.pool.pool_size or 0 if self.pool.poolclass == "QueuePool" else 0
        last_t = self.timeline[-1].t_s if self.timeline else 0.0
        return RunHeader(
            run_id=self.run_id,
            scenario=self.scenario.name,
            description=self.scenario.description,
            database=self.database,
            pool=self.pool,
            load=load,
            pool_size=per_pool * processes,
            capacity=self.summary.server.worst_case,
            concurrency=load.workers if load.workers is not None else load.max_concurrency or 0,
            phased=len(load.phases) > 1,
            duration_s=self.scenario.duration_s or last_t,
            interval_s=self.interval_s,
            variant=self.variant,
            variant_name=self.variant_name,
            processes=processes,
        )

    def label(self, otherwise: str = "") -> str:
        """How every output names this run of a comparison: the variant's name, else the
        settings it changed (``pre_ping=True, recycle=1s``), else ``otherwise``."""
        return variant_label(self.variant_name, self.variant, otherwise)

    @property
    def changed(self) -> str:
        """The settings this variant changed, ``""`` for none."""
        return settings_label(self.variant) if self.variant else ""

    def server_states(self) -> list[str]:
        """Every connection state the server reported during the run, in display order."""
        return server_state_order(
            state
            for sample in self.timeline
            for state in sample.server_connections or {}
            if state != "total"
        )

    def timeline_rows(self, max_rows: int) -> list[TimelineRow]:
        """The timeline in at most ``max_rows`` rows (see :func:`timeline.fold`)."""
        return fold(self.timeline, max_rows)

    @property
    def capacity(self) -> int | None:
        """Most connections the run could hold at once: a fleet's worst case, else the
        pool's own capacity (older results recorded no worst case); None when unlimited."""
        if self.summary.server.worst_case is not None:
            return self.summary.server.worst_case
        return self.pool.capacity

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """A result read back from its JSON form (``poolbench report``).

        Keys this version does not know are ignored; keys it expects but the document
        lacks take their default, or None, so results of other versions still render.
        """
        check_version(data)
        return build(cls, data)  # type: ignore[no-any-return]


def check_version(data: Mapping[str, Any]) -> None:
    """ValueError when ``data`` was written by a newer poolbench than this one."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"schema_version {version!r} is newer than this poolbench reads ({SCHEMA_VERSION})"
        )
