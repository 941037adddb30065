"""Plain data that flows out of a run: the timeline, the summary and the whole result.

Renderers (terminal, JSON, CSV, HTML) are pure functions of these classes; none of
them touches engine state. ``to_dict()`` gives the JSON form documented in
docs/results.md; bump SCHEMA_VERSION when a key changes meaning or disappears.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1

ERROR_KINDS: tuple[str, ...] = ("timeout", "disconnect", "too_many_connections", "other")


@dataclass
class Percentiles:
    """Latency percentiles in milliseconds (None when nothing was measured)."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclass
class Sample:
    """The pool, the load and the server at one instant (counters cover the interval before it)."""

    t_s: float
    phase: str
    checked_out: int
    checked_in: int
    overflow: int
    waiting: int
    operations: int
    ok: int
    timeouts: int
    errors: int
    checkout_wait_p99_ms: float | None
    connects: int
    invalidations: int
    gc_returned: int
    leaked_open: int
    server_connections: dict[str, int] | None
    stale: int | None = None
    disconnects: int = 0
    recycles: int = 0  # connections replaced for age (pool_recycle) in the interval
    pre_ping_recoveries: int = 0  # checkouts whose ping failed and were reconnected
    soft_invalidations: int = 0
    pool_status: str | None = None


@dataclass
class ErrorExample:
    """One distinct error message, with the driver's code when it has one."""

    code: str | None
    message: str
    count: int
    first_at_s: float


@dataclass
class ErrorKindStats:
    """Every error of one kind: how many, and the first examples of each message."""

    count: int = 0
    first_at_s: float | None = None
    examples: list[ErrorExample] = field(default_factory=list)


@dataclass
class CheckResult:
    """One threshold or expectation, evaluated."""

    metric: str
    condition: str
    value: float | str | None
    ok: bool
    source: str  # "threshold" or "expect"


@dataclass
class GroupSummary:
    """One workload group's share of the outcome."""

    name: str
    session: str
    operations: int
    ok: int
    errors: int
    leaked: int
    checkout_wait_ms: Percentiles
    hold_ms: Percentiles


@dataclass
class PoolEvents:
    """What the pool's events reported over the run."""

    connects: int = 0
    reconnects: int = 0
    closes: int = 0
    invalidations: int = 0
    soft_invalidations: int = 0
    recycles: int = 0
    pre_ping_recoveries: int = 0
    gc_returned: int = 0

    def plus(self, other: PoolEvents) -> PoolEvents:
        """Both processes' events together (a fleet's are summed)."""
        return PoolEvents(**{k: v + getattr(other, k) for k, v in vars(self).items()})


@dataclass
class LeakSite:
    """A call site that checked out connections which stayed out past leak_detection."""

    site: str  # "path/to/file.py:42 in function"
    stack: list[str] = field(default_factory=list)  # innermost first
    count: int = 0
    longest_hold_s: float = 0.0
    held_at_end: int = 0


@dataclass
class Holder:
    """Connections checked out from one call site at a moment."""

    site: str
    count: int
    oldest_s: float


