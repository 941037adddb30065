"""PostgreSQL, through psycopg2 or psycopg (3).

The server tells this run's connections by ``application_name`` (the tag every
connection is given), so the probe needs no list of ids; a kill is
``pg_terminate_backend``; the idle-timeout fault is ``idle_session_timeout`` (14+).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .base import (
    CONNECT_TIMEOUT_S,
    DISCONNECT,
    TOO_MANY_CONNECTIONS,
    Backend,
    Driver,
    ServerFacts,
    server_major,
)

IDLE_TIMEOUT_SINCE = 14  # idle_session_timeout


class _Libpq(Driver):
    """Both psycopg generations take libpq's connection parameters and expose
    ``connection.info.backend_pid``."""

    def connect_args(self, tag: str) -> dict[str, Any]:
        return {"application_name": tag, "connect_timeout": CONNECT_TIMEOUT_S}

    def server_id(self, dbapi_connection: Any) -> int | None:
        info = getattr(self.driver_connection(dbapi_connection), "info", None)
        pid = getattr(info, "backend_pid", None)
        return int(pid) if isinstance(pid, int) else None


class Psycopg2(_Libpq):
    name = "psycopg2"
    module = "psycopg2"
    package = "psycopg2-binary"

    def error_code(self, orig: BaseException) -> str | None:
        code = getattr(orig, "pgcode", None)
        return str(code) if code else None


def _sqlstate(orig: BaseException) -> str | None:
    # psycopg 3's errors, and SQLAlchemy's adapters of asyncpg's, carry ``sqlstate``
    code = getattr(orig, "sqlstate", None)
    return str(code) if code else None


class Psycopg(_Libpq):
    """psycopg 3: ``postgresql+psycopg://`` drives both kinds of engine."""

    name = "psycopg"
    module = "psycopg"
    package = "psycopg[binary]"
    engines: tuple[str, ...] = ("sync", "async")

    def error_code(self, orig: BaseException) -> str | None:
        return _sqlstate(orig)


class PsycopgAsync(Psycopg):
    """psycopg 3 named for an async engine: ``postgresql+psycopg_async://``."""

    name = "psycopg_async"
    engines = ("async",)


class Asyncpg(Driver):
    name = "asyncpg"
    module = "asyncpg"
    package = "asyncpg"
    engines = ("async",)

    def connect_args(self, tag: str) -> dict[str, Any]:
        # not libpq: the tag is a server setting, the timeout has its own name
        return {"server_settings": {"application_name": tag}, "timeout": CONNECT_TIMEOUT_S}

    def server_id(self, dbapi_connection: Any) -> int | None:
        get_pid = getattr(self.driver_connection(dbapi_connection), "get_server_pid", None)
        return int(get_pid()) if callable(get_pid) else None

    def error_code(self, orig: BaseException) -> str | None:
        return _sqlstate(orig)


class PostgreSQL(Backend):
    name = "postgresql"
    title = "PostgreSQL"
    dialects = ("postgresql",)
    aliases = ("postgres",)
    default_driver = Psycopg2.name
    example_url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    drivers = (Psycopg2, Psycopg, PsycopgAsync, Asyncpg)
    suggested_async_driver = Asyncpg.name
    error_codes = {
        "53300": TOO_MANY_CONNECTIONS,  # too_many_connections
        "57P01": DISCONNECT,  # admin_shutdown
        "57P02": DISCONNECT,  # crash_shutdown
        "57P03": DISCONNECT,  # cannot_connect_now: shutting down, starting up, recovering
        "08001": DISCONNECT,  # sqlclient_unable_to_establish_sqlconnection
        "08006": DISCONNECT,  # connection_failure
    }
    # Errors while connecting come without a SQLSTATE (libpq has none yet): the text says
    # it ("sorry, too many clients already", "remaining connection slots are reserved ...",
    # "too many connections for role ..."), all of them 53300; and a server that is down
    # or restarting ("Connection refused", "the database system is shutting down" or
    # "is starting up", 57P03) is an outage, not an application error.
    error_texts = {
        "too many clients": (TOO_MANY_CONNECTIONS, "53300"),
        "remaining connection slots": (TOO_MANY_CONNECTIONS, "53300"),
        "too many connections": (TOO_MANY_CONNECTIONS, "53300"),
        "the database system is shutting down": (DISCONNECT, "57P03"),
        "the database system is starting up": (DISCONNECT, "57P03"),
        "the database system is in recovery mode": (DISCONNECT, "57P03"),
        "connection refused": (DISCONNECT, "08001"),
        "server closed the connection unexpectedly": (DISCONNECT, "08006"),
        "no such file or directory": (DISCONNECT, "08001"),  # the server's socket is gone
    }
    sleep_sql = "SELECT pg_sleep(:seconds)"
    clock_sql = "extract(epoch from clock_timestamp())"

    def create_namespace_sql(self, name: str) -> str | None:
        return f"CREATE SCHEMA IF NOT EXISTS {name}"

    def drop_namespace_sql(self, name: str) -> str | None:
        return f"DROP SCHEMA IF EXISTS {name} RESTRICT"  # fails if anything else is in it

    def server_facts(self, conn: Connection) -> ServerFacts:
        def show(sql: str) -> Any:
            return conn.exec_driver_sql(sql).scalar()

        # PostgreSQL 16+ also keeps reserved_connections for pg_use_reserved_connections
        more = show("SELECT current_setting('reserved_connections', true)")
        return ServerFacts(
            server_version=show("SHOW server_version") or "",
            max_connections=int(show("SHOW max_connections")),
            reserved_connections=int(show("SHOW superuser_reserved_connections"))
            + (int(more) if more else 0),
            superuser=bool(show("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")),
            connections_in_use=int(
                show("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
            ),
        )

    def connection_states(
        self, conn: Connection, tag: str, server_ids: list[int]
    ) -> Iterable[tuple[int, str]]:
        # by the run's tag, or by pid: an app's own engine keeps its application_name
        rows = conn.execute(
            sa.text(
                "SELECT pid, coalesce(state, 'unknown') FROM pg_stat_activity "
                "WHERE application_name = :app OR pid = ANY(:pids)"
            ),
            {"app": tag, "pids": [int(i) for i in server_ids]},
        ).all()
        return [(int(pid), str(state)) for pid, state in rows]

    def terminate(self, conn: Connection, tag: str, server_ids: list[int], idle_only: bool) -> int:
        sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :app"
        params: dict[str, object] = {"app": tag}
        if idle_only:
            # idle in the pool, and still idle on the server a moment later: a connection
            # checked out (and pinged) since is left alone
            sql += (
                " AND pid = ANY(:pids) AND state = 'idle'"
                " AND state_change < clock_timestamp() - interval '5 milliseconds'"
            )
            params["pids"] = [int(i) for i in server_ids]
        return sum(1 for (ended,) in conn.execute(sa.text(sql), params) if ended)

    def idle_timeout_sql(self, seconds: float) -> str | None:
        return f"SET idle_session_timeout = '{int(seconds * 1000)}ms'"

    def idle_timeout_refusal(self, server_version: str) -> str | None:
        major = server_major(server_version)
        if major is not None and major < IDLE_TIMEOUT_SINCE:
            return (
                f"server_idle_timeout needs {self.title} {IDLE_TIMEOUT_SINCE} or later "
                f"(idle_session_timeout); the server is {server_version}"
            )
        return None
