"""The backends (poolbench/db/backends): each database's and driver's facts as pure logic,
then what they ask of the real servers (server ids, the probe, kills), through every
driver poolbench knows: psycopg2 and psycopg 3 on PostgreSQL, PyMySQL on MariaDB."""

from __future__ import annotations

import ast
import asyncio
import secrets
import threading
import time
from pathlib import Path

import psycopg
import psycopg2
import pymysql
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from poolbench import errors
from poolbench.cli import main
from poolbench.db.backends import (
    BACKENDS,
    backend_for,
    named,
    sqlalchemy_default_driver,
    with_default_driver,
)
from poolbench.db.backends.base import Backend, Driver
from poolbench.db.backends.mysql import AioMySQL, AsyncMy, MySQL, PyMySQL
from poolbench.db.backends.postgresql import (
    Asyncpg,
    PostgreSQL,
    Psycopg,
    Psycopg2,
    PsycopgAsync,
)
from poolbench.db.server import ServerProbe
from poolbench.engine.classify import classify

from .conftest import run_yaml

PACKAGE = Path(__file__).resolve().parent.parent / "poolbench"


# -- which backend a URL gets --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "backend", "driver"),
    [
        ("postgresql://u@h/d", PostgreSQL, Psycopg),  # SQLAlchemy 2.1's default
        ("postgres://u@h/d", PostgreSQL, Psycopg),
        ("postgresql+psycopg2://u@h/d", PostgreSQL, Psycopg2),
        ("postgresql+psycopg://u@h/d", PostgreSQL, Psycopg),
        ("mysql+pymysql://u@h/d", MySQL, PyMySQL),
        ("mariadb+pymysql://u@h/d", MySQL, PyMySQL),
    ],
)
def test_a_url_gets_its_database_and_driver(url, backend, driver):
    got = backend_for(sa.make_url(url))
    assert type(got) is backend and type(got.driver) is driver


def test_a_url_without_a_driver_gets_the_one_sqlalchemy_gives_it_or_the_scenarios():
    def fill(url: str, driver: str | None = None) -> str:
        return with_default_driver(sa.make_url(url), driver=driver).drivername

    # the same URL means the same driver as in the user's application
    for dialect in ("postgresql", "mysql", "mariadb"):
        assert fill(f"{dialect}://u@h/d") == f"{dialect}+{sqlalchemy_default_driver(dialect)}"
    if sa.__version__.startswith("2.1"):
        assert fill("postgresql://u@h/d") == "postgresql+psycopg"
        assert fill("mysql://u@h/d") == "mysql+mysqldb"
    assert fill("postgres://u@h/d") == fill("postgresql://u@h/d")
    assert fill("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2"
    assert fill("postgresql://u@h/d", "asyncpg") == "postgresql+asyncpg"
    assert fill("postgresql+psycopg2://u@h/d", "asyncpg") == "postgresql+psycopg2"
    assert fill("sqlite://") == "sqlite"


def test_sqlalchemys_default_driver_that_poolbench_does_not_drive_is_one_line():
    with pytest.raises(errors.UnknownBackend) as info:
        backend_for(with_default_driver(sa.make_url("mysql://u@h/d")))
    assert str(info.value) == (
        "poolbench has no MySQL or MariaDB driver 'mysqldb' (SQLAlchemy's default for mysql://); "
        "use one of mysql+pymysql, mysql+aiomysql, mysql+asyncmy"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite://",
            "poolbench cannot measure 'sqlite' databases (a file opened in-process: no server",
        ),
        ("oracle://u@h/d", "poolbench cannot measure 'oracle' databases"),
        (
            "postgresql+pg8000://u@h/d",
            "poolbench has no PostgreSQL driver 'pg8000'; use one of postgresql+psycopg2, "
            "postgresql+psycopg, postgresql+psycopg_async, postgresql+asyncpg",
        ),
    ],
)
def test_a_database_or_driver_poolbench_cannot_measure_is_refused(url, message):
    with pytest.raises(errors.UnknownBackend) as info:
        backend_for(sa.make_url(url))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert info.value.exit_status == errors.ExitStatus.DATABASE == 3


class _Missing(Driver):
    name = "nodriver"
    module = "poolbench_no_such_driver_module"
    package = "nodriver-binary"


class _Fake(Backend):
    name = "fake"
    title = "FakeDB"
    dialects = ("postgresql",)
    default_driver = "nodriver"
    drivers = (_Missing,)


