"""app.engine: the user's own engine measured as found, on the real servers."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

import poolbench
from poolbench.errors import ScenarioError, UsageError
from poolbench.scenario import load_scenario

pytestmark = pytest.mark.postgres

_names = itertools.count()

APP = """
import os
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

engine = sa.create_engine(
    os.environ["POOLBENCH_TEST_PG_URL"],
    pool_size=2,
    max_overflow=1,
    pool_timeout=0.5,
    connect_args={"application_name": "APPNAME"},
)
SessionLocal = sessionmaker(bind=engine)
connects = []


@event.listens_for(engine, "connect")
def on_connect(dbapi_connection, record):
    connects.append(1)


def report(session):
    return session.execute(sa.text("SELECT pg_sleep(0.3)")).all()


def get_db():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


LEAKED = []


def get_db_leaky():
    db = SessionLocal()
    LEAKED.append(db)  # kept, never closed: as a module-level cache would
    yield db


def prepare():
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS APPNAME_t (id int)"))


def cleanup():
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS APPNAME_t"))
"""


def _write(tmp_path: Path, body: str, scenario: str) -> tuple[Path, str]:
    module = f"poolbench_app_{next(_names)}"
    (tmp_path / f"{module}.py").write_text(body.replace("APPNAME", module))
    path = tmp_path / "app.yaml"
    path.write_text(textwrap.dedent(scenario).replace("MODULE", module))
    return path, module


def _timeouts(summary) -> int:
    kind = summary.errors.get("timeout")
    return kind.count if kind is not None else 0


def _server_count(url: str, name: str) -> int:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": name},
            ).scalar_one()
    finally:
        engine.dispose()


def test_the_apps_engine_is_measured_as_found(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, module = _write(
        tmp_path,
        APP,
        """
        name: app-as-found
        app:
          engine: MODULE:SessionLocal
          setup: MODULE:prepare
          teardown: MODULE:cleanup
        workload:
          task: MODULE:report
        load: {workers: 6}
        duration: 2s
        interval: 250ms
        """,
    )
    result = poolbench.run(load_scenario(path))
    app = sys.modules[module]
    s = result.summary
    # the app's pool: 2 + 1, timeout 0.5 s; six callers of 0.3 s wait and time out
    assert result.pool.pool_size == 2 and result.pool.max_overflow == 1
    assert s.peaks.checked_out == 3
    assert _timeouts(s) >= 1
    assert s.peaks.waiting >= 3
    assert result.database.source == "app"
    assert any("QueuePool, pool_size=2, max_overflow=1" in n for n in result.notes)
    assert len(app.connects) >= 3  # the app's own listener saw poolbench's load
    # the app's connections keep its application_name: the server view finds them by pid
    assert s.peaks.server_connections >= 2
    assert s.server.connections_at_exit == 0
    assert _server_count(pg_url, module) == 0
    with app.engine.connect() as conn:  # teardown ran: the setup's table is gone
        assert conn.execute(sa.text(f"SELECT to_regclass('{module}_t')")).scalar() is None


def test_scenario_pool_keys_rebuild_the_apps_pool(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, module = _write(
        tmp_path,
        APP,
        """
        name: app-rebuilt
        app: {engine: MODULE:engine}
        pool: {pool_size: 6}
        workload:
          task: MODULE:report
        load: {workers: 6}
        duration: 2s
        interval: 250ms
        """,
    )
    scenario = load_scenario(path)
    app_module = sys.modules[module]
    original = app_module.engine.pool
    result = poolbench.run(scenario)
    s = result.summary
    assert result.pool.pool_size == 6 and result.pool.max_overflow == 1
    assert _timeouts(s) == 0
    assert s.peaks.checked_out == 6
    assert any("pool rebuilt" in n and "pool_size" in n for n in result.notes)
    # the app's connect arguments and listeners came along; its own pool is back
    assert len(app_module.connects) >= 6
    assert app_module.engine.pool is original
    assert _server_count(pg_url, module) == 0


def test_vary_runs_the_apps_engine_with_each_setting(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, _ = _write(
        tmp_path,
        APP,
        """
        name: app-vary
        app: {engine: MODULE:engine}
        workload:
          task: MODULE:report
        load: {workers: 4}
        duration: 1s
        interval: 250ms
        """,
    )
    results = poolbench.run_all(load_scenario(path), vary=["pool_size=1,4"])
    assert [r.pool.pool_size for r in results] == [1, 4]
    assert [r.pool.max_overflow for r in results] == [1, 1]  # the app's, kept
    assert results[0].summary.peaks.checked_out == 2
    assert results[1].summary.peaks.checked_out == 4


def test_a_dependency_is_driven_as_fastapi_does(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, module = _write(
        tmp_path,
        APP,
        """
        name: app-dependency
        app: {engine: MODULE:engine}
        workload:
          - name: fixed
            task: MODULE:get_db
            api: dependency
            share: 97%
            hold: 20ms
          - name: leaky
            task: MODULE:get_db_leaky
            api: dependency
            share: 3%
        load: {workers: 3}
        duration: 2s
        interval: 250ms
        seed: 1
        """,
    )
    result = poolbench.run(load_scenario(path))
    s = result.summary
    # the leaky dependency keeps its sessions: 3 connections out for good, then timeouts
    assert len(sys.modules[module].LEAKED) >= 3
    assert s.peaks.checked_out == 3
    assert _timeouts(s) >= 1
    fixed = next(g for g in s.groups if g.name == "fixed")
    assert fixed.ok >= 1


def test_sqlmodel_apps_get_their_own_session(tmp_path, pg_url, monkeypatch):
    pytest.importorskip("sqlmodel")
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, _ = _write(
        tmp_path,
        """
