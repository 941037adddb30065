"""One request, as a service would write it, for each session behaviour.

- ``closed``: ``with Session() as session`` — the connection goes back on every path.
- ``leaky``: never closed and still referenced (a global list, a cache, a closure), so
  its connection stays checked out until the run ends or ``leak_hold`` passes.
- ``unclosed``: never closed but dropped, so CPython's garbage collector returns the
  connection whenever it gets to the session's reference cycle.
- ``leak_on_error``: ``close()`` only on the success path; a failed request leaks.

Each request forces its checkout first (``session.connection()``) so the time spent
waiting for the pool is measured exactly where it happens.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic, perf_counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ..db.backends import Backend
from ..metrics.recorder import INJECTED, OK, OUTCOME, Recorder
from ..scenario.loader import import_task
from ..scenario.model import Distribution, WorkloadGroup
from .classify import InjectedError, classify
from .peaks import Peak
from .pool import ABANDONED


def burn(seconds: float) -> None:
    """CPU-bound work for ``seconds`` (a busy loop, holding the GIL as Python code does)."""
    end = perf_counter() + seconds
    while perf_counter() < end:
        pass


def draw_from(dist: Distribution) -> Callable[[random.Random], float]:
    """A function drawing one value of ``dist`` (seconds) from a given RNG."""
    if dist.kind == "exponential" and dist.mean > 0:
        rate = 1.0 / dist.mean
        return lambda rng: rng.expovariate(rate)
    if dist.kind == "uniform":
        low, high = dist.low, dist.high
        return lambda rng: rng.uniform(low, high)
    value = dist.mean
    return lambda rng: value


@dataclass
class GroupPlan:
    """A workload group made ready to run: SQL compiled once, distributions bound, the
    user's task imported."""

    index: int
    group: WorkloadGroup
    query: Any
    sleep_sql: Any
    hold: Callable[[random.Random], float]
    think: Callable[[random.Random], float]
    has_hold: bool
    has_think: bool
    task: Callable[..., Any] | None = None
    uses_session: bool = True  # api: session (else a Connection)
    own_sessions: bool = False  # api: sessionmaker: the task opens its own sessions
    dependency: bool = False  # api: dependency: the task is a get_db-style generator
    closes: bool = True  # session: closed
    error_rate: float = 0.0
    cpu: float = 0.0  # seconds of busy loop while holding the connection
    cancel_after: Callable[[random.Random], float] | None = None  # async engines
    returns_rows: bool | None = None  # learnt from the first result

    def __post_init__(self) -> None:
        # flags the hot path (RequestExecutor.run) tests once instead of one by one
        self.extras = bool(self.cpu or self.has_hold or self.error_rate)

    @classmethod
    def build(cls, index: int, group: WorkloadGroup, backend: Backend) -> GroupPlan:
        sleep_sql = None
        if group.hold_in == "server":
            if backend.sleep_sql is None:
                raise ValueError(f"hold_in: server is not supported on {backend.title}")
            sleep_sql = sa.text(backend.sleep_sql)
        return cls(
            index=index,
            group=group,
            query=sa.text(group.query),
            sleep_sql=sleep_sql,
            hold=draw_from(group.hold),
            think=draw_from(group.think),
            has_hold=group.hold.mean > 0 or group.hold.high > 0,
            has_think=group.think.mean > 0 or group.think.high > 0,
            task=import_task(group.task) if group.task else None,
            uses_session=group.api == "session",
            own_sessions=group.api in ("sessionmaker", "dependency"),
            dependency=group.api == "dependency",
            closes=group.session == "closed",
            error_rate=group.error_rate,
            cpu=group.cpu,
            cancel_after=draw_from(group.cancel_after) if group.cancel_after else None,
        )


class CheckoutTimer:
    """Times checkouts the engine makes on behalf of code poolbench does not drive (a
    task with api: sessionmaker opens its own sessions), by wrapping the pool's public
    ``connect()``: per-thread wait, and how many callers are waiting right now."""

    def __init__(self, engine: Engine) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.in_flight = Peak()
        pool = engine.pool
        original = pool.connect
        in_flight = self.in_flight

        def connect() -> Any:
            in_flight.up()
            start = perf_counter()
            try:
                return original()
            finally:
                self._local.wait = getattr(self._local, "wait", 0.0) + perf_counter() - start
                in_flight.down()

        pool.connect = connect  # type: ignore[method-assign]

    def take_wait(self) -> float:
        """Seconds this thread spent in checkout since the last call."""
        wait = getattr(self._local, "wait", 0.0)
        self._local.wait = 0.0
        return wait


