"""The typed form of a scenario file.

Every key a user can write is declared here, with its default and its limits;
unknown keys are refused so a typo (``pool_sise``) never passes silently.
Durations accept ``500ms``, ``10s``, ``2m``; rates ``200/s``; shares ``97%``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from ..db.backends import names as backend_names
from ..printable import one_line, printable
from ..result.settings import group_label, pool_capacity, settings_label
from ..units import format_duration, parse_duration, parse_rate, parse_share

Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
Share = Annotated[float, BeforeValidator(parse_share)]

# far beyond any server's max_connections; bounds what a pool may be asked to open
MAX_CONNECTIONS = 100_000

SessionBehaviour = Literal["closed", "leaky", "unclosed", "leak_on_error"]


# text from the file is shown, never obeyed: control characters become escapes (printable.py)
Name = Annotated[str, AfterValidator(one_line)]
Text = Annotated[str, AfterValidator(printable)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _recycle(value: object) -> float:
    if value in (-1, "-1", None, False, "off", "never"):
        return -1.0
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"expected -1 (never) or a duration such as 30m, got {value!r}")
    return seconds


class PoolSettings(_Model):
    """The arguments create_engine() passes to the pool, named as SQLAlchemy names them."""

    poolclass: Literal["QueuePool", "NullPool"] = "QueuePool"
    pool_size: int = Field(5, ge=0, le=MAX_CONNECTIONS)
    max_overflow: int = Field(10, ge=-1, le=MAX_CONNECTIONS)
    pool_timeout: Duration = Field(30.0, ge=0)
    pool_recycle: Annotated[float, BeforeValidator(_recycle)] = -1.0
    pool_pre_ping: bool = False
    pool_use_lifo: bool = False
    pool_reset_on_return: Literal["rollback", "commit", "none"] = "rollback"

    @property
    def capacity(self) -> int | None:
        """Most connections the pool will hold at once; None when unlimited."""
        return pool_capacity(self.poolclass, self.pool_size, self.max_overflow)

    def describe(self) -> str:
        """One line in create_engine() terms."""
        if self.poolclass == "NullPool":
            parts = ["poolclass=NullPool"]
        else:
            parts = [
                f"pool_size={self.pool_size}",
                f"max_overflow={self.max_overflow}",
                f"pool_timeout={self.pool_timeout:g}",
            ]
            if self.pool_use_lifo:
                parts.append("pool_use_lifo=True")
        if self.pool_recycle >= 0:
            parts.append(f"pool_recycle={self.pool_recycle:g}")
        if self.pool_pre_ping:
            parts.append("pool_pre_ping=True")
        if self.pool_reset_on_return != "rollback":
            value = (
                "None" if self.pool_reset_on_return == "none" else repr(self.pool_reset_on_return)
            )
            parts.append(f"pool_reset_on_return={value}")
        return ", ".join(parts)


def _distribution(value: object) -> Any:
    """Accept ``50ms``, ``{fixed: 50ms}``, ``{exponential: 50ms}``, ``{uniform: [10ms, 90ms]}``."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, arg),) = value.items()
        if kind == "fixed":
            return {"kind": "fixed", "mean": arg}
        if kind == "exponential":
            return {"kind": "exponential", "mean": arg}
        if kind == "uniform":
            if not isinstance(arg, (list, tuple)) or len(arg) != 2:
                raise ValueError("uniform takes two durations, e.g. {uniform: [10ms, 90ms]}")
            return {"kind": "uniform", "low": arg[0], "high": arg[1]}
        raise ValueError(
            f"unknown distribution {kind!r}; use 50ms, {{exponential: 50ms}} "
            "or {uniform: [10ms, 90ms]}"
        )
    if isinstance(value, dict):
        return value
    return {"kind": "fixed", "mean": value}


class Distribution(_Model):
    """A time drawn per request: fixed, uniform between two bounds, or exponential."""

    kind: Literal["fixed", "uniform", "exponential"] = "fixed"
    mean: Duration = Field(0.0, ge=0)
    low: Duration = Field(0.0, ge=0)
    high: Duration = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Distribution:
        if self.kind == "uniform":
            if self.high < self.low:
                raise ValueError("uniform needs low <= high")
            object.__setattr__(self, "mean", (self.low + self.high) / 2)
        return self

    def describe(self) -> str:
        if self.kind == "uniform":
            return f"uniform {format_duration(self.low)}..{format_duration(self.high)}"
        if self.kind == "exponential":
            return f"exponential, mean {format_duration(self.mean)}"
        return format_duration(self.mean)