def test_a_driver_that_is_not_installed_names_the_package_to_install():
    with pytest.raises(errors.DriverNotInstalled) as info:
        backend_for(sa.make_url("postgresql+nodriver://u@h/d"), backends=(_Fake,))
    assert str(info.value) == (
        "postgresql+nodriver needs the nodriver driver: pip install 'nodriver-binary'"
    )
    assert info.value.exit_status == 3


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("sqlite://", "poolbench cannot measure 'sqlite' databases"),
        ("postgresql+pg8000://u@127.0.0.1:9/x", "poolbench has no PostgreSQL driver 'pg8000'"),
    ],
)
def test_the_cli_refuses_what_it_cannot_run_in_one_line_with_exit_3(tmp_path, url, line):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nworkload: {session: closed}\nload: {workers: 1}\nduration: 1s\n")
    result = CliRunner().invoke(main, ["run", str(path), "--url", url], env={"POOLBENCH_URL": ""})
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"poolbench: error: {line}")


def test_a_scenario_names_a_backend_by_its_name():
    assert named("postgresql") is PostgreSQL and named("mysql") is MySQL
    with pytest.raises(errors.UnknownBackend, match="knows no database 'db2'"):
        named("db2")


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_is_complete(backend):
    assert backend.name and backend.title and backend.dialects and backend.drivers
    assert backend.default_driver in [d.name for d in backend.drivers]
    example = backend_for(sa.make_url(backend.example_url))
    assert type(example) is backend and example.driver.name == backend.default_driver
    assert backend.sleep_sql is not None and ":seconds" in backend.sleep_sql
    suggested = backend_for(
        sa.make_url(backend(backend.drivers[0]()).async_example()), engine="async"
    )
    assert type(suggested) is backend and suggested.driver.is_async
    for driver in backend.drivers:
        assert driver.name and driver.module and driver.package and driver.engines
    # the probe, and every run today, needs a sync driver: the default is one
    assert not backend(backend.drivers[0]()).sync_twin().driver.is_async


@pytest.mark.parametrize(
    ("url", "driver", "probed_as"),
    [
        ("postgresql+asyncpg://u@h/d", Asyncpg, "postgresql+psycopg2"),
        ("postgresql+psycopg_async://u@h/d", PsycopgAsync, "postgresql+psycopg2"),
        ("postgresql+psycopg://u@h/d", Psycopg, "postgresql+psycopg"),
        ("mysql+aiomysql://u@h/d", AioMySQL, "mysql+pymysql"),
        ("mariadb+asyncmy://u@h/d", AsyncMy, "mariadb+pymysql"),
    ],
)
def test_an_async_driver_is_described_and_probed_through_a_sync_twin(url, driver, probed_as):
    backend = backend_for(sa.make_url(url), engine="async")
    assert type(backend.driver) is driver
    twin = backend.sync_twin()
    assert not twin.driver.is_async and type(twin) is type(backend)
    assert backend.sync_url(sa.make_url(url)).drivername == probed_as


def test_an_async_only_driver_gets_an_async_engine_and_refuses_a_sync_one_in_one_line():
    assert backend_for(sa.make_url("postgresql+asyncpg://u@h/d")).driver.is_async
    with pytest.raises(errors.UnknownBackend) as info:
        backend_for(sa.make_url("postgresql+asyncpg://u@h/d"), engine="sync")
    assert str(info.value) == (
        "postgresql+asyncpg drives only async engines and poolbench runs this on a sync one; "
        "use postgresql+psycopg2 or postgresql+psycopg"
    )
    with pytest.raises(errors.UnknownBackend, match=r"use mysql\+pymysql$"):
        backend_for(sa.make_url("mysql+aiomysql://u@h/d"), engine="sync")


# -- facts, without a server --------------------------------------------------------------


def test_connections_carry_the_tag_where_the_server_shows_it():
    for driver in (Psycopg2(), Psycopg()):
        args = driver.connect_args("poolbench-abc")
        assert args == {"application_name": "poolbench-abc", "connect_timeout": 3}
        assert driver.probe_connect_args("poolbench-abc") == args
    assert PyMySQL().connect_args("poolbench-abc") == {
        "connect_timeout": 3,
        "program_name": "poolbench-abc",
    }
    # PyMySQL's connect_timeout stops at the TCP connect: the probe needs read timeouts
    probe = PyMySQL().probe_connect_args("poolbench-abc")
    assert probe["read_timeout"] == probe["write_timeout"] == 5
    # asyncpg is not libpq: the tag is a server setting
    assert Asyncpg().connect_args("poolbench-abc") == {
        "server_settings": {"application_name": "poolbench-abc"},
        "timeout": 3,
    }
    for driver in (AioMySQL(), AsyncMy()):
        assert driver.connect_args("t") == PyMySQL().connect_args("t")


