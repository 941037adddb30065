"""The figures a run is judged by: errors, latencies, peaks, pool events, leaks, the server."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import Record

# "cancelled": a request cancelled mid-flight (an async engine's task.cancel()); last, so
# the outcome codes of the others stay as older results have them
ERROR_KINDS: tuple[str, ...] = (
    "timeout",
    "disconnect",
    "too_many_connections",
    "other",
    "cancelled",
)
# what became of a cancelled request's connection (the ``code`` of its error examples)
CANCEL_OUTCOMES: dict[str, str] = {
    "returned": "its connection went back to the pool",
    "invalidated": "its connection was invalidated (closed, not reused)",
    "checked_out": "its connection was still checked out when the request ended",
    "no_connection": "it had no connection yet (cancelled in checkout)",
}


@dataclass
class Percentiles(Record):
    """Latency percentiles in milliseconds (None when nothing was measured)."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclass
class ErrorExample(Record):
    """One distinct error message, with the driver's code when it has one."""

    code: str | None
    message: str
    count: int
    first_at_s: float


@dataclass
class ErrorKindStats(Record):
    """Every error of one kind: how many, and the first examples of each message."""

    count: int = 0
    first_at_s: float | None = None
    examples: list[ErrorExample] = field(default_factory=list)


@dataclass(eq=False)
class Errors(Record, Mapping[str, ErrorKindStats]):
    """The requests that failed: each kind's count and first examples (``errors["timeout"]``,
    the record reads as a mapping of the kinds), the pool's first TimeoutError, and the
    errors the scenario injected on purpose. Written inline: the JSON keeps ``timeouts``,
    ``first_timeout_at_s``, ``first_timeout_message``, ``errors`` and ``injected_errors``."""

    KEYS = {"kinds": "errors", "injected": "injected_errors"}

    # no defaults: a document without a key reads it as not measured (None), as before
    timeouts: int  # the pool's TimeoutErrors (kinds["timeout"].count)
    first_timeout_at_s: float | None
    first_timeout_message: str | None
    kinds: dict[str, ErrorKindStats]
    injected: int  # error_rate's own errors: the scenario's, never a failure

    def __getitem__(self, kind: str) -> ErrorKindStats:
        return self.kinds[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds)

    def __len__(self) -> int:
        return len(self.kinds)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Errors):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def count(self) -> int:
        """Every failed request, of every kind (injected errors are a kind of their own
        only in ``injected``)."""
        return sum(k.count for k in self.kinds.values())


@dataclass
class CheckResult(Record):
    """One threshold or expectation, evaluated."""

    metric: str
    condition: str
    value: float | str | None
    ok: bool
    source: str  # "threshold" or "expect"


@dataclass
class GroupSummary(Record):
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
class HttpEndpoint(Record):
    """One endpoint driven over HTTP (a group with ``http:``), as the client saw it: the
    responses by status, how many of the 5xx were the pool's TimeoutError (seen at the
    pool, not guessed from the status) and the HTTP latency. Its checkout wait is its
    group's (``groups``, same name)."""

    name: str  # the group's label: "GET /items/7" unless the group is named
    requests: int
    statuses: dict[str, int]  # "200": n, "500": n, "no answer": n
    pool_timeouts: int
    latency_ms: Percentiles


@dataclass
class PoolEvents(Record):
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
class LeakSite(Record):
    """A call site that checked out connections which stayed out past leak_detection."""

    site: str  # "path/to/file.py:42 in function"
    stack: list[str] = field(default_factory=list)  # innermost first
    count: int = 0
    longest_hold_s: float = 0.0
    held_at_end: int = 0
    # library frames between the site and the checkout (an ORM wrapper's execute), innermost
    # first; and where the Session holding the connection was created, when one did
    below: list[str] = field(default_factory=list)
    created: str | None = None


@dataclass
class Holder(Record):
    """Connections checked out from one call site at a moment."""

    site: str
    count: int
    oldest_s: float


@dataclass
class Latencies(Record):
    """How long requests waited for a connection and held it, over the whole run."""

    checkout_wait_ms: Percentiles
    hold_ms: Percentiles
    # share of checkouts that blocked in the pool's queue: no idle connection and no room
    # to open one (Erlang C's P(wait)); opening a new connection is not waiting here
    wait_probability: float | None
    # how long opening a new DBAPI connection took (None: results from before it existed)
    connect_ms: Percentiles | None = None


@dataclass
class Peaks(Record):
    """The most the run saw at once. The pool's gauges are exact (kept at every pool
    event, engine/peaks.py); the server's are the highest of its samples."""

    KEYS = {
        "checked_out": "max_checked_out",
        "overflow": "max_overflow",
        "waiting": "max_waiting",
        "server_connections": "max_server_connections",
        "stale": "max_stale",
        "connections_open": "max_connections_open",
    }

    checked_out: int
    overflow: int
    waiting: int  # callers blocked in checkout
    server_connections: int | None  # None: the server could not be asked
    stale: int | None  # held by the pool, already closed by the server; None: not measured
    connections_open: int | None = None  # the pool's open connections; None: not measured


@dataclass
class Leaks(Record):
    """Sessions the requests never closed, and where connections stayed out too long."""

    KEYS = {
        "sessions": "leaked",
        "at_first_timeout": "leaked_at_first_timeout",
        "sites": "leak_sites",
    }

    sessions: int  # sessions never closed, each keeping its connection checked out
    at_first_timeout: int | None  # of them, leaked before the first TimeoutError
    sites: list[LeakSite] = field(default_factory=list)  # held past leak_detection, most first
    holders_at_first_timeout: list[Holder] | None = None  # with leak_detection only