Dist = Annotated[Distribution, BeforeValidator(_distribution)]


class HttpRequest(_Model):
    """One request to the app over HTTP (``app.asgi``), instead of a query or a task."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    path: str = Field(pattern=r"^/")
    json_body: Any = Field(None, alias="json")
    headers: dict[str, str] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WorkloadGroup(_Model):
    """One kind of request, and its share of the traffic."""

    name: Name | None = None
    share: Share = Field(1.0, gt=0)
    session: SessionBehaviour = "closed"
    api: Literal["session", "connection", "sessionmaker", "dependency"] = "session"
    query: str = Field("SELECT 1", min_length=1)
    task: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    hold: Dist = Distribution()
    hold_in: Literal["python", "server"] = "python"
    think: Dist = Distribution()
    leak_hold: Duration | None = Field(None, gt=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    http: HttpRequest | None = None  # app.asgi: the request this group sends
    # CPU-bound work in the handler while it holds the connection (a busy loop): on an
    # async engine it blocks the one event loop, and every other request with it
    cpu: Duration = Field(0.0, ge=0)
    # async engines: the request is cancelled (task.cancel()) this long after it starts,
    # as an ASGI server does on a client disconnect or a request timeout
    cancel_after: Dist | None = None

    @model_validator(mode="after")
    def _behaviour_options(self) -> WorkloadGroup:
        if self.leak_hold is not None and self.session not in ("leaky", "leak_on_error"):
            raise ValueError("leak_hold applies only to session: leaky or leak_on_error")
        if self.session == "leak_on_error" and self.error_rate == 0:
            raise ValueError("session: leak_on_error needs error_rate > 0 (e.g. 0.05)")
        if self.api in ("sessionmaker", "dependency"):
            if self.task is None:
                raise ValueError(f"api: {self.api} needs a task (module:function) to call")
            if self.session != "closed":
                raise ValueError(
                    f"with api: {self.api} the task manages its own sessions; leave session out"
                )
        return self

    @property
    def label(self) -> str:
        if self.http is not None and self.name is None:
            return f"{self.http.method} {self.http.path}"
        return group_label(self.name, self.task, self.session)


class Load(_Model):
    """Closed loop (``workers``) or open loop (``rate`` with bounded concurrency)."""

    workers: int | None = Field(None, ge=0)
    rate: Rate | None = Field(None, ge=0)
    max_concurrency: int | None = Field(None, ge=1)
    peak_rate: Rate | None = Field(None, gt=0)  # for poolbench size: what max_overflow covers

    @model_validator(mode="after")
    def _one_model(self) -> Load:
        if (self.workers is None) == (self.rate is None):
            raise ValueError("give either workers (closed loop) or rate (open loop), not both")
        if self.max_concurrency is not None and self.rate is None:
            raise ValueError("max_concurrency applies only to an open loop (rate)")
        if self.peak_rate is not None and (self.rate is None or self.peak_rate < self.rate):
            raise ValueError("peak_rate needs an open loop (rate) and must be >= rate")
        return self

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def concurrency(self) -> int:
        """Threads needed: workers, or the open loop's bound on concurrent requests."""
        if self.workers is not None:
            return self.workers
        return self.max_concurrency or 100


class Phase(_Model):
    """A stretch of the run with its own worker count or arrival rate."""

    name: Name | None = None
    duration: Duration = Field(gt=0)
    workers: int | None = Field(None, ge=0)
    rate: Rate | None = Field(None, ge=0)


def _kill(value: object) -> Any:
    """``5s`` is shorthand for ``{at: 5s, which: all}``."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"at": value}
    return value


class Kill(_Model):
    """End this run's server connections at a moment, as a failover or a DBA would."""

    at: Duration = Field(ge=0)
    which: Literal["all", "idle"] = "all"


def _restart(value: object) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"at": value}
    return value


