"""The engine under test and what its pool reports, through public API and pool events.

SQLAlchemy tells us checked_out / checked_in / overflow (``QueuePool`` methods) and
fires events on connect, invalidate, close and checkin. It does not count callers
blocked in checkout; the load driver counts those itself (engine/load.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.util import queue as sqla_queue

from ..result import PoolEvents
from ..scenario.model import PoolSettings
from .peaks import Peak

ABANDONED = "poolbench_abandoned"  # key in a connection's .info: dropped without close()


def engine_kwargs(settings: PoolSettings) -> dict[str, Any]:
    """The create_engine() pool arguments for ``settings``, exactly as a service passes them."""
    kwargs: dict[str, Any] = {
        "pool_recycle": int(settings.pool_recycle)
        if float(settings.pool_recycle).is_integer()
        else settings.pool_recycle,
        "pool_pre_ping": settings.pool_pre_ping,
        "pool_reset_on_return": None
        if settings.pool_reset_on_return == "none"
        else settings.pool_reset_on_return,
    }
    if settings.poolclass == "NullPool":
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(
            poolclass=QueuePool,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_use_lifo=settings.pool_use_lifo,
        )
    return kwargs


def build_engine(url: URL, settings: PoolSettings, connect_args: dict[str, Any]) -> Engine:
    return sa.create_engine(url, connect_args=connect_args, **engine_kwargs(settings))


@dataclass(frozen=True)
class PoolState:
    checked_out: int
    checked_in: int
    overflow: int
    status: str


@dataclass(frozen=True)
class PoolPeaks:
    """The pool's exact highest values since the last reading (engine/peaks.py)."""

    checked_out: int
    overflow: int
    open: int


