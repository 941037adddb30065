"""MySQL and MariaDB, through PyMySQL.

The server keeps no client tag where the probe could filter on it, so this run's
connections are told by the thread ids the pool's connect event recorded
(engine.pool.PoolWatch); a kill is ``KILL``; the idle-timeout fault is the session's
``wait_timeout``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .base import (
    CONNECT_TIMEOUT_S,
    DISCONNECT,
    PROBE_READ_TIMEOUT_S,
    TOO_MANY_CONNECTIONS,
    Backend,
    Driver,
    ServerFacts,
)


class PyMySQL(Driver):
    """PyMySQL, and the async drivers built on its protocol code (same arguments, the
    same ``(code, message)`` errors, ``thread_id()``)."""

    name = "pymysql"
    module = "pymysql"
    package = "pymysql"

    def connect_args(self, tag: str) -> dict[str, Any]:
        return {"connect_timeout": CONNECT_TIMEOUT_S, "program_name": tag}

    def probe_connect_args(self, tag: str) -> dict[str, Any]:
        # connect_timeout covers only the TCP connect; a server that accepts and never
        # greets would otherwise hang the probe for ever.
        return {
            **self.connect_args(tag),
            "read_timeout": PROBE_READ_TIMEOUT_S,
            "write_timeout": PROBE_READ_TIMEOUT_S,
        }

    def server_id(self, dbapi_connection: Any) -> int | None:
        thread_id = getattr(self.driver_connection(dbapi_connection), "thread_id", None)
        if not callable(thread_id):
            return None
        try:
            return int(thread_id())
        except Exception:
            return None

    def error_code(self, orig: BaseException) -> str | None:
        args: tuple[Any, ...] = orig.args
        return str(args[0]) if args and isinstance(args[0], int) else None

    def error_message(self, orig: BaseException) -> str:
        args: tuple[Any, ...] = orig.args
        if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
            # (2013, 'Lost connection to MySQL server during query')
            return " ".join(args[1].split())
        return super().error_message(orig)


class AioMySQL(PyMySQL):
    name = "aiomysql"
    module = "aiomysql"
    package = "aiomysql"
    engines = ("async",)


class AsyncMy(PyMySQL):
    name = "asyncmy"
    module = "asyncmy"
    package = "asyncmy"
    engines = ("async",)


class MySQL(Backend):
    name = "mysql"
    title = "MySQL or MariaDB"
    dialects = ("mysql", "mariadb")
    default_driver = PyMySQL.name
    example_url = "mysql+pymysql://root@127.0.0.1:3306/test"
    drivers = (PyMySQL, AioMySQL, AsyncMy)
    suggested_async_driver = AioMySQL.name
    # ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS
    # and a server that is down, restarting or going away: an outage, not an app error
    error_codes = {
        "1040": TOO_MANY_CONNECTIONS,
        "1203": TOO_MANY_CONNECTIONS,
        "1053": DISCONNECT,  # ER_SERVER_SHUTDOWN
        "2002": DISCONNECT,  # CR_CONNECTION_ERROR (the socket)
        "2003": DISCONNECT,  # CR_CONN_HOST_ERROR: can't connect (refused during a restart)
        "2006": DISCONNECT,  # CR_SERVER_GONE_ERROR
        "2013": DISCONNECT,  # CR_SERVER_LOST
    }
    error_texts = {"too many connections": (TOO_MANY_CONNECTIONS, None)}
    sleep_sql = "SELECT SLEEP(:seconds)"
    clock_sql = "unix_timestamp(now(6))"

    def create_namespace_sql(self, name: str) -> str | None:
        return f"CREATE DATABASE IF NOT EXISTS {name}"

    def drop_namespace_sql(self, name: str) -> str | None:
        return f"DROP DATABASE IF EXISTS {name}"

    def server_facts(self, conn: Connection) -> ServerFacts:
        def ask(sql: str) -> Any:
            return conn.exec_driver_sql(sql).scalar()

        return ServerFacts(
            server_version=ask("SELECT VERSION()") or "",
            max_connections=int(ask("SELECT @@max_connections")),
            # MySQL keeps one connection beyond max_connections for an account with SUPER
            # or CONNECTION_ADMIN; it is not for applications, so it is not counted here.
            reserved_connections=0,
            connections_in_use=int(
                ask("SELECT count(*) FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'")
            ),
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

    def connection_states(
        self, conn: Connection, tag: str, server_ids: list[int]
    ) -> Iterable[tuple[int, str]]:
        if not server_ids:
            return []
        return [(i, state(c, t)) for i, c, t in self._processes(conn, server_ids)]

    def terminate(self, conn: Connection, tag: str, server_ids: list[int], idle_only: bool) -> int:
        if not server_ids:
            return 0
        ended = 0
        for pid, command, in_trx in self._processes(conn, server_ids):
            if idle_only and state(command, in_trx) != "idle":
                continue  # checked out and busy since the pool's list was read
            try:
                conn.exec_driver_sql(f"KILL {int(pid)}")
                ended += 1
            except sa.exc.DBAPIError:  # it ended on its own meanwhile
                pass
        return ended

    def idle_timeout_sql(self, seconds: float) -> str | None:
        return f"SET SESSION wait_timeout = {max(1, math.ceil(seconds))}"


def state(command: str, in_trx: bool) -> str:
    """PostgreSQL's words for a MySQL thread's COMMAND: idle, idle in transaction, active."""
    if command == "Sleep":
        return "idle in transaction" if in_trx else "idle"
    return "active" if command in ("Query", "Execute") else command.lower()