@pytest.mark.parametrize(
    ("driver", "error", "code", "message"),
    [
        (Psycopg2(), psycopg2.OperationalError("connection refused"), None, None),
        (Psycopg(), psycopg.errors.lookup("53300")("too many clients"), "53300", None),
        (Psycopg(), psycopg.OperationalError("connection failed"), None, None),
        (
            PyMySQL(),
            pymysql.err.OperationalError(2013, "Lost connection\nto MySQL server"),
            "2013",
            "Lost connection to MySQL server",
        ),
        (PyMySQL(), pymysql.err.InterfaceError("(0, '')"), None, None),
    ],
)
def test_each_driver_reads_its_own_error_codes(driver, error, code, message):
    assert driver.error_code(error) == code
    got = driver.error_message(error)
    assert "\n" not in got
    if message is not None:
        assert got == message


def test_what_a_code_or_a_message_means_is_the_databases_to_say():
    pg, my = PostgreSQL(Psycopg2()), MySQL(PyMySQL())
    assert pg.error_kind("53300", "x") == ("too_many_connections", "53300")
    # libpq has no SQLSTATE for a refusal while connecting: the text stands for 53300
    for text in ("FATAL: sorry, too many clients already", "remaining connection slots"):
        assert pg.error_kind(None, text) == ("too_many_connections", "53300")
    assert pg.error_kind("40001", "could not serialize") == (None, "40001")
    assert pg.error_kind("1040", "x") == (None, "1040")  # MySQL's number means nothing here
    assert my.error_kind("1040", "Too many connections") == ("too_many_connections", "1040")
    assert my.error_kind("1203", "x") == ("too_many_connections", "1203")
    assert my.error_kind(None, "Too many connections") == ("too_many_connections", None)
    assert my.error_kind("53300", "x") == (None, "53300")


def test_classify_asks_the_backend():
    def wrap(orig, invalidated=False):
        return sa_exc.OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)

    pg3 = PostgreSQL(Psycopg())
    too_many = wrap(psycopg.errors.lookup("53300")('too many connections for role "x"'))
    assert classify(too_many, pg3)[:2] == ("too_many_connections", "53300")
    gone = wrap(psycopg.OperationalError("consuming input failed: server closed"), True)
    assert classify(gone, pg3) == (
        "disconnect",
        None,
        "consuming input failed: server closed",
    )


def test_the_idle_timeout_fault_is_each_databases_own_setting():
    pg, my = PostgreSQL(Psycopg()), MySQL(PyMySQL())
    assert pg.idle_timeout_sql(1.5) == "SET idle_session_timeout = '1500ms'"
    assert my.idle_timeout_sql(1.5) == "SET SESSION wait_timeout = 2"
    assert my.idle_timeout_sql(0.2) == "SET SESSION wait_timeout = 1"
    assert pg.idle_timeout_refusal("13.4 (Debian 13.4-1)") == (
        "server_idle_timeout needs PostgreSQL 14 or later (idle_session_timeout); "
        "the server is 13.4 (Debian 13.4-1)"
    )
    assert pg.idle_timeout_refusal("16.2") is None
    assert pg.idle_timeout_refusal("") is None  # unknown: let the server say
    assert my.idle_timeout_refusal("10.11.6-MariaDB") is None


# -- the code outside db/backends names no dialect -------------------------------------------


def _modules(under: Path):
    for path in sorted(under.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *ast.walk(tree)]
    return {
        id(n.body[0].value)
        for n in nodes
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }


def test_no_module_outside_db_backends_names_a_dialect_or_a_driver():
    names, schemes = set(), set()
    for backend in BACKENDS:
        names.update((backend.name, *backend.dialects, *(d.name for d in backend.drivers)))
        schemes.update((*backend.dialects, *backend.aliases))  # "postgres" is also a user
    found = []
    backends_dir = PACKAGE / "db" / "backends"
    for path, tree in _modules(PACKAGE):
        if backends_dir in path.parents:
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            if id(node) in docs:
                continue  # prose for the reader (a help text's example URL)
            text = node.value.lower()
            if text in names or any(f"{n}://" in text or f"{n}+" in text for n in schemes):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_db_imports_nothing_from_the_engine():
    upward = []
    for path, tree in _modules(PACKAGE / "db"):
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            if module.startswith("poolbench.engine") or (
                node.level > 0 and module.split(".")[0] == "engine"
            ):
                upward.append(f"{path.name}:{node.lineno}")
    assert upward == []