@dataclass
class Summary:
    """The figures a run is judged by. ``figures()`` flattens them for thresholds."""

    duration_s: float
    operations: int
    ok: int
    throughput_ops_s: float
    timeouts: int
    first_timeout_at_s: float | None
    first_timeout_message: str | None
    errors: dict[str, ErrorKindStats]
    checkout_wait_ms: Percentiles
    hold_ms: Percentiles
    wait_probability: float | None  # share of checkouts that waited more than 1 ms
    max_checked_out: int
    max_overflow: int
    max_waiting: int
    max_server_connections: int | None
    max_stale: int | None
    leaked: int
    leaked_at_first_timeout: int | None
    injected_errors: int
    keepalive_pings: int
    keepalive_errors: int
    dropped_arrivals: int
    late_arrivals: int
    pool_events: PoolEvents
    sqlalchemy_warnings: list[ErrorExample]
    groups: list[GroupSummary]
    server_connections_at_exit: int | None = None
    terminated_at_exit: int = 0
    processes: int = 1
    worst_case_connections: int | None = None  # processes x (pool_size + max_overflow)
    connection_headroom: int | None = None  # available connections - worst case
    leak_sites: list[LeakSite] = field(default_factory=list)
    holders_at_first_timeout: list[Holder] | None = None
    thresholds: list[CheckResult] = field(default_factory=list)
    expectations: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.thresholds) and all(c.ok for c in self.expectations)

    @property
    def error_count(self) -> int:
        return sum(k.count for k in self.errors.values())

    def figures(self) -> dict[str, float | str | None]:
        """Every figure a threshold or an expectation may name (see checks.METRICS)."""
        wait, hold = self.checkout_wait_ms, self.hold_ms
        ev = self.pool_events
        return {
            "operations": self.operations,
            "ok": self.ok,
            "throughput": self.throughput_ops_s,
            "timeouts": self.timeouts,
            "errors": self.error_count,
            "disconnects": self.errors["disconnect"].count,
            "too_many_connections": self.errors["too_many_connections"].count,
            "other_errors": self.errors["other"].count,
            "error_rate": self.error_count / self.operations if self.operations else 0.0,
            "first_timeout_at_s": self.first_timeout_at_s,
            "first_timeout_message": self.first_timeout_message,
            "checkout_wait_mean_ms": wait.mean,
            "checkout_wait_p50_ms": wait.p50,
            "checkout_wait_p90_ms": wait.p90,
            "checkout_wait_p99_ms": wait.p99,
            "checkout_wait_max_ms": wait.max,
            "wait_probability": self.wait_probability,
            "hold_p50_ms": hold.p50,
            "hold_p99_ms": hold.p99,
            "hold_max_ms": hold.max,
            "max_checked_out": self.max_checked_out,
            "max_overflow": self.max_overflow,
            "max_waiting": self.max_waiting,
            "max_server_connections": self.max_server_connections,
            "max_stale": self.max_stale,
            "leaked": self.leaked,
            "leaked_at_first_timeout": self.leaked_at_first_timeout,
            "injected_errors": self.injected_errors,
            "keepalive_pings": self.keepalive_pings,
            "keepalive_errors": self.keepalive_errors,
            "dropped_arrivals": self.dropped_arrivals,
            "late_arrivals": self.late_arrivals,
            "connects": ev.connects,
            "reconnects": ev.reconnects,
            "invalidations": ev.invalidations,
            "recycles": ev.recycles,
            "pre_ping_recoveries": ev.pre_ping_recoveries,
            "gc_returned": ev.gc_returned,
            "server_connections_at_exit": self.server_connections_at_exit,
            "leak_suspects": sum(site.count for site in self.leak_sites or []),
            "first_too_many_connections_at_s": self.errors["too_many_connections"].first_at_s,
            "worst_case_connections": self.worst_case_connections,
            "connection_headroom": self.connection_headroom,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


@dataclass
class DatabaseInfo:
    """The database the run used; ``url`` never carries a password."""

    url: str
    dialect: str
    driver: str
    server_version: str
    embedded: bool = False
    max_connections: int | None = None
    source: str = ""  # "--url", "POOLBENCH_URL", "scenario", "embedded"
    reserved_connections: int | None = None  # slots only superusers may use
    superuser: bool | None = None
    connections_in_use: int | None = None  # by every client, when the run started
    available_connections: int | None = None  # what this user could still open then


@dataclass
class FaultEvent:
    """Something a scenario's faults did to the server during the run."""

    t_s: float
    kind: str  # "kill" or "restart"
    detail: str
    ended: int | None = None  # connections the server ended (kill)
    error: str | None = None


@dataclass
class RunHeader:
    """What a run is about to do, for the live view's first lines."""

    run_id: str
    scenario: str
    description: str
    database: DatabaseInfo
    pool_line: str
    pool_size: int
    capacity: int | None
    pool_timeout_s: float
    load_line: str
    duration_s: float
    interval_s: float
    phases: list[dict[str, Any]]
    variant: dict[str, Any] | None = None
    variant_name: str | None = None
    processes: int = 1


@dataclass
class Progress:
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
class RunResult:
    """Everything one run measured, as written to --json."""

    run_id: str
    scenario: dict[str, Any]
    started_at: str
    database: DatabaseInfo
    pool: dict[str, Any]
    load: dict[str, Any]
    interval_s: float
    timeline: list[Sample]
    summary: Summary
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    variant: dict[str, Any] | None = None
    variant_name: str | None = None
    faults: list[FaultEvent] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)  # a fleet's, one each

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary.to_dict()
        data["schema_version"] = SCHEMA_VERSION
        return {
            "schema_version": SCHEMA_VERSION,
            **{k: v for k, v in data.items() if k != "schema_version"},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """A result read back from its JSON form (``poolbench report``).

        Keys this version does not know are ignored; keys it expects but the document
        lacks take their default, or None, so results of other versions still render.
        """
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version!r} is newer than this poolbench reads ({SCHEMA_VERSION})"
            )
        return _build(cls, data)


def _build(kind: Any, value: Any) -> Any:
    """``value`` (plain JSON data) as an instance of the annotated type ``kind``."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(kind)
        return [_build(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(kind)
        return {k: _build(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        args = {}
        for f in dataclasses.fields(kind):
            if f.name in value:
                args[f.name] = _build(hints[f.name], value[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                args[f.name] = None
        return kind(**args)
    return value