class Restart(_Model):
    """Restart the embedded PostgreSQL at a moment (stop, then start on the same data)."""

    at: Duration = Field(ge=0)


class Faults(_Model):
    """What the server does to the pool's connections during the run."""

    server_idle_timeout: Duration | None = Field(None, ge=1)
    kill: list[Annotated[Kill, BeforeValidator(_kill)]] = []
    restart: list[Annotated[Restart, BeforeValidator(_restart)]] = []

    @property
    def any(self) -> bool:
        return bool(self.server_idle_timeout or self.kill or self.restart)


class KeepAlive(_Model):
    """A background job that checks out a pooled connection and runs a query every so often,
    whatever the load is doing, so idle connections never reach the server's idle limit."""

    every: Duration = Field(gt=0)
    query: str = Field("SELECT 1", min_length=1)


class Fleet(_Model):
    """Several worker processes, each with its own engine and pool, sharing the load."""

    processes: int = Field(1, ge=1, le=64)


class Variant(_Model):
    """One combination to run and compare: overrides, and what it should show."""

    name: Name | None = None
    set: dict[str, Any] = {}
    expect: dict[str, str] = {}

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if not self.set:
            return "as written"
        return settings_label(self.set)


class EmbeddedSettings(_Model):
    """Server settings for the embedded PostgreSQL (ignored for any other server)."""

    max_connections: int | None = Field(None, ge=10, le=10_000)


# the databases poolbench knows (db/backends), as the values a scenario may require
BackendName = Literal[backend_names()]  # type: ignore[valid-type]


class DatabaseSettings(_Model):
    """Where to connect; --url and POOLBENCH_URL take precedence over ``url``."""

    url: str | None = None
    requires: BackendName | None = None  # type: ignore[valid-type]
    # the driver of a URL that names none (postgresql://), and the embedded server's
    driver: str | None = Field(None, pattern=r"^[A-Za-z_]\w*$")
    embedded: EmbeddedSettings = EmbeddedSettings()


Spec = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]


class AppSettings(_Model):
    """The user's own service: its engine (or sessionmaker), and what to run around the load."""

    engine: Spec  # module:attr of an Engine, AsyncEngine, sessionmaker or async_sessionmaker
    setup: Spec | None = None  # called once before the load
    teardown: Spec | None = None  # called once after it
    # the app's ASGI application: served by uvicorn in a process of its own, driven over HTTP
    asgi: Spec | None = None
    # or its WSGI application (Flask): served by a threaded WSGI server, the same way
    wsgi: Spec | None = None

    @model_validator(mode="after")
    def _one_server(self) -> AppSettings:
        if self.asgi is not None and self.wsgi is not None:
            raise ValueError("give app.asgi or app.wsgi, not both")
        return self

    @property
    def served(self) -> str | None:
        """The app to serve over HTTP (``module:attr``), ASGI or WSGI; None for none."""
        return self.asgi or self.wsgi


