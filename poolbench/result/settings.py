"""What a run was set up with: the pool, the load, the scenario, the database, the processes.

These are the facts the engine records; words about them belong to output/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import Record

UNLIMITED_OVERFLOW = -1


def settings_label(settings: Mapping[str, Any]) -> str:
    """``pre_ping=True, recycle=1s`` from ``{"pool.pool_pre_ping": True, ...}``."""
    parts = []
    for key, value in settings.items():
        name = key.split(".")[-1]
        name = name.removeprefix("pool_") if name != "pool_size" else name
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def pool_capacity(
    poolclass: str | None, pool_size: int | None, max_overflow: int | None
) -> int | None:
    """Most connections a pool holds at once; None when unlimited or unknown.

    SQLAlchemy's rule: a QueuePool holds pool_size + max_overflow, but pool_size 0 and
    max_overflow -1 both mean no limit, and a NullPool has none.
    """
    if poolclass != "QueuePool" or not pool_size or max_overflow is None:
        return None
    if max_overflow == UNLIMITED_OVERFLOW:
        return None
    return pool_size + max_overflow


@dataclass
class PoolInfo(Record):
    """The arguments create_engine() gave the pool, named as SQLAlchemy names them."""

    poolclass: str = "QueuePool"  # create_engine()'s default; older results lacked the key
    pool_size: int | None = None  # None: not recorded
    max_overflow: int | None = None
    pool_timeout: float | None = None
    pool_recycle: float = -1.0
    pool_pre_ping: bool = False
    pool_use_lifo: bool = False
    pool_reset_on_return: str = "rollback"
    create_engine: str = ""  # the same, as one line of create_engine() arguments

    @property
    def capacity(self) -> int | None:
        """Most connections this pool holds at once; None when unlimited."""
        return pool_capacity(self.poolclass, self.pool_size, self.max_overflow)

    @property
    def queued(self) -> bool:
        """Whether callers queue for a connection (a QueuePool), rather than each opening one."""
        return self.poolclass == "QueuePool"


@dataclass
class DistributionInfo(Record):
    """A time drawn per request, in seconds."""

    kind: str = "fixed"
    mean: float = 0.0
    low: float = 0.0
    high: float = 0.0


def variant_label(name: str | None, settings: Mapping[str, Any] | None, otherwise: str) -> str:
    """How every output names a variant: its name, else the settings it changed
    (``pre_ping=True, recycle=1s``), else ``otherwise``."""
    if name:
        return str(name)
    if settings:
        return settings_label(settings)
    return otherwise


def group_label(name: str | None, task: str | None, session: str) -> str:
    """A workload group's name: as declared, else its task's function, else its behaviour."""
    return name or (task.split(":")[1] if task else session)


@dataclass
class WorkloadInfo(Record):
    """One kind of request and its share of the traffic, as the scenario declared it."""

    name: str | None = None
    share: float = 1.0
    session: str = "closed"
    api: str = "session"
    query: str = "SELECT 1"
    task: str | None = None
    hold: DistributionInfo = field(default_factory=DistributionInfo)
    hold_in: str = "python"
    think: DistributionInfo = field(default_factory=DistributionInfo)
    leak_hold: float | None = None
    error_rate: float = 0.0
    cpu: float = 0.0  # seconds of CPU-bound work per request, holding the connection
    cancel_after: DistributionInfo | None = None  # async: the request's task cancelled
    # app.asgi/app.wsgi: the request sent, {method, path, json_body, headers}
    http: dict[str, Any] | None = None

    OMIT_NONE = frozenset({"http"})

    @property
    def label(self) -> str:
        return group_label(self.name, self.task, self.session)


@dataclass
class PhaseInfo(Record):
    """A stretch of the run with its own worker count or arrival rate."""

    OMIT_NONE = frozenset({"name", "workers", "rate"})

    duration: float
    name: str | None = None
    workers: int | None = None
    rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        # the order pydantic wrote: name first
        return {k: data[k] for k in ("name", "duration", "workers", "rate") if k in data}


@dataclass
class LoadInfo(Record):
    """How the load was driven: a closed loop of workers or an open loop at a rate."""

    OMIT_NONE = frozenset({"workers", "rate", "max_concurrency", "peak_rate"})

    model: str  # "closed" or "open"
    workers: int | None = None
    rate: float | None = None
    max_concurrency: int | None = None
    peak_rate: float | None = None
    phases: list[PhaseInfo] = field(default_factory=list)
    workload: list[WorkloadInfo] = field(default_factory=list)

    @property
    def open_loop(self) -> bool:
        return self.model == "open"


@dataclass
class ScenarioInfo(Record):
    """Which scenario ran, and what it was to be judged by."""

    name: str
    description: str = ""
    duration_s: float | None = None
    thresholds: dict[str, str] = field(default_factory=dict)
    expect: dict[str, str] = field(default_factory=dict)
    leak_detection_s: float | None = None
    # error kinds the scenario sets out to cause (its faults): they do not fail the run
    expected_errors: list[str] = field(default_factory=list)


@dataclass
class DatabaseInfo(Record):
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
    engine: str = "sync"  # "sync": create_engine (threads), "async": create_async_engine


@dataclass
class ProcessInfo(Record):
    """One process of a fleet: its own pool's figures."""

    index: int
    pid: int
    operations: int = 0
    ok: int = 0
    timeouts: int = 0
    too_many_connections: int = 0
    errors: int = 0
    first_timeout_at_s: float | None = None
    connects: int = 0
    max_checked_out: int = 0
    max_overflow: int = 0
    max_waiting: int = 0
    checkout_wait_p99_ms: float | None = None
