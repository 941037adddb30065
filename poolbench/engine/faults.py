"""What a scenario's ``faults`` do to the pool's connections, on the server's side.

- ``server_idle_timeout``: every connection the pool opens gets a short server-side idle
  limit (MySQL/MariaDB session ``wait_timeout``; PostgreSQL ``idle_session_timeout``), so
  the 8-hour ``wait_timeout`` case happens in seconds.
- ``kill``: end this run's connections at a moment, as a failover or a DBA would
  (``pg_terminate_backend`` / ``KILL``, never anyone else's): ``all`` of them, or only
  those ``idle`` in the pool. "Idle" is the pool's own view (connections checked in),
  read just before the kill: the server's view would also count connections a request
  holds between two statements (MySQL shows them as Sleep).
- ``restart``: stop and start the embedded PostgreSQL on the same data directory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .. import errors
from ..db.backends import Backend
from ..db.embedded import EmbeddedPostgres
from ..db.server import ServerProbe
from ..result import FaultEvent
from ..scenario.model import Faults
from .interrupts import join_all


def check_supported(faults: Faults, backend: Backend, server_version: str, embedded: Any) -> None:
    """UnsupportedDatabase when the target cannot do what the faults ask."""
    if faults.server_idle_timeout:
        if backend.idle_timeout_sql(faults.server_idle_timeout) is None:
            raise errors.UnsupportedDatabase(
                f"server_idle_timeout is not possible on {backend.title}"
            )
        refusal = backend.idle_timeout_refusal(server_version)
        if refusal is not None:
            raise errors.UnsupportedDatabase(refusal)
    if faults.restart and embedded is None:
        raise errors.UnsupportedDatabase(
            "restart works only on the embedded PostgreSQL (poolbench never restarts a server "
            "it does not own)",
            embedded=EmbeddedPostgres.backend.title,
        )


def install_idle_timeout(engine: Engine, backend: Backend, seconds: float) -> Callable[..., None]:
    """Give every new pool connection a server-side idle limit; returns the listener."""
    statement = backend.idle_timeout_sql(seconds)
    assert statement is not None, "check_supported() first"

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        # a SET may be transactional (PostgreSQL's is): commit it, or the pool's
        # reset-on-return rollback would undo it.
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
    return on_connect


class FaultSchedule:
    """Kills and restarts at their moments; each runs in its own thread so a slow server
    never delays the pool's samples."""

    def __init__(
        self,
        faults: Faults,
        probe: ServerProbe,
        embedded: Any,
        server_ids: Callable[[], list[int]],
        idle_ids: Callable[[], list[int]],
        on_event: Callable[[FaultEvent], None],
    ) -> None:
        self._probe = probe
        self._embedded = embedded
        self._server_ids = server_ids
        self._idle_ids = idle_ids
        self._on_event = on_event
        pending: list[tuple[float, str, str]] = [(k.at, "kill", k.which) for k in faults.kill]
        pending += [(r.at, "restart", "") for r in faults.restart]
        self._pending = sorted(pending)
        self._threads: list[threading.Thread] = []
        self.events: list[FaultEvent] = []

    def next_at(self) -> float | None:
        return self._pending[0][0] if self._pending else None

    def fire_due(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            at, kind, which = self._pending.pop(0)
            thread = threading.Thread(
                target=self._fire, args=(at, kind, which), name=f"poolbench-{kind}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _fire(self, at: float, kind: str, which: str) -> None:
        if kind == "kill":
            detail = "connections idle in the pool" if which == "idle" else "connections"
            event_ = FaultEvent(t_s=round(at, 3), kind="kill", detail=detail)
            try:
                only = self._idle_ids() if which == "idle" else None
                event_.ended = self._probe.terminate(self._server_ids(), only=only)
            except Exception as exc:  # the server may be unreachable: report, don't crash
                event_.error = " ".join(str(exc).split())[:200]
        else:
            event_ = FaultEvent(t_s=round(at, 3), kind="restart", detail="embedded PostgreSQL")
            try:
                self._embedded.restart()
            except Exception as exc:
                event_.error = " ".join(str(exc).split())[:200]
        self.events.append(event_)
        self._on_event(event_)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)


def sync_ping(engine: Engine, query: str) -> Callable[[], None]:
    """The keep-alive's ping on a synchronous engine: check out, run ``query``, return."""
    from sqlalchemy import text

    statement = text(query)

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(statement).all()

    return ping


class KeepAliveJob:
    """The ``keepalive`` remedy: a background thread that checks out a pooled connection and
    runs a query every ``every`` seconds (``ping``: on the engine's own terms, sync or on an
    event loop). A dead connection it meets fails its query (and SQLAlchemy invalidates the
    pool) instead of a request's."""

    def __init__(self, ping: Callable[[], None], every: float, stop: threading.Event) -> None:
        self._ping = ping
        self._every = every
        self._stop = stop
        self.pings = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="poolbench-keepalive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._ping()
                self.pings += 1
            except Exception:  # a dead connection, or the pool is exhausted: count it
                if not self._stop.is_set():
                    self.pings += 1
                    self.errors += 1

    def join(self, timeout: float) -> None:
        join_all([self._thread], timeout)