class LeakRegistry:
    """Sessions a request never closed but still references, until released."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []  # (release_at, seq, session)
        self._seq = itertools.count()
        self._stopped = False

    def keep(self, session: Any, hold: float | None) -> None:
        release_at = monotonic() + hold if hold is not None else float("inf")
        with self._cond:
            heapq.heappush(self._heap, (release_at, next(self._seq), session))
            if hold is not None:
                self._cond.notify()

    @property
    def open_count(self) -> int:
        return len(self._heap)

    def run_reaper(self) -> None:
        """Close sessions whose leak_hold has passed (runs in its own thread)."""
        while True:
            due = []
            with self._cond:
                if self._stopped:
                    return
                now = monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(timeout if timeout != float("inf") else None)
                    continue
            for session in due:
                _close_quietly(session)

    def release_all(self) -> int:
        """Close every kept session (the run is over); how many there were."""
        with self._cond:
            self._stopped = True
            sessions = [entry[2] for entry in self._heap]
            self._heap.clear()
            self._cond.notify_all()
        for session in sessions:
            _close_quietly(session)
        return len(sessions)


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except Exception:  # a broken connection: the pool invalidates it on its own
        pass


class Worker:
    """One thread's identity: its RNG and whether it is blocked in checkout right now."""

    __slots__ = ("in_checkout", "index", "rng")

    def __init__(self, index: int, seed: int | None) -> None:
        self.index = index
        self.in_checkout = False
        self.rng = random.Random(None if seed is None else seed * 1_000_003 + index)


class RecordsFailures:
    """How a failed request is recorded, the same for the threaded and the async executor:
    classified, the first timeout noted as it happens, the error carried by its record."""

    halted: bool
    recorder: Recorder
    backend: Backend
    scrub: Callable[[str], str]
    started_at: float
    on_first_timeout: Callable[[float, str, int], None]

    def unexpected(self, plan: GroupPlan, exc: BaseException) -> None:
        """An error outside the request's own handling (a bug, or a driver crash)."""
        if not self.halted:
            self._failed(plan, exc, 0.0, 0.0, leaked=False)

    def _failed(
        self,
        plan: GroupPlan,
        exc: BaseException,
        waited: float,
        held: float,
        leaked: bool,
        http: tuple[str, int] | None = None,
    ) -> None:
        if isinstance(exc, InjectedError):
            self.recorder.finished(
                plan.index, INJECTED, int(waited * 1e6), int(held * 1e6), leaked, None, http
            )
            return
        kind, code, message = classify(exc, self.backend, self.scrub)
        t_s = perf_counter() - self.started_at
        if kind == "timeout" and self.recorder.errors.first_timeout(t_s, message):
            self.on_first_timeout(t_s, message, self.recorder.leaks)
        error = (kind, code, message, t_s)
        self.recorder.finished(
            plan.index, OUTCOME[kind], int(waited * 1e6), int(held * 1e6), leaked, error, http
        )