class PoolWatch:
    """Listens to the pool's events and reads its gauges; safe from any thread."""

    def __init__(
        self,
        engine: Engine,
        settings: PoolSettings,
        server_id: Callable[[Any], int | None],
        track_idle: bool = False,
        track_gc: bool = False,
        count_checkouts: bool = True,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._server_id = server_id  # the driver's: the server's id of a DBAPI connection
        self._lock = threading.Lock()
        self._events = PoolEvents()
        self._open = 0  # DBAPI connections open now (connects - closes)
        self.server_ids: set[int] = set()  # every server-side id this pool ever opened
        self._open_ids: dict[int, int] = {}  # id(DBAPI connection) -> server id, open now
        self._idle_ids: set[int] = set()  # server ids of connections checked in right now
        self._connecting: dict[int, float] = {}  # id(pool record) -> when do_connect began
        self._create_us: Counter[int] = Counter()  # connection create times since last drain
        self._create_all: Counter[int] = Counter()  # every create time of the run
        self._queued = 0  # checkouts that blocked in the pool's queue (see _watch_queue)
        self._unwatch: list[Callable[[], None]] = []
        # exact high-water marks, kept at every checkout and connect (engine/peaks.py)
        self.peak_checked_out = Peak()
        self.peak_overflow = Peak()
        self.peak_open = Peak()
        self._plain_queue_pool: Any = None  # a QueuePool whose gauges are read directly
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("do_connect", self._on_do_connect),
            ("connect", self._on_connect),
            ("invalidate", self._on_invalidate),
            ("soft_invalidate", self._on_soft_invalidate),
            ("close", self._on_close),
            ("close_detached", self._on_close_detached),
        ]
        if count_checkouts:
            # off where poolbench's own requests are the only checkouts: the executor reads
            # the count right after each of its checkouts (RequestExecutor.checkout_peak),
            # without SQLAlchemy's dispatch of an event on every request (make bench)
            self._listeners.insert(0, ("checkout", self._on_checkout_peak))
        if track_gc:
            # only when a group drops sessions unclosed: a listener on every checkin costs
            # a little on the hot path
            # an async engine's collector cannot return the connection: it detaches and
            # terminates it (SQLAlchemy logs it), freeing the slot
            self._listeners += [("checkin", self._on_checkin), ("detach", self._on_checkin)]
        if track_idle:
            # only for faults that target idle connections: a listener on every checkout
            # and checkin costs a little on the hot path
            self._listeners += [
                ("checkout", self._on_checkout_idle),
                ("checkin", self._on_checkin_idle),
            ]
        for name, fn in self._listeners:
            event.listen(engine, name, fn)
        self._watch_queue(engine.pool)

    def _watch_queue(self, pool: Any) -> None:
        """Count the checkouts that found no idle connection and no room to open one:
        those that blocked in the pool's queue (what Erlang C calls waiting). Opening a
        new connection is not waiting in this sense; its time is the create histogram."""
        q = getattr(pool, "_pool", None)
        if isinstance(q, sqla_queue.AsyncAdaptedQueue):
            original_async_get = q.get

            def async_get(block: bool = True, timeout: float | None = None) -> Any:
                # one event loop: nothing can fill the queue between this test and the get
                if block and q._queue.empty():
                    with self._lock:
                        self._queued += 1
                return original_async_get(block, timeout)

            q.get = async_get  # type: ignore[method-assign]
            self._unwatch.append(lambda: q.__dict__.pop("get", None))
        elif isinstance(q, sqla_queue.Queue):
            # Only the condition's wait is hooked: a checkout that never sleeps (the
            # common case) runs no code of ours. A caller may sleep more than once in one
            # checkout (woken, but another thread took the connection): it counts once.
            local = threading.local()
            condition = q.not_empty
            original_wait = condition.wait

            def wait(timeout: float | None = None) -> bool:
                if not getattr(local, "counted", False):
                    local.counted = True
                    with self._lock:
                        self._queued += 1
                woken = original_wait(timeout)
                # the queue's lock is held again here: with a connection in the queue the
                # caller takes it now, and timed out with none it gives up; either way
                # this checkout's wait is over (woken to an empty queue, it sleeps again)
                if not woken or not q._empty():
                    local.counted = False
                return woken

            condition.wait = wait  # type: ignore[method-assign]
            self._unwatch.append(lambda: condition.__dict__.pop("wait", None))

    def queued(self) -> int:
        """Checkouts so far that blocked in the pool's queue."""
        with self._lock:
            return self._queued

    def create_times(self) -> dict[int, int]:
        """How long every connection of the run took to open, {micros: how many}."""
        with self._lock:
            return dict(self._create_all)

    def remove(self) -> None:
        for undo in self._unwatch:
            undo()
        self._unwatch.clear()
        for name, fn in self._listeners:
            if event.contains(self._engine, name, fn):
                event.remove(self._engine, name, fn)

    # -- events (fired in worker threads) ---------------------------------------------------

    def _on_checkout_peak(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # The checked-out count only grows at a checkout: reading it here sees every peak.
        # On every request's path, so QueuePool.checkedout() is computed from the same
        # attributes without its three calls and the queue's lock (make bench).
        pool = self._engine.pool
        if pool is not self._plain_queue_pool:
            if not isinstance(pool, QueuePool):
                return  # a NullPool's checkouts are its connects
            if type(pool._pool) is not sqla_queue.Queue:  # an AsyncAdaptedQueue
                n = pool.checkedout()
                if n > self.peak_checked_out.peak:
                    self.peak_checked_out.note(n)
                return
            self._plain_queue_pool = pool
        q: Any = pool._pool  # checked above: a plain Queue
        n = q.maxsize - len(q.queue) + pool._overflow
        peak = self.peak_checked_out
        if n > peak.peak:
            peak.note(n)

    def _on_do_connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        # the dialect's event just before the DBAPI connect(): the start of a create time
        self._connecting[id(record)] = time.perf_counter()

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        started = self._connecting.pop(id(record), None)
        if started is not None:
            created_us = round((time.perf_counter() - started) * 1e6)
            with self._lock:
                self._create_us[created_us] += 1
                self._create_all[created_us] += 1
        server_id = self._server_id(dbapi_connection)
        now = time.monotonic()
        # record_info survives reconnects of the same pool slot; info does not.
        rinfo = record.record_info
        previous = rinfo.get("poolbench_connected_at")
        with self._lock:
            self._events.connects += 1
            self._open += 1
            opened = self._open
            if server_id is not None:
                self.server_ids.add(server_id)
                self._open_ids[id(dbapi_connection)] = server_id
            if previous is not None:
                # the same pool slot connecting again: after an invalidation (of this
                # connection, or of the whole pool after a disconnect), or a recycle
                self._events.reconnects += 1
                invalidated = rinfo.pop("poolbench_invalidated", False)
                if not invalidated and 0 <= self._settings.pool_recycle <= now - previous:
                    self._events.recycles += 1
        rinfo["poolbench_connected_at"] = now
        record.info["poolbench_server_id"] = server_id
        self.peak_open.note(opened)
        pool = self._engine.pool
        if isinstance(pool, QueuePool):
            # the overflow only grows just before a new connection opens
            self.peak_overflow.note(pool.overflow())
        else:
            self.peak_checked_out.note(opened)  # a NullPool's connections are all in use

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        with self._lock:
            self._events.invalidations += 1
            if isinstance(exception, sa_exc.InvalidatePoolError):
                # pre_ping found this connection dead and reconnects it within checkout
                self._events.pre_ping_recoveries += 1
        if record is not None:
            record.record_info["poolbench_invalidated"] = True

    def _on_soft_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        with self._lock:
            self._events.soft_invalidations += 1

    def _on_close(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self._events.closes += 1
            self._open -= 1
            self._idle_ids.discard(self._open_ids.pop(id(dbapi_connection), None))

    def _on_close_detached(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._events.closes += 1
            self._open -= 1
            self._idle_ids.discard(self._open_ids.pop(id(dbapi_connection), None))

    def _on_checkout_idle(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with self._lock:
            self._idle_ids.discard(record.info.get("poolbench_server_id"))

    def _on_checkin_idle(self, dbapi_connection: Any, record: Any) -> None:
        server_id = record.info.get("poolbench_server_id") if record is not None else None
        if dbapi_connection is not None and server_id is not None:
            with self._lock:
                if id(dbapi_connection) in self._open_ids:
                    self._idle_ids.add(server_id)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(ABANDONED, None) is not None:
            with self._lock:
                self._events.gc_returned += 1

    # -- readings (sampler thread) ------------------------------------------------------------

    def server_id_list(self) -> list[int]:
        """Server-side ids of every connection this pool opened (MySQL thread ids, PG pids)."""
        with self._lock:
            return list(self.server_ids)

    def idle_server_ids(self) -> list[int]:
        """Server-side ids of the connections idle in the pool (needs track_idle)."""
        with self._lock:
            return list(self._idle_ids)

    def open_server_ids(self) -> set[int]:
        """Server-side ids of the connections the pool holds open right now."""
        with self._lock:
            return set(self._open_ids.values())

    def drain_create_times(self) -> dict[int, int]:
        """How long each connection opened since the last call took, {micros: how many}."""
        with self._lock:
            created, self._create_us = self._create_us, Counter()
        return dict(created)

    def events(self) -> PoolEvents:
        with self._lock:
            return replace(self._events)

    def peaks(self, state: PoolState) -> PoolPeaks:
        """The highest values since the last call; the next interval starts from ``state``
        (the gauges read just now)."""
        with self._lock:
            opened = max(0, self._open)
        return PoolPeaks(
            checked_out=self.peak_checked_out.take(state.checked_out),
            overflow=self.peak_overflow.take(state.overflow),
            open=self.peak_open.take(opened),
        )

    def state(self, with_status: bool = False) -> PoolState:
        pool = self._engine.pool
        if isinstance(pool, QueuePool):
            checked_out = pool.checkedout()
            checked_in = pool.checkedin()
            # overflow() starts at -pool_size; users mean "connections beyond pool_size"
            overflow = max(0, pool.overflow())
        else:
            with self._lock:
                checked_out, checked_in, overflow = max(0, self._open), 0, 0
        return PoolState(checked_out, checked_in, overflow, pool.status() if with_status else "")
