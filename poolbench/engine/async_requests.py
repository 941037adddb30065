"""One request on an ``AsyncEngine``, for each session behaviour, as an async service writes it.

The coroutine twin of engine/requests.py: an ``AsyncSession`` (``closed`` is ``async with``)
or an ``AsyncConnection``, the checkout forced first (``await session.connection()``) so
the wait for the pool is measured where it happens, a hold spent in ``asyncio.sleep`` or
on the server. Everything runs on the pool side's one event loop; the recorder, the leak
registry and the classifier are the threaded side's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from time import monotonic, perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ..db.backends import Backend
from ..metrics.recorder import OK, OUTCOME, Recorder
from ..result import CANCEL_OUTCOMES
from .classify import InjectedError
from .peaks import Peak
from .pool import ABANDONED
from .requests import GroupPlan, LeakRegistry, RecordsFailures, Worker, burn

# how long a kept (leaked) session may take to close on the loop, from another thread
CLOSE_TIMEOUT_S = 5.0


class LoopCloser:
    """A session kept by the leak registry, closed on its event loop from any other thread
    (the registry's reaper, the shutdown)."""

    __slots__ = ("loop", "session")

    def __init__(self, session: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.loop = loop

    def close(self) -> None:
        if self.loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.session.close(), self.loop)
        future.result(CLOSE_TIMEOUT_S)


async def close_quietly(holder: Any) -> None:
    try:
        await holder.close()
    except Exception:  # a broken connection: the pool invalidates it on its own
        pass


class Flight:
    """One cancellable request: when it got its connection and what became of it."""

    __slots__ = (
        "conn",
        "failed",
        "fired",
        "invalidated",
        "leaked",
        "record",
        "returned",
        "t0",
        "t1",
    )

    def __init__(self) -> None:
        self.fired = False  # the cancel timer went off
        self.t0 = 0.0
        self.t1: float | None = None  # when the checkout ended
        self.conn: Any = None
        self.record: Any = None  # the pool's record of its connection
        self.returned = False  # checked in
        self.invalidated = False
        self.failed = False
        self.leaked = False


class FlightWatch:
    """Follows the connections of cancellable requests through the pool's events: a
    checkin returns it, an invalidation closes it; neither means it stayed out."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._flights: dict[int, Flight] = {}  # id(pool record) -> its request
        self._listening = False

    def watch(self, flight: Flight, conn: Any) -> None:
        if not self._listening:
            event.listen(self._engine, "checkin", self._on_checkin)
            event.listen(self._engine, "invalidate", self._on_invalidate)
            event.listen(self._engine, "detach", self._on_checkin)
            self._listening = True
        try:
            record = conn.sync_connection.connection._connection_record
        except Exception:  # no pooled connection (invalidated already)
            return
        flight.record = record
        self._flights[id(record)] = flight

    def forget(self, flight: Flight) -> None:
        # the record may serve another request by now: remove only this one's
        if flight.record is not None and self._flights.get(id(flight.record)) is flight:
            del self._flights[id(flight.record)]

    def outcome(self, flight: Flight) -> str:
        if flight.record is None:
            return "no_connection"
        if flight.invalidated:
            return "invalidated"
        return "returned" if flight.returned else "checked_out"

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        flight = self._flights.pop(id(record), None) if record is not None else None
        if flight is not None:
            flight.returned = True

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        flight = self._flights.get(id(record)) if record is not None else None
        if flight is not None:
            flight.invalidated = True

    def remove(self) -> None:
        if self._listening:
            for name, fn in (
                ("checkin", self._on_checkin),
                ("invalidate", self._on_invalidate),
                ("detach", self._on_checkin),
            ):
                if event.contains(self._engine, name, fn):
                    event.remove(self._engine, name, fn)


class TaskCheckoutTimer:
    """Times the checkouts of code poolbench does not drive (a task given the
    async_sessionmaker), per asyncio task, by wrapping the sync pool's ``connect()``: it
    runs in the awaiting task's greenlet, where ``asyncio.current_task()`` is that task."""

    def __init__(self, engine: AsyncEngine, waiting: Peak) -> None:
        self._waits: dict[Any, float] = {}
        pool = engine.sync_engine.pool
        original = pool.connect

        def connect() -> Any:
            waiting.up()
            start = perf_counter()
            try:
                return original()
            finally:
                task = asyncio.current_task()
                self._waits[task] = self._waits.get(task, 0.0) + perf_counter() - start
                waiting.down()

        pool.connect = connect  # type: ignore[method-assign]

    def take_wait(self) -> float:
        """Seconds the current task spent in checkout since the last call."""
        return self._waits.pop(asyncio.current_task(), 0.0)


async def _work(plan: GroupPlan, worker: Worker, executor: Any) -> None:
    """What a request does while it holds its connection, cancellable or not: the user's
    handler (``async def handler(session)``; a plain def works too) or the query, then its
    CPU, its hold and an injected error."""
    if plan.task is not None:
        returned = plan.task(executor)
        if inspect.isawaitable(returned):
            await returned
    else:
        result = await executor.execute(plan.query)
        if plan.returns_rows is None:
            plan.returns_rows = result.returns_rows
        if plan.returns_rows:
            result.all()
    if plan.extras:  # cpu, a hold or injected errors
        if plan.cpu:
            burn(plan.cpu)  # blocks the event loop: every other request waits
        if plan.has_hold:
            seconds = plan.hold(worker.rng)
            if plan.sleep_sql is not None:
                (await executor.execute(plan.sleep_sql, {"seconds": seconds})).all()
            else:
                await asyncio.sleep(seconds)
        if plan.error_rate and worker.rng.random() < plan.error_rate:
            raise InjectedError(f"injected application error in group {plan.group.label!r}")


class AsyncRequestExecutor(RecordsFailures):
    """Runs one request of a group on the event loop and reports it to the recorder."""

    def __init__(
        self,
        engine: AsyncEngine,
        backend: Backend,
        recorder: Recorder,
        leaks: LeakRegistry,
        started_at: float,
        scrub: Callable[[str], str],
        on_first_timeout: Callable[[float, str, int], None],
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.Session = async_sessionmaker(bind=engine)
        self.recorder = recorder
        self.leaks = leaks
        self.started_at = started_at
        self.scrub = scrub
        self.on_first_timeout = on_first_timeout
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the driver's loop
        self._append = recorder.append
        self.halted = False
        self.waiting = Peak()  # coroutines in checkout now, and their peak (engine/peaks.py)
        self.flights = FlightWatch(engine.sync_engine)
        self.timer: TaskCheckoutTimer | None = None  # tasks that open their own sessions

    async def run(self, worker: Worker, plan: GroupPlan) -> None:
        # The hot path, as in RequestExecutor.run: flags come from the plan.
        if plan.cancel_after is not None:
            await self._run_cancellable(worker, plan)
            return
        if plan.own_sessions:
            await self._run_own_sessions(plan, worker)
            return
        if plan.uses_session:
            holder: Any = self.Session()
            checkout = holder.connection
        else:
            holder = None
            checkout = self.engine.connect
        waiting = self.waiting
        worker.in_checkout = True
        waiting.up()
        t0 = perf_counter()
        try:
            conn = await checkout()
        except Exception as exc:
            worker.in_checkout = False
            waiting.down()
            waited = perf_counter() - t0
            if holder is not None:
                await close_quietly(holder)
            if not self.halted:
                self._failed(plan, exc, waited, 0.0, leaked=False)
            return
        worker.in_checkout = False
        waiting.down()
        t1 = perf_counter()
        if holder is None:
            holder = conn
        if self.halted:  # the connection came from the shutdown's release
            await close_quietly(holder)
            return

        failure: BaseException | None = None
        try:
            await _work(plan, worker, holder if plan.uses_session else conn)
        except Exception as exc:
            failure = exc.with_traceback(None)
        if failure is None and plan.closes:
            await close_quietly(holder)
            leaked = False
        else:
            leaked = await self._release(plan, holder, conn, failure is not None)
        if self.halted:
            return
        held = perf_counter() - t1
        if failure is None:
            self._append((plan.index, OK, int((t1 - t0) * 1e6), int(held * 1e6), leaked))
        else:
            self._failed(plan, failure, t1 - t0, held, leaked)

    # -- tasks that open their own sessions: async_sessionmaker, or a get_db dependency ------

    async def _run_own_sessions(self, plan: GroupPlan, worker: Worker) -> None:
        """``async def handler(async_sessionmaker)``, or an ``async def get_db()`` generator
        driven as FastAPI drives one; checkouts are timed at the pool, per task."""
        assert plan.task is not None and self.timer is not None
        self.timer.take_wait()
        start = perf_counter()
        failure: BaseException | None = None
        try:
            if plan.dependency:
                await self._through_dependency(plan, worker)
            else:
                returned = plan.task(self.Session)
                if inspect.isawaitable(returned):
                    await returned
        except Exception as exc:
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

    async def _through_dependency(self, plan: GroupPlan, worker: Worker) -> None:
        assert plan.task is not None
        async with contextlib.asynccontextmanager(plan.task)() as db:
            result = await db.execute(plan.query)
            if result.returns_rows:
                result.all()
            if plan.has_hold:
                seconds = plan.hold(worker.rng)
                if plan.sleep_sql is not None:
                    (await db.execute(plan.sleep_sql, {"seconds": seconds})).all()
                else:
                    await asyncio.sleep(seconds)

    async def _release(self, plan: GroupPlan, holder: Any, conn: Any, failed: bool) -> bool:
        """Return the connection as the group's behaviour does; True if it leaked."""
        behaviour = plan.group.session
        if behaviour == "closed" or (behaviour == "leak_on_error" and not failed):
            await close_quietly(holder)
            return False
        if behaviour == "unclosed":
            # dropped without close(): the garbage collector finds it (SQLAlchemy logs it)
            try:
                fairy = conn.sync_connection.connection
                if fairy is not None:
                    fairy.info[ABANDONED] = monotonic()
            except Exception:
                pass
            self.recorder.note_leak()
            return True
        self.recorder.note_leak()
        assert self.loop is not None
        self.leaks.keep(LoopCloser(holder, self.loop), plan.group.leak_hold)
        return True

    # -- cancellation: a request cancelled mid-flight, as an ASGI server cancels one ----------

    async def _run_cancellable(self, worker: Worker, plan: GroupPlan) -> None:
        """The request written as a service writes it (``async with``), with a timer that
        cancels its task; what became of its connection is read from the pool's events."""
        assert plan.cancel_after is not None and self.loop is not None
        task = asyncio.current_task()
        assert task is not None
        flight = Flight()

        def cancel() -> None:
            flight.fired = True
            task.cancel()

        timer = self.loop.call_later(plan.cancel_after(worker.rng), cancel)
        flight.t0 = perf_counter()
        failure: BaseException | None = None
        try:
            await self._request(worker, plan, flight)
        except asyncio.CancelledError:
            if not flight.fired or self.halted:
                raise  # the run is ending: not the scenario's cancellation
            if hasattr(task, "uncancel"):
                task.uncancel()
            failure = None
        except Exception as exc:
            failure = exc.with_traceback(None)
        finally:
            timer.cancel()
            if worker.in_checkout:  # cancelled while waiting for a connection
                worker.in_checkout = False
                self.waiting.down()
            self.flights.forget(flight)
        if self.halted:
            return
        t1 = flight.t1 if flight.t1 is not None else perf_counter()
        waited, held = t1 - flight.t0, perf_counter() - t1
        if flight.fired and failure is None:
            self._cancelled(plan, flight, waited, held)
        elif failure is not None:
            self._failed(plan, failure, waited, held, flight.leaked)
        else:
            self.recorder.finished(
                plan.index, OK, int(waited * 1e6), int(held * 1e6), flight.leaked
            )

    async def _request(self, worker: Worker, plan: GroupPlan, flight: Flight) -> None:
        if plan.uses_session:
            session = self.Session()
            if plan.closes:
                async with session:
                    await self._checkout(worker, flight, session.connection)
                    await self._body(worker, plan, flight, session)
                return
            try:
                await self._checkout(worker, flight, session.connection)
                await self._body(worker, plan, flight, session)
            finally:
                flight.leaked = await self._release(plan, session, flight.conn, flight.failed)
        elif plan.closes:
            worker.in_checkout = True
            self.waiting.up()
            async with self.engine.connect() as conn:  # checks out on entry
                self._checked_out(worker, flight, conn)
                await self._body(worker, plan, flight, conn)
        else:
            conn = await self._checkout(worker, flight, self.engine.connect)
            try:
                await self._body(worker, plan, flight, conn)
            finally:
                flight.leaked = await self._release(plan, conn, conn, flight.failed)

    async def _checkout(self, worker: Worker, flight: Flight, checkout: Any) -> Any:
        worker.in_checkout = True
        self.waiting.up()
        conn = await checkout()
        self._checked_out(worker, flight, conn)
        return conn

    def _checked_out(self, worker: Worker, flight: Flight, conn: Any) -> None:
        worker.in_checkout = False
        self.waiting.down()
        flight.t1 = perf_counter()
        flight.conn = conn
        self.flights.watch(flight, conn)

    async def _body(self, worker: Worker, plan: GroupPlan, flight: Flight, executor: Any) -> None:
        try:
            await _work(plan, worker, executor)
        except BaseException:  # an error or the cancellation: the failure path
            flight.failed = True
            raise

    def _cancelled(self, plan: GroupPlan, flight: Flight, waited: float, held: float) -> None:
        outcome = self.flights.outcome(flight)
        message = f"request cancelled: {CANCEL_OUTCOMES[outcome]}"
        t_s = perf_counter() - self.started_at
        leaked = outcome == "checked_out"
        if leaked:
            self.recorder.note_leak()
        error = ("cancelled", outcome, message, t_s)
        self.recorder.finished(
            plan.index, OUTCOME["cancelled"], int(waited * 1e6), int(held * 1e6), leaked, error
        )
