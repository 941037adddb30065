"""The pool side of a run: one engine, its pool, the load on it and what was measured.

A run has one pool side in its own process, or one per process of a fleet. The runner
drives it — phases, readings at every tick, shutdown — and gets plain, picklable data
back (engine/readings.py), so a pool side in another process is driven exactly like a
local one.

A :class:`PoolSide` is built from parts it is given: the engine, a :class:`LoadDriver`
(how load is driven and how a hold or a wait is spent) and the :class:`Measures` (the
pool's listeners, the recorder, the leak registry and detector, SQLAlchemy's messages).
:func:`build_pool_side` assembles the threaded kind (engine/load.py). An asyncio kind
(one event loop in its own thread, driving an ``AsyncEngine``) brings its own driver and
hands the measuring its ``sync_engine``; the runner, fleet, timeline and outputs see the
same PoolSide either way.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import queue as sqla_queue

from .. import errors
from ..db.backends import Backend
from ..metrics.recorder import Aggregator, Recorder
from ..result import Holder, LeakSite
from ..scenario.loader import import_task, is_async_task
from ..scenario.model import Phase, PoolSettings, Scenario
from ..sites import skip_fragments
from .faults import KeepAliveJob, install_idle_timeout, sync_ping
from .leaks import LeakDetector
from .load import driver_for
from .pool import PoolWatch, build_engine
from .readings import EndpointTotals, GroupTotals, PoolReading, PoolTotals
from .requests import CheckoutTimer, GroupPlan, LeakRegistry, RequestExecutor
from .sqla_log import SqlaMessages

if TYPE_CHECKING:
    from ..app import AppEngine

__all__ = ["LoadDriver", "Measures", "PoolReading", "PoolSide", "PoolTotals", "build_pool_side"]

EngineFactory = Callable[[URL, PoolSettings, dict[str, Any]], Engine]  # url, pool, connect_args


def behaviour(group: Any) -> str:
    """How a group's requests handle sessions, in a word or two."""
    if group.api == "sessionmaker":
        return "its own"
    return f"{group.session} (task)" if group.task else group.session


def share_of(phase: Phase, share: tuple[int, int]) -> Phase:
    """Process ``index`` of ``count``'s part of a phase: workers split as evenly as
    possible, the arrival rate divided."""
    index, count = share
    if count == 1:
        return phase
    workers = None
    if phase.workers is not None:
        workers = phase.workers // count + (1 if index < phase.workers % count else 0)
    rate = phase.rate / count if phase.rate is not None else None
    return phase.model_copy(update={"workers": workers, "rate": rate})


@runtime_checkable
class LoadDriver(Protocol):
    """How a pool side's load is driven, and how a request's hold or wait is spent.

    The threaded drivers (engine/load.py: closed and open loop) run requests in threads,
    hold with ``Event.wait`` and count the callers blocked in checkout. The driver owns
    the engine's connections: it opens them (:meth:`prefill`), uses them, and closes them
    (:meth:`dispose`), in its threads or on its event loop.
    """

    dropped: int  # open loop: arrivals with no free worker
    late: int  # open loop: arrivals dispatched late

    def start(self, t0: float) -> None: ...
    def set_phase(self, phase: Phase) -> None: ...
    def waiting(self) -> int: ...
    def peak_waiting(self) -> int: ...  # the most waiting at once since the last call
    def reset_peaks(self) -> None: ...
    def prefill(self, connections: int) -> None: ...
    def halt(self) -> None: ...
    def join(self, timeout: float) -> int: ...
    def dispose(self) -> None: ...
    def collect_garbage(self) -> None: ...  # where the load's connections may be touched