import os
from sqlmodel import Session, create_engine, select, func

engine = create_engine(os.environ["POOLBENCH_TEST_PG_URL"], pool_size=2, max_overflow=0)


def count(session: Session):
    return session.exec(select(func.count())).one()
""",
        """
        name: app-sqlmodel
        app: {engine: MODULE:engine}
        workload:
          task: MODULE:count
        load: {workers: 2}
        duration: 1s
        interval: 250ms
        """,
    )
    result = poolbench.run(load_scenario(path))
    s = result.summary
    assert s.operations > 0
    assert s.ok == s.operations  # session.exec: SQLModel's Session, not a plain one


def test_app_errors_are_one_line(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, _ = _write(
        tmp_path,
        APP + "\nnot_an_engine = 3\n",
        """
        name: app-bad
        app:
          engine: MODULE:not_an_engine
        workload: {query: SELECT 1}
        load: {workers: 1}
        duration: 1s
        """,
    )
    with pytest.raises(ScenarioError, match=r"app.yaml:4: app.engine: .*not_an_engine is a int"):
        load_scenario(path)
    path.write_text(path.read_text().replace("not_an_engine", "missing"))
    with pytest.raises(ScenarioError, match=r"app.engine: '.*' has no 'missing'"):
        load_scenario(path)
    path.write_text(path.read_text().replace(":missing", ":engine"))
    with pytest.raises(UsageError, match="measures the app's own engine"):
        poolbench.run(load_scenario(path), url=pg_url)


LEAKY_APP = """
import os
import sqlalchemy as sa
from sqlmodel import Session, create_engine, select

engine = create_engine(
    os.environ["POOLBENCH_TEST_PG_URL"], pool_size=2, max_overflow=0, pool_timeout=0.5
)
KEPT = []


def get_db():
    db = Session(engine)
    KEPT.append(db)  # never closed: kept as a cache would
    yield db


def report(session):
    db = Session(engine)
    KEPT.append(db)
    return db.exec(select(1)).one()  # LEAK LINE
