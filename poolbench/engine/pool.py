"""The engine under test and what its pool reports, through public API and pool events.

SQLAlchemy tells us checked_out / checked_in / overflow (``QueuePool`` methods) and
fires events on connect, invalidate, close and checkin. It does not count callers
blocked in checkout; the workers count those themselves (engine.workers).
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

    def __init__(self, engine: Engine, settings: PoolSettings) -> None:
        self._engine = engine
        self._settings = settings
        self._lock = threading.Lock()
        self._events = PoolEvents()
        self._open = 0  # DBAPI connections open now (connects - closes)
        self.server_ids: set[int] = set()
        self._listeners = [
            ("connect", self._on_connect),
            ("invalidate", self._on_invalidate),
            ("soft_invalidate", self._on_soft_invalidate),
            ("close", self._on_close),
            ("close_detached", self._on_close_detached),
            ("checkin", self._on_checkin),
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
            if previous is not None:
                if rinfo.pop("poolbench_invalidated", False):
                    pass  # a reconnect after an invalidation, already counted
                elif 0 <= self._settings.pool_recycle <= now - previous:
                    self._events.recycles += 1
        rinfo["poolbench_connected_at"] = now

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

    def _on_close_detached(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._events.closes += 1
            self._open -= 1

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(ABANDONED, None) is not None:
            with self._lock:
                self._events.gc_returned += 1

    # -- readings (sampler thread) ------------------------------------------------------------

    def server_id_list(self) -> list[int]:
        """Server-side ids of every connection this pool opened (MySQL thread ids, PG pids)."""
        with self._lock:
            return list(self.server_ids)

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