class Measures:
    """What every kind of pool side measures with. Everything listens on a synchronous
    ``Engine`` (an ``AsyncEngine``'s ``sync_engine`` fires the same events), so the
    figures mean the same whichever way the load is driven."""

    def __init__(
        self,
        scenario: Scenario,
        engine: Engine,
        recorder: Recorder,
        leaks: LeakRegistry,
        server_id: Callable[[Any], int | None],
        on_first_timeout: Callable[[float, str], None] | None = None,
        count_checkouts: bool = True,
    ) -> None:
        track_idle = any(k.which == "idle" for k in scenario.faults.kill)
        track_gc = any(g.session == "unclosed" for g in scenario.workload)
        self.watch = PoolWatch(
            engine,
            scenario.pool,
            server_id,
            track_idle=track_idle,
            track_gc=track_gc,
            count_checkouts=count_checkouts,
        )
        self.recorder = recorder
        self.leaks = leaks
        self.aggregator = Aggregator([(g.label, behaviour(g)) for g in scenario.workload])
        self.leak_detector = (
            LeakDetector(engine, scenario.leak_detection, skip_fragments(scenario.leak_skip))
            if scenario.leak_detection
            else None
        )
        self.sqla = SqlaMessages(perf_counter())
        # the user's own code manages every session (tasks, an app): what it still holds
        # when the load has stopped was never given back
        self.count_held_at_end = all(g.session == "closed" for g in scenario.workload) and any(
            g.task or g.http for g in scenario.workload
        )
        self.held = HeldConnections(engine) if self.count_held_at_end else None
        self._on_first_timeout = on_first_timeout
        self.leaks_at_first_timeout: int | None = None
        self.holders_at_first_timeout: list[Holder] | None = None

    def first_timeout(self, t_s: float, message: str, leaks: int) -> None:
        """The run's first TimeoutError, the moment it happens: who holds the connections."""
        # sessions the user's code keeps are known only at the end: not how many by now
        self.leaks_at_first_timeout = None if self.count_held_at_end else leaks
        if self.leak_detector is not None:
            self.holders_at_first_timeout = self.leak_detector.holders()
        if self._on_first_timeout is not None:
            self._on_first_timeout(t_s, message)

    def remove(self) -> None:
        """Take every listener off the engine."""
        self.watch.remove()
        if self.held is not None:
            self.held.remove()
        if self.leak_detector is not None:
            self.leak_detector.remove()