@dataclass
class ServerFigures(Record):
    """The server's side: what it still showed at exit, and the fleet's worst case."""

    KEYS = {
        "connections_at_exit": "server_connections_at_exit",
        "worst_case": "worst_case_connections",
        "headroom": "connection_headroom",
    }

    connections_at_exit: int | None = None  # None: the server could not be asked
    terminated_at_exit: int = 0  # ended server-side by the cleanup
    worst_case: int | None = None  # processes x (pool_size + max_overflow); None: unlimited
    headroom: int | None = None  # connections the server had free at start - worst case


@dataclass
class ClientLoad(Record):
    """Whether poolbench itself was the bottleneck (engine/saturation.py)."""

    cpu_cores: float | None  # CPU the load generator's process used, in cores; None: a fleet
    hold_inflation: float | None  # measured hold p50 / the scenario's; None: not comparable
    saturated: bool = False  # busy CPU and inflated holds: the figures describe the client


@dataclass
class Summary(Record):
    """The figures a run is judged by. ``figures()`` flattens them for thresholds."""

    INLINE = frozenset({"errors", "latencies", "peaks", "leaks", "server"})

    duration_s: float
    operations: int
    ok: int
    throughput_ops_s: float
    errors: Errors  # in the JSON as timeouts, first_timeout_*, errors, injected_errors
    latencies: Latencies  # in the JSON as checkout_wait_ms, hold_ms, wait_probability
    peaks: Peaks  # in the JSON as max_checked_out, max_overflow, ... beside the rest
    leaks: Leaks  # in the JSON as leaked, leaked_at_first_timeout, leak_sites, ...
    keepalive_pings: int
    keepalive_errors: int
    dropped_arrivals: int
    late_arrivals: int
    pool_events: PoolEvents
    sqlalchemy_warnings: list[ErrorExample]
    groups: list[GroupSummary]
    server: ServerFigures = field(default_factory=lambda: ServerFigures())  # inline too
    processes: int = 1
    client: ClientLoad | None = None  # None: results from before it was measured
    http: list[HttpEndpoint] = field(default_factory=list)  # app mode over HTTP only
    thresholds: list[CheckResult] = field(default_factory=list)
    expectations: list[CheckResult] = field(default_factory=list)
    # expectations measured but not checked: the user changed the scenario as written
    # (the reason says how); thresholds are checked whatever was changed
    skipped_expectations: list[CheckResult] = field(default_factory=list)
    expectations_skipped_because: str | None = None

    @property
    def timeouts(self) -> int:
        return self.errors.timeouts

    @property
    def first_timeout_at_s(self) -> float | None:
        return self.errors.first_timeout_at_s

    @property
    def first_timeout_message(self) -> str | None:
        return self.errors.first_timeout_message

    @property
    def injected_errors(self) -> int:
        return self.errors.injected

    def kind(self, name: str) -> ErrorKindStats:
        """The errors of one kind (none in results written before that kind existed)."""
        return self.errors.get(name) or ErrorKindStats()

    def cancelled(self, outcome: str) -> int:
        """Cancelled requests whose connection had ``outcome`` (CANCEL_OUTCOMES)."""
        return sum(e.count for e in self.kind("cancelled").examples if e.code == outcome)

    @property
    def measured_faults(self) -> bool:
        """Whether the result comes from a poolbench that measured stale connections,
        disconnects, keep-alive pings and leak sites; results written before faults
        existed lack those keys, and renderers leave them out rather than show zeros."""
        return self.keepalive_pings is not None

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.thresholds) and all(c.ok for c in self.expectations)

    @property
    def error_count(self) -> int:
        return self.errors.count

    def figures(self) -> dict[str, float | str | None]:
        """Every figure a threshold or an expectation may name (see checks.METRICS)."""
        wait, hold = self.latencies.checkout_wait_ms, self.latencies.hold_ms
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
            "cancelled": self.kind("cancelled").count,
            "cancelled_returned": self.cancelled("returned"),
            "cancelled_invalidated": self.cancelled("invalidated"),
            "cancelled_checked_out": self.cancelled("checked_out"),
            "cancelled_in_checkout": self.cancelled("no_connection"),
            "error_rate": self.error_count / self.operations if self.operations else 0.0,
            "first_timeout_at_s": self.first_timeout_at_s,
            "first_timeout_message": self.first_timeout_message,
            "checkout_wait_mean_ms": wait.mean,
            "checkout_wait_p50_ms": wait.p50,
            "checkout_wait_p90_ms": wait.p90,
            "checkout_wait_p99_ms": wait.p99,
            "checkout_wait_max_ms": wait.max,
            "wait_probability": self.latencies.wait_probability,
            "hold_p50_ms": hold.p50,
            "hold_p99_ms": hold.p99,
            "hold_max_ms": hold.max,
            "max_checked_out": self.peaks.checked_out,
            "max_overflow": self.peaks.overflow,
            "max_waiting": self.peaks.waiting,
            "max_server_connections": self.peaks.server_connections,
            "max_stale": self.peaks.stale,
            "max_connections_open": self.peaks.connections_open,
            "leaked": self.leaks.sessions,
            "leaked_at_first_timeout": self.leaks.at_first_timeout,
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
            "sqlalchemy_messages": sum(m.count for m in self.sqlalchemy_warnings),
            "sqlalchemy_said": "\n".join(m.message for m in self.sqlalchemy_warnings),
            "server_connections_at_exit": self.server.connections_at_exit,
            "leak_suspects": sum(site.count for site in self.leaks.sites),
            "first_too_many_connections_at_s": self.errors["too_many_connections"].first_at_s,
            "worst_case_connections": self.server.worst_case,
            "connection_headroom": self.server.headroom,
        }

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["passed"] = self.passed
        return data