class RequestExecutor(RecordsFailures):
    """Runs one request of a group and reports it to the recorder."""

    def __init__(
        self,
        engine: Engine,
        backend: Backend,
        recorder: Recorder,
        leaks: LeakRegistry,
        stop: threading.Event,
        started_at: float,
        scrub: Callable[[str], str],
        on_first_timeout: Callable[[float, str, int], None],
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.Session = sessionmaker(bind=engine)
        self.recorder = recorder
        self.leaks = leaks
        self.stop = stop
        self.started_at = started_at
        self.scrub = scrub
        self.on_first_timeout = on_first_timeout
        self.timer: CheckoutTimer | None = None
        self.waiting = Peak()  # callers in checkout now, and their peak (engine/peaks.py)
        # the pool's checked-out peak, read here after each checkout where poolbench's
        # requests are the pool's only checkouts (else None: a checkout listener keeps it)
        self.checkout_peak: Peak | None = None
        self._append = recorder.append  # Recorder.finished, without a call of ours
        # set with ``stop`` when the run ends (PoolSide.stop_load): a plain attribute is
        # cheaper to test on every request than Event.is_set(); ``stop`` stays for waits
        self.halted = False

    def run(self, worker: Worker, plan: GroupPlan) -> None:
        # The hot path: every line here is paid by every request, so flags are read from
        # the plan rather than recomputed (see make bench for what this costs).
        if plan.own_sessions:  # the task makes its checkouts itself
            self._run_own_sessions(plan, worker)
            return
        if plan.uses_session:
            holder: Any = self.Session()
            checkout = holder.connection
        else:
            holder = None
            checkout = self.engine.connect
        # Counted inline, without Peak.up()'s lock: no call or jump between reading and
        # writing the count, so under the GIL no other thread runs in between (and the
        # driver recounts from the workers' flags at every sample). See make bench.
        waiting = self.waiting
        worker.in_checkout = True
        now = waiting.now = waiting.now + 1
        if now > waiting.peak:
            waiting.peak = now
        t0 = perf_counter()
        try:
            conn = checkout()
        except Exception as exc:
            worker.in_checkout = False
            waiting.now -= 1
            waited = perf_counter() - t0
            if holder is not None:
                _close_quietly(holder)
            if not self.halted:
                self._failed(plan, exc, waited, 0.0, leaked=False)
            return
        worker.in_checkout = False
        waiting.now -= 1
        t1 = perf_counter()
        peak = self.checkout_peak
        if peak is not None:  # QueuePool.checkedout() from its fields, as the listener does
            pool: Any = self.engine.pool
            q = pool._pool
            n = q.maxsize - len(q.queue) + pool._overflow
            if n > peak.peak:
                peak.note(n)
        if holder is None:
            holder = conn  # what the request runs on, and gives back: a Session or this
        if self.halted:  # the connection came from the shutdown's release
            _close_quietly(holder)
            return

        try:
            executor = holder
            if plan.task is not None:
                plan.task(executor)
            else:
                result = executor.execute(plan.query)
                rows = plan.returns_rows
                if rows:
                    result.all()
                elif rows is None:  # the first request learns it
                    plan.returns_rows = result.returns_rows
                    if plan.returns_rows:
                        result.all()
            if plan.extras:  # cpu, a hold or injected errors
                if plan.cpu:
                    burn(plan.cpu)
                if plan.has_hold:
                    seconds = plan.hold(worker.rng)
                    if plan.sleep_sql is not None:
                        executor.execute(plan.sleep_sql, {"seconds": seconds}).all()
                    elif self.stop.wait(seconds):
                        _close_quietly(holder)
                        return
                if plan.error_rate and worker.rng.random() < plan.error_rate:
                    raise InjectedError(f"injected application error in group {plan.group.label!r}")
        except BaseException as exc:  # SystemExit from a task too: an error of this request
            # Drop the traceback: it references this frame, and with it the session,
            # which would otherwise live on until the cyclic garbage collector runs.
            failure = exc.with_traceback(None)
            leaked = self._release(plan, holder, conn, True)
            if not self.halted:
                self._failed(plan, failure, t1 - t0, perf_counter() - t1, leaked)
            return
        if plan.closes:
            try:  # the common case, inline: give the connection back
                holder.close()
            except Exception:
                pass
            leaked = False
        else:
            leaked = self._release(plan, holder, conn, False)
        if self.halted:
            return
        self._append(
            (plan.index, OK, int((t1 - t0) * 1e6), int((perf_counter() - t1) * 1e6), leaked)
        )

    def _release(self, plan: GroupPlan, holder: Any, conn: Any, failed: bool) -> bool:
        """Return the connection as the group's behaviour does; True if it leaked."""
        behaviour = plan.group.session
        if behaviour == "closed" or (behaviour == "leak_on_error" and not failed):
            _close_quietly(holder)
            return False
        if behaviour == "unclosed":
            # Dropped without close(): mark the pooled connection so the checkin event
            # can tell the garbage collector returned it, then let go of every reference.
            try:
                dbapi_proxy = conn.connection
                if dbapi_proxy is not None:
                    dbapi_proxy.info[ABANDONED] = monotonic()
            except Exception:  # an invalidated connection has no pooled connection left
                pass
            self.recorder.note_leak()
            return True
        self.recorder.note_leak()
        self.leaks.keep(holder, plan.group.leak_hold)
        return True

    def _run_own_sessions(self, plan: GroupPlan, worker: Worker) -> None:
        """A task that gets the sessionmaker and manages its sessions itself."""
        assert plan.task is not None and self.timer is not None
        self.timer.take_wait()
        start = perf_counter()
        failure: BaseException | None = None
        try:
            if plan.dependency:
                self._through_dependency(plan, worker.rng)
            else:
                plan.task(self.Session)
        except BaseException as exc:  # SystemExit too: an error of this request
            failure = exc.with_traceback(None)
        total = perf_counter() - start
        waited = self.timer.take_wait()
        if self.halted:
            return
        if failure is None:
            self.recorder.finished(
                plan.index, OK, int(waited * 1e6), int((total - waited) * 1e6), False
            )
        else:
            self._failed(plan, failure, waited, total - waited, leaked=False)

    def _through_dependency(self, plan: GroupPlan, rng: random.Random) -> None:
        """A request through a get_db-style generator dependency, as FastAPI drives one:
        ``next()`` gives the session, the request's work runs on it, then the generator is
        resumed (closed, or thrown the request's error), so a dependency without
        ``finally: db.close()`` leaks here as it does in production."""
        assert plan.task is not None
        with contextlib.contextmanager(plan.task)() as db:
            result = db.execute(plan.query)
            if result.returns_rows:
                result.all()
            if plan.has_hold:
                seconds = plan.hold(rng)
                if plan.sleep_sql is not None:
                    db.execute(plan.sleep_sql, {"seconds": seconds}).all()
                else:
                    self.stop.wait(seconds)