class HeldConnections:
    """The connections out of the pool now, for code poolbench does not drive (tasks, an
    app): what that code still holds when the run ends is closed at the driver, so the
    run leaves 0 connections on the server whatever the code kept."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._out: dict[int, Any] = {}  # id(connection record) -> record
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with self._lock:
            self._out[id(record)] = record

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self._out.pop(id(record), None)

    def close_all(self) -> int:
        with self._lock:
            records, self._out = list(self._out.values()), {}
        for record in records:
            try:
                connection = record.dbapi_connection
                if connection is not None:
                    connection.close()
            except Exception:  # already gone: nothing to leave behind
                pass
        return len(records)

    def remove(self) -> None:
        for name, fn in (("checkout", self._on_checkout), ("checkin", self._on_checkin)):
            if event.contains(self._engine, name, fn):
                event.remove(self._engine, name, fn)


class PoolSide:
    """Built from its parts; :meth:`begin`, drive, :meth:`shutdown`, :meth:`close`."""

    def __init__(
        self,
        engine: Engine,
        driver: LoadDriver,
        measures: Measures,
        keepalive: KeepAliveJob | None = None,
        share: tuple[int, int] = (0, 1),
        verbose: bool = False,
    ) -> None:
        self.engine = engine
        self.driver = driver
        self.measures = measures
        self.keepalive = keepalive
        self.share = share
        self.verbose = verbose
        self._stragglers = 0
        self._leak_sites: list[LeakSite] = []

    # -- driving ----------------------------------------------------------------------------

    def begin(self, t0: float) -> None:
        """Start the load; times are measured from ``t0`` (perf_counter)."""
        m = self.measures
        m.sqla.started_at = t0
        m.sqla.__enter__()
        threading.Thread(target=m.leaks.run_reaper, name="poolbench-reaper", daemon=True).start()
        # the prefill's connections are not the load's: peaks count from here
        m.watch.peaks(m.watch.state())
        self.driver.reset_peaks()
        self.driver.start(t0)  # nothing is sent before the first phase
        if self.keepalive is not None:
            self.keepalive.start()

    def set_phase(self, phase: Phase) -> None:
        self.driver.set_phase(share_of(phase, self.share))

    def prefill(self, connections: int) -> None:
        """Open ``connections`` connections at once and give them back, so the pool starts
        as a warmed-up service's does (and the dialect's first-connect setup is done)."""
        self.driver.prefill(connections)

    def read(self) -> PoolReading:
        """The pool now, and what finished since the last reading."""
        m = self.measures
        if m.leak_detector is not None:
            m.leak_detector.scan()
        state = m.watch.state(with_status=self.verbose)
        waiting = self.driver.waiting()
        peaks = m.watch.peaks(state)
        stats, interval = m.aggregator.absorb(m.recorder.drain())
        return PoolReading(
            checked_out=state.checked_out,
            checked_in=state.checked_in,
            overflow=state.overflow,
            waiting=waiting,
            leaked_open=m.leaks.open_count,
            leaked=m.recorder.leaks,
            stats=stats,
            interval_wait=interval,
            events=m.watch.events(),
            status=state.status,
            open_ids=m.watch.open_server_ids(),
            server_ids=m.watch.server_id_list(),
            interval_hold=m.aggregator.interval_hold,
            interval_create=m.watch.drain_create_times(),
            peak_checked_out=max(peaks.checked_out, state.checked_out),
            peak_overflow=max(peaks.overflow, state.overflow),
            peak_waiting=max(self.driver.peak_waiting(), waiting),
            peak_open=peaks.open,
        )

    def open_ids(self) -> set[int]:
        return self.measures.watch.open_server_ids()

    def server_ids(self) -> list[int]:
        return self.measures.watch.server_id_list()

    def idle_ids(self) -> list[int]:
        return self.measures.watch.idle_server_ids()

    # -- ending -----------------------------------------------------------------------------

    def stop_load(self) -> None:
        self.driver.halt()

    def shutdown(self, grace_s: float) -> tuple[int, int]:
        """Release leaked sessions, let requests finish, return every connection to the pool
        and close them. The requests still running after ``grace_s``: how many held a
        connection, and how many were still waiting for one."""
        m = self.measures
        if m.leak_detector is not None:
            self._leak_sites = m.leak_detector.sites()  # before the cleanup returns them
        self.stop_load()
        if self.keepalive is not None:
            self.keepalive.join(grace_s)
        m.leaks.release_all()
        self._stragglers = self.driver.join(grace_s)
        waiting = min(self._stragglers, self.driver.waiting()) if self._stragglers else 0
        if m.count_held_at_end:
            held = m.watch.state().checked_out  # the keep-alive has stopped: not its
            for _ in range(max(0, held - (self._stragglers - waiting))):
                m.recorder.note_leak()
        self.driver.collect_garbage()  # returns connections of sessions dropped unclosed
        if m.held is not None and not self._stragglers:
            self._close_held(m.held)  # the user's code still holds them: 0 connections left
        self.driver.dispose()
        return self._stragglers - waiting, waiting

    def _close_held(self, held: HeldConnections) -> None:
        call = getattr(self.driver, "call", None)
        if call is None:
            held.close_all()
            return
        # an async driver's connections close on its event loop, in a greenlet
        from sqlalchemy.util import greenlet_spawn

        async def close() -> None:
            await greenlet_spawn(held.close_all)

        call(close())

    def totals(self) -> PoolTotals:
        m = self.measures
        errors_log = m.recorder.errors
        aggregator = m.aggregator
        return PoolTotals(
            operations=aggregator.operations,
            ok=aggregator.ok,
            injected=aggregator.injected,
            groups=[
                GroupTotals(
                    name,
                    session,
                    g.operations,
                    g.ok,
                    g.errors,
                    g.leaked,
                    g.wait.to_counts(),
                    g.hold.to_counts(),
                )
                for (name, session), g in zip(aggregator.names, aggregator.groups, strict=True)
            ],
            errors=errors_log.snapshot(),
            first_timeout_at_s=errors_log.first_timeout_at_s,
            first_timeout_message=errors_log.first_timeout_message,
            leaked=m.recorder.leaks,
            leaked_at_first_timeout=m.leaks_at_first_timeout,
            events=m.watch.events(),
            keepalive_pings=self.keepalive.pings if self.keepalive else 0,
            keepalive_errors=self.keepalive.errors if self.keepalive else 0,
            dropped=self.driver.dropped,
            late=self.driver.late,
            stragglers=self._stragglers,
            sqlalchemy_messages=m.sqla.examples(),
            leak_sites=self._leak_sites,
            holders_at_first_timeout=m.holders_at_first_timeout,
            queued=m.watch.queued(),
            connect=m.watch.create_times(),
            endpoints=self._endpoints(),
        )

    def _endpoints(self) -> list[EndpointTotals]:
        http = self.measures.recorder.http
        names = self.measures.aggregator.names
        return [
            EndpointTotals(
                name=names[group][0],
                statuses=dict(statuses),
                pool_timeouts=http.pool_timeouts[group],
                latency_us=dict(http.latency_us[group]),
            )
            for group, statuses in sorted(http.statuses.items())
        ]

    def close(self) -> None:
        """Whatever happened, leave nothing running (safe to call twice)."""
        m = self.measures
        self.stop_load()
        m.leaks.release_all()
        m.sqla.__exit__(None, None, None)
        self.driver.dispose()
        m.remove()


def engine_kind(scenario: Scenario, backend: Backend) -> str:
    """ "async" or "sync": the scenario's ``engine`` when it says, else the driver's own
    (an async-only driver gets an ``AsyncEngine``). UnknownBackend when the driver cannot
    drive the engine the scenario asks for."""
    kind = scenario.engine or ("async" if backend.driver.is_async else "sync")
    if kind == "sync":
        for index, group in enumerate(scenario.workload):
            if group.task is not None and is_async_task(import_task(group.task)):
                raise errors.UsageError(
                    f"scenario {scenario.name!r}: workload[{index}].task {group.task} is an "
                    f"async def: it needs an async engine, and "
                    f"{backend.dialects[0]}+{backend.driver.name} drives a sync one (use "
                    f"engine: async, or an async driver such as {backend.async_example()})"
                )
    if kind == "async" and importlib.util.find_spec("greenlet") is None:
        # SQLAlchemy's asyncio extension runs the sync core in greenlets
        raise errors.DriverNotInstalled(
            "an async engine needs the greenlet package: pip install 'poolbench[async]'"
        )
    if kind == "sync" and any(g.cancel_after is not None for g in scenario.workload):
        raise errors.UsageError(
            f"scenario {scenario.name!r}: cancel_after needs an async engine (engine: async, "
            f"or an async driver such as {backend.async_example()})"
        )
    if kind not in backend.driver.engines:
        article = "an" if kind == "async" else "a"
        usable = " or ".join(
            f"{backend.dialects[0]}+{d.name}" for d in backend.drivers if kind in d.engines
        )
        raise errors.UnknownBackend(
            f"{backend.dialects[0]}+{backend.driver.name} cannot drive {article} {kind} engine "
            f"(scenario {scenario.name!r} says engine: {kind}); use {usable}"
        )
    return kind


def only_own_checkouts(scenario: Scenario, engine: Engine) -> bool:
    """Whether every checkout of ``engine``'s pool is one of poolbench's requests, on a
    QueuePool whose count the executor can read: no task or app code that may check out
    connections of its own, no keep-alive pings. Then the executor keeps the checked-out
    peak after each checkout, with no ``checkout`` listener on every request's path."""
    pool = engine.pool
    return (
        isinstance(pool, QueuePool)
        and type(pool._pool) is sqla_queue.Queue
        and scenario.keepalive is None
        and all(g.task is None and g.http is None for g in scenario.workload)
    )