# -- against the real servers, through every driver -----------------------------------------

_OWN_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


@pytest.fixture(
    params=[
        pytest.param("psycopg2", marks=pytest.mark.postgres),
        pytest.param("psycopg", marks=pytest.mark.postgres),
        pytest.param("pymysql", marks=pytest.mark.mysql),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    """Each driver poolbench knows, against its real server."""
    if request.param == "pymysql":
        return request.getfixturevalue("mysql_url")
    url = with_default_driver(sa.make_url(request.getfixturevalue("pg_url")))
    url = url.set(drivername=f"postgresql+{request.param}")
    return url.render_as_string(hide_password=False)


def _tagged_engine(url: str, tag: str) -> sa.Engine:
    backend = backend_for(sa.make_url(url))
    return sa.create_engine(url, connect_args=backend.driver.connect_args(tag), pool_size=3)


def _idle_connections(engine: sa.Engine, backend: Backend, count: int) -> list[int]:
    """Open ``count`` pool connections, use them and check them in; their server ids."""
    conns = [engine.connect() for _ in range(count)]
    ids = []
    for conn in conns:
        conn.exec_driver_sql("SELECT 1").all()
        ids.append(backend.driver.server_id(conn.connection.dbapi_connection))
        conn.close()
    return ids


def _until(predicate, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_the_driver_reads_the_server_id_the_server_gives(server_url):
    backend = backend_for(sa.make_url(server_url))
    engine = sa.create_engine(server_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            server_id = backend.driver.server_id(conn.connection.dbapi_connection)
            assert isinstance(server_id, int)
            assert server_id == conn.exec_driver_sql(_OWN_ID[backend.name]).scalar()
    finally:
        engine.dispose()


_NO_TABLE = {"postgresql": "42P01", "mysql": "1146"}  # undefined_table, ER_NO_SUCH_TABLE


def test_the_driver_reads_the_code_of_a_real_error(server_url):
    backend = backend_for(sa.make_url(server_url))
    engine = sa.create_engine(server_url, poolclass=NullPool)
    try:
        with engine.connect() as conn, pytest.raises(sa_exc.DBAPIError) as info:
            conn.exec_driver_sql("SELECT * FROM poolbench_no_such_table").all()
    finally:
        engine.dispose()
    kind, code, message = classify(info.value, backend)
    assert (kind, code) == ("other", _NO_TABLE[backend.name])
    assert "poolbench_no_such_table" in message and "\n" not in message


def test_the_probe_reads_the_limits_and_this_runs_connections_by_state(server_url):
    backend = backend_for(sa.make_url(server_url))
    tag = f"poolbench-t{secrets.token_hex(3)}"
    probe = ServerProbe(sa.make_url(server_url), backend, tag)
    engine = _tagged_engine(server_url, tag)
    probe.open()
    try:
        assert probe.server_version and probe.max_connections >= 10
        assert 1 <= probe.connections_in_use <= probe.max_connections
        assert probe.available_connections() <= probe.max_connections
        busy = engine.connect()  # first, or it would take an idle one from the pool
        busy_id = backend.driver.server_id(busy.connection.dbapi_connection)
        ids = [busy_id, *_idle_connections(engine, backend, 2)]
        sleeper = threading.Thread(
            target=lambda: busy.execute(sa.text(backend.sleep_sql), {"seconds": 1.5}).all()
        )
        sleeper.start()
        view = _until(lambda: (v := probe.view(ids)).counts.get("active") and v)
        sleeper.join()
        busy.close()
        assert view.counts == {"active": 1, "idle": 2, "total": 3}
        assert view.ids == frozenset(ids)  # the probe's own connection is never counted
    finally:
        engine.dispose()
        probe.close()


def test_a_kill_ends_this_runs_connections_and_no_one_elses(server_url):
    backend = backend_for(sa.make_url(server_url))
    tag = f"poolbench-t{secrets.token_hex(3)}"
    probe = ServerProbe(sa.make_url(server_url), backend, tag)
    engine = _tagged_engine(server_url, tag)
    outside = sa.create_engine(server_url, poolclass=NullPool).connect()
    probe.open()
    try:
        ids = _idle_connections(engine, backend, 3)
        time.sleep(0.05)  # idle "a moment": one just checked in may be pinged again
        assert probe.terminate(ids, only=[]) == 0
        assert probe.terminate(ids, only=ids[:1]) == 1  # the idle fault: only those named
        assert _until(lambda: probe.view(ids).ids == frozenset(ids[1:]))
        assert probe.terminate(ids) == 2
        assert _until(lambda: probe.view(ids).counts == {"total": 0})
        # the pool finds out on its next use: a disconnect, as the classifier says
        with engine.connect() as conn, pytest.raises(sa_exc.DBAPIError) as info:
            conn.exec_driver_sql("SELECT 1").all()
        assert classify(info.value, backend)[0] == "disconnect"
        assert outside.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        outside.close()
        engine.dispose()
        probe.close()


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_a_refused_connection_is_too_many_connections_with_either_driver(pg_url, driver):
    role = f"pb_limited_{driver}"
    admin = sa.create_engine(pg_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    admin.dispose()
    url = with_default_driver(sa.make_url(pg_url))
    url = url.set(drivername=f"postgresql+{driver}", username=role, password=None)
    backend = backend_for(url)
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect(), pytest.raises(sa_exc.DBAPIError) as info:
            engine.connect()
        kind, code, message = classify(info.value, backend)
        assert (kind, code) == ("too_many_connections", "53300")
        assert "too many connections for role" in message and "\n" not in message
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_whole_run_through_psycopg_3(pg_url):
    url = with_default_driver(sa.make_url(pg_url)).set(drivername="postgresql+psycopg")
    result = run_yaml(
        """
        name: psycopg3
        pool: {pool_size: 3, max_overflow: 0, pool_timeout: 2s}
        workload: {session: closed, hold: 20ms, hold_in: server, think: 10ms}
        load: {workers: 3}
        faults: {kill: [0.8s]}
        duration: 1.5s
        interval: 250ms
        """,
        url.render_as_string(hide_password=False),
    )
    assert result.database.driver == "psycopg"
    s = result.summary
    assert s.ok > 20
    (fault,) = result.faults
    assert fault.error is None and fault.ended == 3
    assert s.errors["disconnect"].count >= 1  # the kill reached requests through psycopg 3
    assert s.server.connections_at_exit == 0


@pytest.fixture(
    params=[
        pytest.param("asyncpg", marks=pytest.mark.postgres),
        pytest.param("psycopg_async", marks=pytest.mark.postgres),
        pytest.param("aiomysql", marks=pytest.mark.mysql),
        pytest.param("asyncmy", marks=pytest.mark.mysql),
    ]
)
def async_url(request: pytest.FixtureRequest) -> sa.URL:
    """Each async driver poolbench can describe, against its real server."""
    name = "mysql_url" if request.param in ("aiomysql", "asyncmy") else "pg_url"
    url = with_default_driver(sa.make_url(request.getfixturevalue(name)))
    return url.set(drivername=f"{url.get_backend_name()}+{request.param}")


def test_an_async_driver_tags_its_connections_reads_their_ids_and_codes(async_url):
    from sqlalchemy.ext.asyncio import create_async_engine

    backend = backend_for(async_url, engine="async")
    tag = f"poolbench-t{secrets.token_hex(3)}"
    engine = create_async_engine(
        async_url, poolclass=NullPool, connect_args=backend.driver.connect_args(tag)
    )
    seen: list[int | None] = []
    sa.event.listen(
        engine.sync_engine, "connect", lambda c, r: seen.append(backend.driver.server_id(c))
    )
    probe = ServerProbe(async_url, backend, tag)
    probe.open()

    async def use():
        async with engine.connect() as conn:
            own = (await conn.exec_driver_sql(_OWN_ID[backend.name])).scalar()
            view = probe.view(seen)
            with pytest.raises(sa_exc.DBAPIError) as info:
                await conn.exec_driver_sql("SELECT * FROM poolbench_no_such_table")
        await engine.dispose()
        return own, view, info.value

    try:
        own, view, error = asyncio.run(use())
    finally:
        probe.close()
    assert seen == [own]
    # PostgreSQL finds it by the tag (asyncpg's server_settings), MySQL by its id
    assert view.ids == {own} and view.counts["total"] == 1
    assert classify(error, backend)[:2] == ("other", _NO_TABLE[backend.name])
