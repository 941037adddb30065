"""The server's own view of this run: its connections by state, its limits, and kills.

A probe holds one connection of its own, outside the pool being measured, tagged so
it never counts itself. What to ask is the backend's (db/backends/): PostgreSQL tells
this run's connections by ``application_name``, MySQL/MariaDB by the connection ids the
pool's connect event recorded (see engine.pool.PoolWatch).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from .. import errors
from .backends import Backend
from .target import mask_url, scrub


@dataclass(frozen=True)
class ServerView:
    """This run's connections as the server sees them: counts by state, and their ids."""

    counts: dict[str, int]
    ids: frozenset[int]


class ServerProbe:
    """One connection of the run's own to the server, asking what ``backend`` knows to ask."""

    def __init__(self, url: URL, backend: Backend, application_name: str) -> None:
        self.url = url  # as the user gave it, for messages
        # an async driver's run is probed through a sync driver of the same database
        self.backend = backend.sync_twin()
        args = self.backend.driver.probe_connect_args(f"{application_name}-probe")
        self._engine = sa.create_engine(
            backend.sync_url(url), poolclass=NullPool, connect_args=args
        )
        self.application_name = application_name
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self.server_version = ""
        self.max_connections: int | None = None
        self.reserved_connections: int | None = None  # slots only superusers may use
        self.superuser: bool | None = None
        self.connections_in_use: int | None = None  # every client's, ours included, at open()

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Connect (DatabaseUnreachable if that fails) and read the server's facts."""
        try:
            self._conn = self._engine.connect()
            self._conn.execution_options(isolation_level="AUTOCOMMIT")
            self._read_facts(self._conn)
        except sa.exc.DBAPIError as exc:
            self.close()
            raise errors.DatabaseUnreachable(self._explain(exc)) from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; closing is best effort
                pass
        self._engine.dispose()

    def _explain(self, exc: sa.exc.DBAPIError) -> str:
        driver = self.backend.driver
        shown = mask_url(self.url)
        if exc.orig is None:
            detail = " ".join(str(exc).split())
        else:
            code = driver.error_code(exc.orig)
            detail = driver.error_message(exc.orig)
            if code and not code.startswith("0"):
                detail = f"{detail} ({code})"
        return scrub(f"cannot connect to {shown}: {detail}", self.url)

    def _run(self, fn: Callable[[Connection], object]) -> object:
        """Run ``fn`` on the probe's connection, reconnecting once if the server dropped it."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed or self._conn.invalidated:
                        self._conn = self._engine.connect()
                        self._conn.execution_options(isolation_level="AUTOCOMMIT")
                    return fn(self._conn)
                except sa.exc.DBAPIError:
                    if self._conn is not None:
                        with contextlib.suppress(Exception):
                            self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    # -- what the backend asks ---------------------------------------------------------------

    def _read_facts(self, conn: Connection) -> None:
        facts = self.backend.server_facts(conn)
        self.server_version = facts.server_version
        self.max_connections = facts.max_connections
        self.reserved_connections = facts.reserved_connections
        self.superuser = facts.superuser
        self.connections_in_use = facts.connections_in_use

    def view(self, server_ids: Iterable[int] = ()) -> ServerView:
        """This run's connections by state (with a ``total``) and their ids."""
        ids = list(server_ids)

        def query(conn: Connection) -> ServerView:
            return _view(self.backend.connection_states(conn, self.application_name, ids))

        return self._run(query)  # type: ignore[return-value]

    def available_connections(self) -> int | None:
        """Connections this user could still open at start: max_connections, less the
        slots reserved for superusers (unless we are one), less those already in use."""
        if self.max_connections is None or self.connections_in_use is None:
            return None
        reserved = 0 if self.superuser else (self.reserved_connections or 0)
        # our own probe connection goes away before the pool is built: count it as free
        return self.max_connections - reserved - self.connections_in_use + 1

    def terminate(self, server_ids: Iterable[int] = (), only: Iterable[int] | None = None) -> int:
        """End this run's connections from the server side (``only`` these ids, if given);
        how many were ended. ``server_ids`` are every id the pool opened (MySQL needs them)."""
        ids = list(server_ids) if only is None else [int(i) for i in only]
        if only is not None and not ids:
            return 0

        def kill(conn: Connection) -> int:
            return self.backend.terminate(conn, self.application_name, ids, only is not None)

        return self._run(kill)  # type: ignore[return-value]

    def try_view(self, server_ids: Iterable[int] = ()) -> ServerView | None:
        """Like view, but None when the server cannot be asked right now (a restart)."""
        try:
            return self.view(server_ids)
        except sa.exc.DBAPIError:
            return None

    def try_connections_by_state(self, server_ids: Iterable[int] = ()) -> dict[str, int] | None:
        view = self.try_view(server_ids)
        return None if view is None else view.counts


def _view(rows: Iterable[tuple[int, str]]) -> ServerView:
    counts: dict[str, int] = {}
    ids = set()
    for server_id, state in rows:
        ids.add(server_id)
        counts[state] = counts.get(state, 0) + 1
    counts = dict(sorted(counts.items()))
    counts["total"] = sum(counts.values())
    return ServerView(counts, frozenset(ids))