def build_pool_side(
    scenario: Scenario,
    url: URL,
    backend: Backend,
    application_name: str,
    scrub: Callable[[str], str],
    share: tuple[int, int] = (0, 1),
    on_first_timeout: Callable[[float, str], None] | None = None,
    verbose: bool = False,
    engine_factory: EngineFactory = build_engine,
    app: AppEngine | None = None,
    driver_factory: Callable[[RequestExecutor], LoadDriver] | None = None,
) -> PoolSide:
    """The pool side of ``scenario`` (process ``share[0]`` of ``share[1]``): threaded on an
    ``Engine``, or one event loop on an ``AsyncEngine`` (:func:`engine_kind`). With ``app``,
    the app's own engine (app/binding.py), its connect arguments untouched: its
    connections are told apart on the server by their server-side ids."""
    try:
        plans = [GroupPlan.build(i, g, backend) for i, g in enumerate(scenario.workload)]
    except ValueError as exc:
        raise errors.UnsupportedDatabase(f"scenario {scenario.name!r}: {exc}") from None
    connect_args = backend.driver.connect_args(application_name)
    is_async = engine_kind(scenario, backend) == "async"
    if app is not None:
        is_async = app.async_engine is not None
        if app.async_engine is not None:
            async_engine = app.async_engine
        engine = app.engine
    elif is_async:
        from .async_side import build_async_engine

        async_engine = build_async_engine(url, scenario.pool, connect_args)
        engine = async_engine.sync_engine
    else:
        engine = engine_factory(url, scenario.pool, connect_args)
    if scenario.faults.server_idle_timeout:
        install_idle_timeout(engine, backend, scenario.faults.server_idle_timeout)
    executor_counts = not is_async and app is None and only_own_checkouts(scenario, engine)
    measures = Measures(
        scenario,
        engine,
        Recorder(),
        LeakRegistry(),
        backend.driver.server_id,
        on_first_timeout,
        count_checkouts=not executor_counts,
    )
    if is_async:
        from .async_side import async_load_parts

        async_driver, async_keepalive = async_load_parts(
            scenario, async_engine, backend, measures, scrub, share, plans
        )
        if app is not None:
            async_driver.executor.Session = app.factory
        if any(g.api in ("sessionmaker", "dependency") for g in scenario.workload):
            from .async_requests import TaskCheckoutTimer

            executor_ = async_driver.executor
            executor_.timer = TaskCheckoutTimer(async_engine, executor_.waiting)
        return PoolSide(engine, async_driver, measures, async_keepalive, share, verbose)
    stop = threading.Event()
    executor = RequestExecutor(
        engine,
        backend,
        measures.recorder,
        measures.leaks,
        stop,
        perf_counter(),
        scrub,
        measures.first_timeout,
    )
    if executor_counts:
        executor.checkout_peak = measures.watch.peak_checked_out
    if app is not None:
        executor.Session = app.factory  # the app's own Session class (SQLModel's too)
    if driver_factory is not None or any(
        g.api in ("sessionmaker", "dependency") for g in scenario.workload
    ):
        # code poolbench does not drive checks out (tasks that open their own sessions,
        # an app serving HTTP): time every checkout at the pool instead
        executor.timer = CheckoutTimer(engine)
    if driver_factory is not None:  # the load runs elsewhere (app/serve.py)
        keepalive_ = _keepalive(scenario, engine, stop)
        return PoolSide(engine, driver_factory(executor), measures, keepalive_, share, verbose)
    index, count = share
    seed = None if scenario.seed is None else scenario.seed + 7_919 * index
    threads = max(share_of(p, share).workers or 0 for p in scenario.effective_phases())
    if scenario.load.open_loop:
        threads = -(-scenario.load.concurrency // count)
    driver = driver_for(
        scenario.load.open_loop,
        executor=executor,
        plans=plans,
        threads=threads,
        seed=seed,
        stop=stop,
    )
    return PoolSide(engine, driver, measures, _keepalive(scenario, engine, stop), share, verbose)


def _keepalive(scenario: Scenario, engine: Engine, stop: threading.Event) -> KeepAliveJob | None:
    if scenario.keepalive is None:
        return None
    return KeepAliveJob(sync_ping(engine, scenario.keepalive.query), scenario.keepalive.every, stop)