"""


def _line(body: str, marker: str) -> int:
    return next(i for i, text in enumerate(body.splitlines(), 1) if marker in text)


def test_leak_sites_name_the_apps_line_not_the_orm_wrapper(tmp_path, pg_url, monkeypatch):
    pytest.importorskip("sqlmodel")
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, module = _write(
        tmp_path,
        LEAKY_APP,
        """
        name: app-leak-site
        app: {engine: MODULE:engine}
        workload:
          task: MODULE:report
          api: sessionmaker
        load: {workers: 3}
        duration: 2s
        interval: 250ms
        leak_detection: 500ms
        """,
    )
    result = poolbench.run(load_scenario(path))
    s = result.summary
    site = s.leaks.sites[0]
    line = _line(LEAKY_APP, "# LEAK LINE")
    assert site.site == f"{module}.py:{line} in report" or site.site.endswith(
        f"{module}.py:{line} in report"
    )
    # SQLModel's execute is shown below the site, not as the site
    assert any("sqlmodel" in frame for frame in site.below)
    assert site.created is not None and site.created.endswith(f"{line - 2} in report")
    # the task's sessions still holding their connections at the end: leaked
    assert s.leaks.sessions == 2
    assert _timeouts(s) >= 1


def test_a_leaky_dependency_is_named_where_it_creates_the_session(tmp_path, pg_url, monkeypatch):
    pytest.importorskip("sqlmodel")
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, module = _write(
        tmp_path,
        LEAKY_APP,
        """
        name: app-leak-dependency
        app: {engine: MODULE:engine}
        workload:
          task: MODULE:get_db
          api: dependency
        load: {workers: 3}
        duration: 2s
        interval: 250ms
        leak_detection: {threshold: 500ms, skip: [sqlmodel]}
        """,
    )
    result = poolbench.run(load_scenario(path))
    site = result.summary.leaks.sites[0]
    line = _line(LEAKY_APP, "db = Session(engine)")
    assert site.site.endswith(f"{module}.py:{line} in get_db")
    assert site.created == site.site
    assert result.summary.leaks.sessions == 2


def test_skip_passes_over_the_named_code(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    helper = "helper_" + str(next(_names))
    (tmp_path / f"{helper}.py").write_text(
        "import sqlalchemy as sa\n\n\ndef run(session):\n"
        "    return session.execute(sa.text('SELECT 1'))\n"
    )
    path, _ = _write(
        tmp_path,
        APP.replace(
            "def report(session):",
            f"import {helper}\nKEPT = []\n\ndef hold(factory):\n"
            f"    s = factory()\n    KEPT.append(s)\n    {helper}.run(s)  # CALLER\n\n\n"
            "def report(session):",
        ),
        f"""
        name: app-skip
        app: {{engine: MODULE:engine}}
        workload:
          task: MODULE:hold
          api: sessionmaker
        load: {{workers: 1}}
        duration: 1500ms
        interval: 250ms
        leak_detection: {{threshold: 300ms, skip: [{helper}]}}
        """,
    )
    result = poolbench.run(load_scenario(path))
    site = result.summary.leaks.sites[0]
    assert site.site.endswith(" in hold")
    assert any(helper in frame for frame in site.below)


def test_the_cli_runs_an_app_and_writes_its_json(tmp_path, pg_url, monkeypatch):
    import json

    from click.testing import CliRunner

    from poolbench.cli import main

    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", pg_url)
    path, _ = _write(
        tmp_path,
        APP,
        """
        name: app-cli
        app: {engine: MODULE:engine}
        workload: {task: MODULE:report}
        load: {workers: 2}
        duration: 1s
        interval: 250ms
        thresholds: {timeouts: "== 0"}
        """,
    )
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["run", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "the app's engine (" in result.output
    data = json.loads(out.read_text())
    assert data["database"]["source"] == "app"
    assert any("pool_size=2" in n for n in data["notes"])
    # --url or --processes with an app is one line, exit 2
    result = CliRunner().invoke(main, ["run", str(path), "--url", pg_url])
    assert result.exit_code == 2
    assert "measures the app's own engine" in result.output
    result = CliRunner().invoke(main, ["run", str(path), "--processes", "2"])
    assert result.exit_code == 2
    assert "--processes 2: scenario 'app-cli' measures the app's own engine" in result.output


def test_an_async_engine_of_the_app_is_measured(tmp_path, pg_url, monkeypatch):
    pytest.importorskip("asyncpg")
    async_url = sa.make_url(pg_url).set(drivername="postgresql+asyncpg")
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", async_url.render_as_string(hide_password=False))
    path, module = _write(
        tmp_path,
        """
import os
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine(
    os.environ["POOLBENCH_TEST_PG_URL"], pool_size=2, max_overflow=0, pool_timeout=0.5
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
""",
        """
        name: app-async
        app: {engine: MODULE:SessionLocal}
        pool: {max_overflow: 1}
        workload: {query: SELECT 1, hold: 300ms}
        load: {workers: 5}
        duration: 2s
        interval: 250ms
        """,
    )
    result = poolbench.run(load_scenario(path))
    s = result.summary
    assert result.database.engine == "async"
    assert any("AsyncAdaptedQueuePool, pool_size=2, max_overflow=0" in n for n in result.notes)
    assert s.peaks.checked_out == 3  # rebuilt with the scenario's max_overflow
    assert _timeouts(s) >= 1
    assert s.server.connections_at_exit == 0
    assert isinstance(sys.modules[module].engine.pool, sa.pool.AsyncAdaptedQueuePool)


def test_an_async_get_db_of_the_app_is_driven_and_its_leak_named(tmp_path, pg_url, monkeypatch):
    pytest.importorskip("asyncpg")
    async_url = sa.make_url(pg_url).set(drivername="postgresql+asyncpg")
    monkeypatch.setenv("POOLBENCH_TEST_PG_URL", async_url.render_as_string(hide_password=False))
    body = """
import os
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine(
    os.environ["POOLBENCH_TEST_PG_URL"], pool_size=2, max_overflow=0, pool_timeout=0.5
)
SessionLocal = async_sessionmaker(engine)
KEPT = []


async def get_db():
    db = SessionLocal()  # CREATED
    KEPT.append(db)
    yield db  # no close
"""
    path, module = _write(
        tmp_path,
        body,
        """
        name: app-async-dependency
        app: {engine: MODULE:SessionLocal}
        workload: {task: MODULE:get_db, api: dependency, query: SELECT 1}
        load: {workers: 3}
        duration: 2s
        interval: 250ms
        leak_detection: 500ms
        """,
    )
    result = poolbench.run(load_scenario(path))
    s = result.summary
    assert _timeouts(s) >= 1
    assert s.leaks.sessions == 2
    site = s.leaks.sites[0]
    line = _line(body, "# CREATED")
    assert site.site.endswith(f"{module}.py:{line} in get_db"), s.leaks.sites
    assert s.server.connections_at_exit == 0
