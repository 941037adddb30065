"""The pytest plugin, run by pytest's own ``pytester`` against the real PostgreSQL: the
test that leaks fails with the site in the user's code, clean tests pass, connections a
wider-scope fixture holds are not blamed, warn mode, async engines, pool_watch."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent

APP_DB = """
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

engine = sa.create_engine({url!r}, pool_size=3, max_overflow=0, pool_timeout=0.3)
SessionLocal = sessionmaker(engine)
"""

APP_DEPS = """
from app.db import SessionLocal


def get_db():
    return SessionLocal()
"""

APP_CRUD = """
import sqlalchemy as sa


def get_items(db):
    return db.execute(sa.text("SELECT 1")).all()
"""

LEAKY_TESTS = """
from app.crud import get_items
from app.deps import get_db

KEEP = []


def test_export():
    db = get_db()
    get_items(db)
    KEEP.append(db)  # never closed


def test_clean():
    with get_db() as db:
        get_items(db)
"""


def plugin_args() -> list[str]:
    """Load the plugin by its module when this Python's poolbench predates the entry point."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    return [] if "poolbench" in names else ["-p", "poolbench.pytest_plugin"]


@pytest.fixture
def app(pytester: pytest.Pytester, pg_url: str) -> pytest.Pytester:
    """A small application package: an engine, a get_db dependency, a query."""
    pytester.mkpydir("app")
    for name, text in (("db", APP_DB), ("deps", APP_DEPS), ("crud", APP_CRUD)):
        (pytester.path / "app" / f"{name}.py").write_text(
            textwrap.dedent(text).format(url=pg_url).lstrip()
        )
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)


def line_of(path: Path, needle: str) -> int:
    (number,) = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if needle in line]
    return number


