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

    def connections_by_state(self, server_ids: Iterable[int] = ()) -> dict[str, int] | None:
        """This run's connections by state, with a ``total``; None if unsupported."""
        return None

    def terminate(self, server_ids: Iterable[int] = (), idle_only: bool = False) -> int:
        """Close this run's connections from the server side; how many were ended."""
        return 0

    def try_connections_by_state(self, server_ids: Iterable[int] = ()) -> dict[str, int] | None:
        """Like connections_by_state, but None when the server cannot be asked right now."""
        try:
            return self.connections_by_state(server_ids)
        except sa.exc.DBAPIError:
            return None


class PostgresProbe(ServerProbe):
    kind = "postgresql"

    def _read_facts(self, conn: Connection) -> None:
        self.server_version = conn.exec_driver_sql("SHOW server_version").scalar() or ""
        self.max_connections = int(conn.exec_driver_sql("SHOW max_connections").scalar())

    def connections_by_state(self, server_ids: Iterable[int] = ()) -> dict[str, int] | None:
        def query(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                sa.text(
                    "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
                    "WHERE application_name = :app GROUP BY 1"
                ),
                {"app": self.application_name},
            ).all()
            return _with_total({state: n for state, n in rows})

        return self._run(query)  # type: ignore[return-value]

    def terminate(self, server_ids: Iterable[int] = (), idle_only: bool = False) -> int:
        condition = "AND state = 'idle'" if idle_only else ""

        def kill(conn: Connection) -> int:
            return len(
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE application_name = :app {condition}"
                    ),
                    {"app": self.application_name},
                ).all()
            )

        return self._run(kill)  # type: ignore[return-value]


class MySQLProbe(ServerProbe):
    kind = "mysql"

    def _read_facts(self, conn: Connection) -> None:
        self.server_version = conn.exec_driver_sql("SELECT VERSION()").scalar() or ""
        self.max_connections = int(conn.exec_driver_sql("SELECT @@max_connections").scalar())

    def _processes(self, conn: Connection, ids: list[int]) -> list[tuple[int, str, bool]]:
        id_list = ",".join(str(int(i)) for i in ids)
        rows = conn.exec_driver_sql(
            "SELECT p.ID, p.COMMAND, t.trx_id IS NOT NULL "
            "FROM information_schema.PROCESSLIST p "
            "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
            f"WHERE p.ID IN ({id_list})"
        ).all()
        return [(int(i), str(command), bool(in_trx)) for i, command, in_trx in rows]

    def connections_by_state(self, server_ids: Iterable[int] = ()) -> dict[str, int] | None:
        ids = list(server_ids)
        if not ids:
            return {"total": 0}

        def query(conn: Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for _id, command, in_trx in self._processes(conn, ids):
                if command == "Sleep":
                    state = "idle in transaction" if in_trx else "idle"
                elif command in ("Query", "Execute"):
                    state = "active"
                else:
                    state = command.lower()
                counts[state] = counts.get(state, 0) + 1
            return _with_total(counts)

        return self._run(query)  # type: ignore[return-value]

    def terminate(self, server_ids: Iterable[int] = (), idle_only: bool = False) -> int:
        ids = list(server_ids)
        if not ids:
            return 0

        def kill(conn: Connection) -> int:
            ended = 0
            for pid, command, _ in self._processes(conn, ids):
                if idle_only and command != "Sleep":
                    continue
                try:
                    conn.exec_driver_sql(f"KILL {int(pid)}")
                    ended += 1
                except sa.exc.DBAPIError:  # it ended on its own meanwhile
                    pass
            return ended

        return self._run(kill)  # type: ignore[return-value]


def _with_total(counts: dict[str, int]) -> dict[str, int]:
    counts = dict(sorted(counts.items()))
    counts["total"] = sum(counts.values())
    return counts


def probe_for(url: URL, application_name: str) -> ServerProbe:
    backend = url.get_backend_name()
    if backend == "postgresql":
        return PostgresProbe(url, application_name)
    if backend in ("mysql", "mariadb"):
        return MySQLProbe(url, application_name)
    return ServerProbe(url, application_name)
