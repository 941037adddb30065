"""What poolbench needs to know about a database and its driver, as two small classes.

A :class:`Backend` is one database (PostgreSQL, MySQL/MariaDB): its server-side SQL (the
probe, kills, idle timeouts, the server sleep) and which error codes mean what. A
:class:`Driver` is one DBAPI package for it (psycopg2, psycopg, PyMySQL): how it takes
connect arguments, how it reports the server's id of a connection and how its errors
carry their codes. As in SQLAlchemy's dialects, a driver class is small because the
database class carries the rest. An async driver (asyncpg, aiomysql, asyncmy) is one
more :class:`Driver` whose ``engines`` are ``("async",)``; the server-side SQL does not
change, and the probe reaches the server through the database's default sync driver
(:meth:`Backend.sync_twin`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL, Connection

CONNECT_TIMEOUT_S = 3
PROBE_READ_TIMEOUT_S = 5

TOO_MANY_CONNECTIONS = "too_many_connections"
# the server is gone or not taking connections (refused, shutting down, starting up): an
# outage reads as an outage, with the connections it broke, not as an application error
DISCONNECT = "disconnect"


@dataclass(frozen=True)
class ServerFacts:
    """What the server says about itself when the probe connects."""

    server_version: str
    max_connections: int | None = None
    reserved_connections: int | None = None  # slots only superusers may use
    superuser: bool | None = None
    connections_in_use: int | None = None  # every client's, the probe's included


class Driver:
    """How one DBAPI driver differs: its package, connect arguments, ids and error codes."""

    name = ""  # SQLAlchemy's driver name: postgresql+<name>://
    module = ""  # what to import
    package = ""  # what to pip install
    # which engines it drives: create_engine ("sync"), create_async_engine ("async")
    engines: tuple[str, ...] = ("sync",)

    @property
    def is_async(self) -> bool:
        """Only an async engine can use it (its probe goes through a sync twin)."""
        return "sync" not in self.engines

    def connect_args(self, tag: str) -> dict[str, Any]:
        """Arguments every poolbench connection gets: ``tag`` as the client's name (so the
        server can tell this run's connections) and a short connect timeout."""
        return {}

    def probe_connect_args(self, tag: str) -> dict[str, Any]:
        """The probe's arguments: like :meth:`connect_args`, plus whatever keeps a silent
        server from hanging it."""
        return self.connect_args(tag)

    def server_id(self, dbapi_connection: Any) -> int | None:
        """The server's id of a new DBAPI connection, without a round trip."""
        return None

    @staticmethod
    def driver_connection(dbapi_connection: Any) -> Any:
        """The driver's own connection: an async engine's pool events give SQLAlchemy's
        adapter around it (``AdaptedConnection.driver_connection``)."""
        return getattr(dbapi_connection, "driver_connection", dbapi_connection)

    def error_code(self, orig: BaseException) -> str | None:
        """The code the driver's exception carries (SQLSTATE or the server's number)."""
        return None

    def error_message(self, orig: BaseException) -> str:
        """The driver's message, on one line."""
        return " ".join(str(orig).split())


class Backend:
    """One database, through one of its drivers (``self.driver``)."""

    name = ""  # what scenarios say (database.requires) and results record
    title = ""  # how messages name it
    dialects: tuple[str, ...] = ()  # SQLAlchemy backend names it covers
    aliases: tuple[str, ...] = ()  # other bare names a URL may use (postgres://)
    # the sync driver poolbench probes with and the embedded server's URL names (a bare
    # ``<dialect>://`` URL gets SQLAlchemy's own default driver)
    default_driver = ""
    example_url = ""
    drivers: tuple[type[Driver], ...] = ()
    suggested_async_driver = ""  # the async driver a message suggests
    # error codes (SQLSTATE or the server's number) that mean a kind of error, and texts
    # that mean it when the driver gives no code: text -> (kind, the code it stands for)
    error_codes: dict[str, str] = {}
    error_texts: dict[str, tuple[str, str | None]] = {}
    sleep_sql: str | None = None  # one bound parameter, :seconds
    clock_sql: str | None = None  # the server's clock as epoch seconds, with microseconds

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def __repr__(self) -> str:
        return f"<{type(self).__name__} via {self.driver.name}>"

    def async_example(self) -> str:
        """The async URL scheme messages suggest for this database (``postgresql+asyncpg://``)."""
        return f"{self.dialects[0]}+{self.suggested_async_driver}://"

    def sync_twin(self) -> Backend:
        """This database through a sync driver (the default one when ours is async only):
        what the probe connects with."""
        if not self.driver.is_async:
            return self
        driver = next(d for d in self.drivers if d.name == self.default_driver)
        return type(self)(driver())

    def sync_url(self, url: URL) -> URL:
        """``url`` for :meth:`sync_twin`'s driver."""
        if not self.driver.is_async:
            return url
        return url.set(drivername=f"{url.get_backend_name()}+{self.default_driver}")

    # -- errors ------------------------------------------------------------------------------

    def error_kind(self, code: str | None, message: str) -> tuple[str | None, str | None]:
        """``(kind, code)`` when ``code`` or the message's text says what the error is;
        the code is filled in when only the text told (the driver gave none)."""
        if code is not None and code in self.error_codes:
            return self.error_codes[code], code
        lowered = message.lower()
        for text, (kind, text_code) in self.error_texts.items():
            if text in lowered:
                return kind, code if code is not None else text_code
        return None, code

    def create_namespace_sql(self, name: str) -> str | None:
        """The statement creating ``name`` where poolbench's own tables live (a schema, or
        a database where the server has no schemas), if missing."""
        return None

    def drop_namespace_sql(self, name: str) -> str | None:
        """The statement removing ``name`` once poolbench's tables in it are gone (the
        caller checks that it holds no table first)."""
        return None

    # -- the server probe --------------------------------------------------------------------

    def server_facts(self, conn: Connection) -> ServerFacts:
        """Version, limits and connections in use, read once when the probe connects."""
        return ServerFacts(str(conn.dialect.server_version_info or ""))

    def connection_states(
        self, conn: Connection, tag: str, server_ids: list[int]
    ) -> Iterable[tuple[int, str]]:
        """``(server id, state)`` of this run's connections: those tagged ``tag``, or
        those with these ``server_ids`` where the server keeps no tag."""
        return ()

    def terminate(self, conn: Connection, tag: str, server_ids: list[int], idle_only: bool) -> int:
        """End connections from the server side; how many were ended. ``idle_only``: end
        only those of ``server_ids`` the server also sees idle (a connection checked out
        since the pool's list was read is left alone)."""
        return 0

    # -- faults --------------------------------------------------------------------------------

    def idle_timeout_sql(self, seconds: float) -> str | None:
        """The statement giving a session a server-side idle limit; None if there is none."""
        return None

    def idle_timeout_refusal(self, server_version: str) -> str | None:
        """Why this server version cannot take :meth:`idle_timeout_sql`, or None."""
        return None


def server_major(version: str) -> int | None:
    """``16`` for "16.2 (Debian ...)", None when the version does not start with a number."""
    digits = version.split(".")[0].split()[0] if version.strip() else ""
    return int(digits) if digits.isdigit() else None