def test_the_test_that_leaks_fails_with_its_sites(app: pytest.Pytester) -> None:
    app.makepyfile(test_items=LEAKY_TESTS)
    result = run(app, "--poolbench-leaks")

    crud = line_of(app.path / "app/crud.py", "db.execute")
    deps = line_of(app.path / "app/deps.py", "SessionLocal()")
    expected = (
        "test_items.py::test_export leaked 1 connection: "
        f"checked out at app/crud.py:{crud} in get_items; "
        f"session created at app/deps.py:{deps} in get_db"
    )
    result.assert_outcomes(passed=2, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "ERROR at teardown of test_export" in result.stdout.str()
    # once at the test, once in the session's summary
    assert result.stdout.lines.count(expected) == 2
    result.stdout.fnmatch_lines(
        ["*poolbench: connection leaks*", expected, "1 leaked connection in 1 place*"]
    )
    assert "test_clean leaked" not in result.stdout.str()


def test_a_path_after_the_option_is_still_a_path(app: pytest.Pytester) -> None:
    app.makepyfile(test_items=LEAKY_TESTS, test_other="def test_other():\n    pass\n")
    result = run(app, "--poolbench-leaks", "test_items.py")
    result.assert_outcomes(passed=2, errors=1)  # test_items.py only, leaks failing
    assert "test_items.py::test_export leaked 1 connection" in result.stdout.str()
    assert run(app, "--poolbench-leaks", "test_other.py").ret == pytest.ExitCode.OK


def test_off_unless_asked(app: pytest.Pytester) -> None:
    app.makepyfile(test_items=LEAKY_TESTS)
    result = run(app)
    result.assert_outcomes(passed=2)
    assert "leaked" not in result.stdout.str()


def test_warn_mode_from_the_ini_file(app: pytest.Pytester) -> None:
    app.makeini("[pytest]\npoolbench_leaks = warn\n")
    app.makepyfile(test_items=LEAKY_TESTS)
    result = run(app)
    result.assert_outcomes(passed=2, warnings=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*PoolLeakWarning: test_items.py::test_export leaked 1 conn*"])


def test_a_wrong_ini_value_is_a_usage_error(app: pytest.Pytester) -> None:
    app.makeini("[pytest]\npoolbench_leaks = loud\n")
    app.makepyfile(test_items=LEAKY_TESTS)
    result = run(app)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*poolbench_leaks = 'loud': expected fail or warn*"])


WIDER_FIXTURES = """
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import engine


@pytest.fixture(scope="session")
def conn():
    c = engine.connect()  # held on purpose for the whole session
    yield c
    c.close()


@pytest.fixture(scope="module")
def shared_session():
    s = Session(engine)  # created by the fixture, first used in a test
    yield s
    s.close()


@pytest.fixture
def db():
    s = Session(engine)
    yield s
    s.close()  # a function-scoped fixture that closes at teardown is not a leak


def test_one(conn, shared_session, db):
    conn.execute(sa.text("SELECT 1"))
    shared_session.execute(sa.text("SELECT 1"))
    db.execute(sa.text("SELECT 1"))


def test_two(conn, shared_session):
    conn.execute(sa.text("SELECT 2"))
    shared_session.execute(sa.text("SELECT 2"))
"""


def test_wider_scope_fixtures_are_not_blamed(app: pytest.Pytester) -> None:
    app.makepyfile(test_fixtures=WIDER_FIXTURES)
    result = run(app, "--poolbench-leaks=fail")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    assert "leaked" not in result.stdout.str()


def test_a_session_fixture_that_never_returns_is_listed_once_at_the_end(
    app: pytest.Pytester,
) -> None:
    app.makepyfile(
        test_fixtures="""
        import pytest
        import sqlalchemy as sa

        from app.db import engine

        KEEP = []


        @pytest.fixture(scope="session")
        def conn():
            c = engine.connect()
            KEEP.append(c)
            return c  # never closed


        def test_one(conn):
            conn.execute(sa.text("SELECT 1"))


        def test_two(conn):
            conn.execute(sa.text("SELECT 1"))
        """
    )
    result = run(app, "--poolbench-leaks")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    line = line_of(app.path / "test_fixtures.py", "engine.connect()")
    expected = (
        "fixture conn (session) leaked 1 connection: "
        f"checked out at test_fixtures.py:{line} in conn"
    )
    assert result.stdout.lines.count(expected) == 1


ASYNC_CRUD = """
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

engine = create_async_engine({url!r}, pool_size=2, max_overflow=0)


def new_session():
    return AsyncSession(engine)


async def get_items(db):
    return (await db.execute(sa.text("SELECT 1"))).all()
"""


def test_async_engines_too(app: pytest.Pytester, pg_url: str) -> None:
    pytest.importorskip("asyncpg", reason="the async extra: pip install poolbench[async]")
    url = pg_url.replace("+psycopg2", "+asyncpg")
    (app.path / "app" / "acrud.py").write_text(textwrap.dedent(ASYNC_CRUD).format(url=url).lstrip())
    app.makepyfile(
        test_async="""
        import asyncio

        from app.acrud import engine, get_items, new_session

        KEEP = []


        def test_leaks():
            async def main():
                db = new_session()
                await get_items(db)
                KEEP.append(db)

            asyncio.run(main())


        def test_clean():
            async def main():
                async with new_session() as db:
                    await get_items(db)
                await engine.dispose()

            asyncio.run(main())
        """
    )
    result = run(app, "--poolbench-leaks")
    crud = line_of(app.path / "app/acrud.py", "await db.execute")
    new = line_of(app.path / "app/acrud.py", "AsyncSession(engine)")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "test_async.py::test_leaks leaked 1 connection: "
            f"checked out at app/acrud.py:{crud} in get_items; "
            f"session created at app/acrud.py:{new} in new_session"
        ]
    )


def test_pool_watch_counts_what_the_test_did(app: pytest.Pytester) -> None:
    app.makepyfile(
        test_watch="""
        import pytest
        import sqlalchemy as sa

        from app.db import engine


        def test_exhaust(pool_watch):
            held = [engine.connect() for _ in range(3)]
            with pytest.raises(sa.exc.TimeoutError):
                engine.connect()
            assert pool_watch.checked_out == 3
            for conn in held:
                conn.close()
            assert pool_watch.checked_out == 0
            assert pool_watch.peak == 3
            assert pool_watch.checkouts == 3
            assert pool_watch.waits == 1
            assert pool_watch.timeouts == 1
            assert pool_watch.longest_wait_s >= 0.25


        def test_counts_start_again(pool_watch):
            with engine.connect():
                pass
            assert (pool_watch.checkouts, pool_watch.peak, pool_watch.waits) == (1, 1, 0)
        """
    )
    result = run(app)  # pool_watch works with the leak reports off too
    result.assert_outcomes(passed=2)


def test_declared_as_a_pytest11_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {
        "poolbench": "poolbench.pytest_plugin"
    }
    extras = project["project"]["optional-dependencies"]
    assert any(dep.startswith("asyncpg") for dep in extras["async"])
    own = next(d for d in extras["dev"] if d.startswith("poolbench["))
    assert {"async", "metrics"} <= set(own.removeprefix("poolbench[").rstrip("]").split(","))


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin in every run of a project that installs poolbench."""
    code = (
        "import sys, poolbench.pytest_plugin\n"
        "heavy = [m for m in ('sqlalchemy', 'pydantic', 'rich', 'poolbench.engine') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"
