"""The server's own view of this run: its connections by state, its limits, and kills.

A probe holds one connection of its own, outside the pool being measured, tagged so
it never counts itself. PostgreSQL tells this run's connections by
``application_name``; MySQL/MariaDB by the connection ids the pool's connect event
recorded (see engine.pool.PoolWatch).
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
from .target import scrub

CONNECT_TIMEOUT_S = 3
PROBE_READ_TIMEOUT_S = 5


def connect_args(url: URL, application_name: str) -> dict[str, object]:
    """Driver arguments every poolbench connection gets: a tag and a short connect timeout."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        return {"application_name": application_name, "connect_timeout": CONNECT_TIMEOUT_S}
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": CONNECT_TIMEOUT_S, "program_name": application_name}
    return {}


@dataclass(frozen=True)
class ServerView:
    """This run's connections as the server sees them: counts by state, and their ids."""

    counts: dict[str, int]
    ids: frozenset[int]


class ServerProbe:
    """Base class: a dialect without server-side introspection (counts are None)."""

    kind = "other"

    def __init__(self, url: URL, application_name: str) -> None:
        self.url = url
        self.application_name = application_name
        args = connect_args(url, f"{application_name}-probe")
        if url.get_backend_name() in ("mysql", "mariadb"):
            # PyMySQL's connect_timeout covers only the TCP connect; a server that accepts
            # and never greets would otherwise hang the probe for ever.
            args.update(read_timeout=PROBE_READ_TIMEOUT_S, write_timeout=PROBE_READ_TIMEOUT_S)
        self._engine = sa.create_engine(url, poolclass=NullPool, connect_args=args)
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
        from ..engine.classify import driver_code, driver_message

        shown = self.url.render_as_string(hide_password=True)
        if exc.orig is None:
            detail = " ".join(str(exc).split())
        else:
            code = driver_code(exc.orig)
            detail = driver_message(exc.orig)
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

    # -- dialect hooks -----------------------------------------------------------------------

    def _read_facts(self, conn: Connection) -> None:
        self.server_version = str(conn.dialect.server_version_info or "")

    def view(self, server_ids: Iterable[int] = ()) -> ServerView | None:
        """This run's connections by state (with a ``total``) and ids; None if unsupported."""
        return None

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
        return 0

    def try_view(self, server_ids: Iterable[int] = ()) -> ServerView | None:
        """Like view, but None when the server cannot be asked right now (a restart)."""
        try:
            return self.view(server_ids)
        except sa.exc.DBAPIError:
            return None

    def try_connections_by_state(self, server_ids: Iterable[int] = ()) -> dict[str, int] | None:
        view = self.try_view(server_ids)
        return None if view is None else view.counts


class PostgresProbe(ServerProbe):
    kind = "postgresql"

    def _read_facts(self, conn: Connection) -> None:
        self.server_version = conn.exec_driver_sql("SHOW server_version").scalar() or ""
        self.max_connections = int(conn.exec_driver_sql("SHOW max_connections").scalar())
        reserved = int(conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar())
        more = conn.exec_driver_sql(  # PostgreSQL 16+: reserved for pg_use_reserved_connections
            "SELECT current_setting('reserved_connections', true)"
        ).scalar()
        self.reserved_connections = reserved + (int(more) if more else 0)
        self.superuser = bool(
            conn.exec_driver_sql(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).scalar()
        )
        self.connections_in_use = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).scalar()
        )

    def view(self, server_ids: Iterable[int] = ()) -> ServerView | None:
        def query(conn: Connection) -> ServerView:
            rows = conn.execute(
                sa.text(
                    "SELECT pid, coalesce(state, 'unknown') FROM pg_stat_activity "
                    "WHERE application_name = :app"
                ),
                {"app": self.application_name},
            ).all()
            return _view((int(pid), state) for pid, state in rows)

        return self._run(query)  # type: ignore[return-value]

    def terminate(self, server_ids: Iterable[int] = (), only: Iterable[int] | None = None) -> int:
        pids = None if only is None else [int(p) for p in only]
        if pids == []:
            return 0

        def kill(conn: Connection) -> int:
            sql = (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :app"
            )
            params: dict[str, object] = {"app": self.application_name}
            if pids is not None:
                # idle in the pool, and still idle on the server a moment later: a
                # connection checked out (and pinged) since is left alone
                sql += (
                    " AND pid = ANY(:pids) AND state = 'idle'"
                    " AND state_change < clock_timestamp() - interval '5 milliseconds'"
                )
                params["pids"] = pids
            return sum(1 for (ended,) in conn.execute(sa.text(sql), params) if ended)

        return self._run(kill)  # type: ignore[return-value]


class MySQLProbe(ServerProbe):
    kind = "mysql"

    def _read_facts(self, conn: Connection) -> None:
        self.server_version = conn.exec_driver_sql("SELECT VERSION()").scalar() or ""
        self.max_connections = int(conn.exec_driver_sql("SELECT @@max_connections").scalar())
        # MySQL keeps one connection beyond max_connections for an account with SUPER or
        # CONNECTION_ADMIN; it is not for applications, so it is not counted here.
        self.reserved_connections = 0
        self.connections_in_use = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'"
            ).scalar()
        )

    def _processes(self, conn: Connection, ids: list[int]) -> list[tuple[int, str, bool]]:
        id_list = ",".join(str(int(i)) for i in ids)
        rows = conn.exec_driver_sql(
            "SELECT p.ID, p.COMMAND, t.trx_id IS NOT NULL "
            "FROM information_schema.PROCESSLIST p "
            "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
            f"WHERE p.ID IN ({id_list})"
        ).all()
        return [(int(i), str(command), bool(in_trx)) for i, command, in_trx in rows]

    def view(self, server_ids: Iterable[int] = ()) -> ServerView | None:
        ids = list(server_ids)
        if not ids:
            return ServerView({"total": 0}, frozenset())

        def state(command: str, in_trx: bool) -> str:
            if command == "Sleep":
                return "idle in transaction" if in_trx else "idle"
            return "active" if command in ("Query", "Execute") else command.lower()

        def query(conn: Connection) -> ServerView:
            return _view(
                (i, state(command, in_trx)) for i, command, in_trx in self._processes(conn, ids)
            )

        return self._run(query)  # type: ignore[return-value]

    def terminate(self, server_ids: Iterable[int] = (), only: Iterable[int] | None = None) -> int:
        ids = list(server_ids) if only is None else list(only)
        if not ids:
            return 0

        def kill(conn: Connection) -> int:
            ended = 0
            for pid, command, in_trx in self._processes(conn, ids):
                if only is not None and (command != "Sleep" or in_trx):
                    continue  # checked out and busy since the pool's list was read
                try:
                    conn.exec_driver_sql(f"KILL {int(pid)}")
                    ended += 1
                except sa.exc.DBAPIError:  # it ended on its own meanwhile
                    pass
            return ended

        return self._run(kill)  # type: ignore[return-value]


def _view(rows: Iterable[tuple[int, str]]) -> ServerView:
    counts: dict[str, int] = {}
    ids = set()
    for server_id, state in rows:
        ids.add(server_id)
        counts[state] = counts.get(state, 0) + 1
    counts = dict(sorted(counts.items()))
    counts["total"] = sum(counts.values())
    return ServerView(counts, frozenset(ids))


def probe_for(url: URL, application_name: str) -> ServerProbe:
    backend = url.get_backend_name()
    if backend == "postgresql":
        return PostgresProbe(url, application_name)
    if backend in ("mysql", "mariadb"):
        return MySQLProbe(url, application_name)
    return ServerProbe(url, application_name)