class Scenario(_Model):
    """A whole scenario file, validated."""

    name: Name = Field(min_length=1)
    description: Text = ""
    database: DatabaseSettings = DatabaseSettings()
    # create_engine or create_async_engine; by default the URL's driver decides (an async
    # driver gets an AsyncEngine), and a driver that does both (psycopg) can be forced
    engine: Literal["async", "sync"] | None = None
    pool: PoolSettings = PoolSettings()
    # the user's own engine: measured as found; pool keys given here override its settings
    app: AppSettings | None = None
    workload: list[WorkloadGroup] = Field(min_length=1)
    load: Load
    duration: Duration | None = Field(None, gt=0)
    phases: list[Phase] = []
    interval: Duration = Field(1.0, ge=0.05, le=60)
    seed: int | None = None
    faults: Faults = Faults()
    keepalive: KeepAlive | None = None
    fleet: Fleet = Fleet()
    prefill: bool = False  # open pool_size connections before measuring (a warmed-up service)
    leak_detection: Duration | None = Field(None, gt=0)
    # leak_detection: {threshold: 2s, skip: [...]}: more code to pass over when naming a
    # leak's site (path fragments or module names), beside site-packages and the stdlib
    leak_skip: list[Name] = []
    variants: list[Variant] = []
    thresholds: dict[str, str] = {}
    expect: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _single_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("workload"), dict):
            data = {**data, "workload": [data["workload"]]}
        if isinstance(data, dict) and isinstance(data.get("leak_detection"), dict):
            detection = dict(data["leak_detection"])
            unknown = set(detection) - {"threshold", "skip"}
            if unknown or "threshold" not in detection:
                raise ValueError(
                    "leak_detection takes a duration (2s) or {threshold: 2s, skip: [...]}"
                )
            skip = detection.get("skip") or []
            data = {**data, "leak_detection": detection["threshold"], "leak_skip": skip}
        return data

    @model_validator(mode="after")
    def _http(self) -> Scenario:
        asgi = self.app is not None and self.app.served is not None
        for group in self.workload:
            if group.http is not None and not asgi:
                raise ValueError(
                    "workload groups with http need app.asgi or app.wsgi (the app to send to)"
                )
            if group.http is None and asgi:
                raise ValueError(
                    "with app.asgi or app.wsgi every workload group sends an http request "
                    "(http: {method: GET, path: /items/1})"
                )
            if group.http is not None and group.task is not None:
                raise ValueError("a group sends an http request or runs a task, not both")
        return self

    @model_validator(mode="after")
    def _timing(self) -> Scenario:
        if self.phases:
            total = sum(p.duration for p in self.phases)
            if self.duration is None:
                object.__setattr__(self, "duration", total)
            elif abs(self.duration - total) > 1e-9:
                raise ValueError(
                    f"duration ({format_duration(self.duration)}) differs from the sum of "
                    f"phases ({format_duration(total)}); give one or make them agree"
                )
            for phase in self.phases:
                if self.load.open_loop and phase.workers is not None:
                    raise ValueError("phases of an open-loop load (rate) take rate, not workers")
                if not self.load.open_loop and phase.rate is not None:
                    raise ValueError(
                        "phases of a closed-loop load (workers) take workers, not rate"
                    )
        elif self.duration is None:
            raise ValueError("give duration (e.g. 30s) or phases")
        faults: list[Kill | Restart] = [*self.faults.kill, *self.faults.restart]
        for fault in faults:
            if fault.at >= self.total_duration:
                raise ValueError(
                    f"a fault at {format_duration(fault.at)} is after the run ends "
                    f"({format_duration(self.total_duration)})"
                )
        return self

    @property
    def total_duration(self) -> float:
        assert self.duration is not None
        return self.duration

    def effective_phases(self) -> list[Phase]:
        """The phases to run; a scenario without phases runs one phase of its whole duration."""
        if not self.phases:
            return [
                Phase(
                    name="steady",
                    duration=self.total_duration,
                    workers=self.load.workers,
                    rate=self.load.rate,
                )
            ]
        return [
            Phase(
                name=p.name or f"phase {i + 1}",
                duration=p.duration,
                workers=p.workers
                if p.workers is not None or self.load.open_loop
                else self.load.workers,
                rate=p.rate if p.rate is not None or not self.load.open_loop else self.load.rate,
            )
            for i, p in enumerate(self.phases)
        ]

    # how the user changed the scenario as written (--set, --duration, --vary); its
    # expectations describe it as written, so they are not checked on a changed one
    _changed_by: tuple[str, ...] = PrivateAttr(default=())

    @property
    def changed_by(self) -> tuple[str, ...]:
        return self._changed_by

    def changed(self, *by: str) -> Scenario:
        """This scenario, marked as changed from the file by ``by`` (e.g. ``--set k=v``)."""
        copy = self.model_copy()
        copy._changed_by = (*self._changed_by, *by)
        return copy

    def with_duration(self, seconds: float) -> Scenario:
        """The same scenario over ``seconds``; phases and fault times scale in proportion."""
        factor = seconds / self.total_duration
        faults = self.faults.model_copy(
            update={
                "kill": [k.model_copy(update={"at": k.at * factor}) for k in self.faults.kill],
                "restart": [
                    r.model_copy(update={"at": r.at * factor}) for r in self.faults.restart
                ],
            }
        )
        phases = [p.model_copy(update={"duration": p.duration * factor}) for p in self.phases]
        return self.model_copy(update={"duration": seconds, "phases": phases, "faults": faults})
