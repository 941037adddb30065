"""The engine under test and what its pool reports, through public API and pool events.

SQLAlchemy tells us checked_out / checked_in / overflow (``QueuePool`` methods) and
fires events on connect, invalidate, close and checkin. It does not count callers
blocked in checkout; the load driver counts those itself (engine/load.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool, QueuePool

from ..db.server import connect_args
from ..result import PoolEvents
from ..scenario.model import PoolSettings

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


def build_engine(url: URL, settings: PoolSettings, application_name: str) -> Engine:
    return sa.create_engine(
        url,
        connect_args=connect_args(url, application_name),
        **engine_kwargs(settings),
    )


@dataclass(frozen=True)
class PoolState:
    checked_out: int
    checked_in: int
    overflow: int
    status: str


class PoolWatch:
    """Listens to the pool's events and reads its gauges; safe from any thread."""

    def __init__(
        self,
        engine: Engine,
        settings: PoolSettings,
        track_idle: bool = False,
        track_gc: bool = False,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._lock = threading.Lock()
        self._events = PoolEvents()
        self._open = 0  # DBAPI connections open now (connects - closes)
        self.server_ids: set[int] = set()  # every server-side id this pool ever opened
        self._open_ids: dict[int, int] = {}  # id(DBAPI connection) -> server id, open now
        self._idle_ids: set[int] = set()  # server ids of connections checked in right now
        self._listeners = [
            ("connect", self._on_connect),
            ("invalidate", self._on_invalidate),
            ("soft_invalidate", self._on_soft_invalidate),
            ("close", self._on_close),
            ("close_detached", self._on_close_detached),
        ]
        if track_gc:
            # only when a group drops sessions unclosed: a listener on every checkin costs
            # a little on the hot path
            self._listeners.append(("checkin", self._on_checkin))
        if track_idle:
            # only for faults that target idle connections: a listener on every checkout
            # and checkin costs a little on the hot path
            self._listeners += [
                ("checkout", self._on_checkout_idle),
                ("checkin", self._on_checkin_idle),
            ]
        for name, fn in self._listeners:
            event.listen(engine, name, fn)

    def remove(self) -> None:
        for name, fn in self._listeners:
            if event.contains(self._engine, name, fn):
                event.remove(self._engine, name, fn)

    # -- events (fired in worker threads) ---------------------------------------------------

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        server_id = _server_id(dbapi_connection)
        now = time.monotonic()
        # record_info survives reconnects of the same pool slot; info does not.
        rinfo = record.record_info
        previous = rinfo.get("poolbench_connected_at")
        with self._lock:
            self._events.connects += 1
            self._open += 1
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

    def events(self) -> PoolEvents:
        with self._lock:
            return replace(self._events)

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


def _server_id(dbapi_connection: Any) -> int | None:
    """The server's id for a new DBAPI connection, without a round trip."""
    thread_id = getattr(dbapi_connection, "thread_id", None)  # PyMySQL
    if callable(thread_id):
        try:
            return int(thread_id())
        except Exception:
            return None
    info = getattr(dbapi_connection, "info", None)  # psycopg2 >= 2.8
    pid = getattr(info, "backend_pid", None)
    return int(pid) if isinstance(pid, int) else None
