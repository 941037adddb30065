"""The async pool side (an AsyncEngine on one event loop) against the real PostgreSQL and
MariaDB, through every async driver: the same behaviours and figures as a sync run."""

from __future__ import annotations

import _thread
import json
import threading

import pytest
import sqlalchemy as sa

from poolbench import errors

from .conftest import run_yaml, server_connection_count

SMALL_POOL = """
name: t
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.5s}
load: {workers: 5}
duration: 2s
interval: 250ms
seed: 1
"""


def _as(url: str, driver: str) -> str:
    return sa.make_url(url).set(drivername=f"{sa.make_url(url).get_backend_name()}+{driver}")


@pytest.fixture(
    params=[
        pytest.param("asyncpg", marks=pytest.mark.postgres),
        pytest.param("psycopg_async", marks=pytest.mark.postgres),
        pytest.param("aiomysql", marks=pytest.mark.mysql),
        pytest.param("asyncmy", marks=pytest.mark.mysql),
    ]
)
def async_url(request: pytest.FixtureRequest) -> str:
    """Both real servers through each async driver."""
    base = request.getfixturevalue("mysql_url" if "my" in request.param else "pg_url")
    return _as(base, request.param).render_as_string(hide_password=False)


def _sync(url: str) -> str:
    name = sa.make_url(url).get_backend_name()
    return _as(url, "psycopg2" if name == "postgresql" else "pymysql").render_as_string(
        hide_password=False
    )


def test_leaky_sessions_drain_the_pool_and_time_out(async_url):
    result = run_yaml(SMALL_POOL + "workload: {session: leaky, hold: 5ms}", async_url)
    s = result.summary
    assert result.database.driver == sa.make_url(async_url).get_driver_name()
    assert s.peaks.checked_out == 3 and s.peaks.overflow == 1
    assert s.leaks.sessions == 3 and s.leaks.at_first_timeout == 3
    assert s.timeouts >= 1 and s.errors["timeout"].count == s.timeouts
    assert s.first_timeout_message.startswith(
        "QueuePool limit of size 2 overflow 1 reached, connection timed out, timeout 0.50"
    )
    assert 0.4 < s.first_timeout_at_s < 1.5
    assert s.latencies.checkout_wait_ms.max >= 500
    assert s.peaks.waiting >= 2  # coroutines suspended in checkout
    assert s.peaks.server_connections == 3
    assert s.server.connections_at_exit == 0 and s.server.terminated_at_exit == 0


def test_closed_sessions_never_time_out(async_url):
    text = SMALL_POOL.replace("pool_timeout: 0.5s", "pool_timeout: 2s").replace(
        "workers: 5", "workers: 4"
    )
    s = run_yaml(text + "workload: {session: closed, hold: 5ms, think: 5ms}", async_url).summary
    assert s.timeouts == 0 and s.error_count == 0 and s.leaks.sessions == 0
    assert s.operations > 50 and s.ok == s.operations
    assert 1 <= s.peaks.checked_out <= 3
    assert s.latencies.hold_ms.p50 >= 5
    assert s.server.connections_at_exit == 0


def test_open_loop_on_a_connection(async_url):
    text = SMALL_POOL.replace("load: {workers: 5}", "load: {rate: 100/s, max_concurrency: 10}")
    s = run_yaml(text + "workload: {api: connection, hold: 2ms}", async_url).summary
    assert s.error_count == 0 and 120 < s.operations < 300
    assert s.server.connections_at_exit == 0


def test_ctrl_c_on_an_async_run_leaves_no_connection(async_url):
    text = SMALL_POOL.replace("duration: 2s", "duration: 30s") + (
        "workload: {session: leaky, hold: 5ms}"
    )
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    try:
        result = run_yaml(text, async_url)
    finally:
        timer.cancel()
    assert result.interrupted
    assert 1.0 < result.summary.duration_s < 5
    assert result.summary.leaks.sessions == 3 and result.summary.peaks.checked_out == 3
    assert result.summary.server.connections_at_exit == 0
    if async_url.startswith("postgresql"):
        assert server_connection_count(_sync(async_url), f"poolbench-{result.run_id}%") == 0


@pytest.mark.postgres
def test_a_driver_that_does_both_is_forced_async_and_an_async_only_one_refuses_sync(pg_url):
    psycopg = _as(pg_url, "psycopg").render_as_string(hide_password=False)
    result = run_yaml(SMALL_POOL + "engine: async\nworkload: {session: leaky}", psycopg)
    assert result.summary.peaks.checked_out == 3 and result.summary.timeouts >= 1
    asyncpg = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    with pytest.raises(errors.UnknownBackend) as info:
        run_yaml(SMALL_POOL + "engine: sync\nworkload: {session: closed}", asyncpg)
    assert str(info.value) == (
        "postgresql+asyncpg cannot drive a sync engine (scenario 't' says engine: sync); "
        "use postgresql+psycopg2 or postgresql+psycopg"
    )


def test_unclosed_sessions_are_terminated_by_the_garbage_collector_and_it_is_said(async_url):
    s = run_yaml(SMALL_POOL + "workload: {session: unclosed, hold: 5ms}", async_url).summary
    assert s.leaks.sessions >= 3
    # an async engine's collector cannot give the connection back: it terminates it,
    # frees the slot, and SQLAlchemy logs an ERROR and warns
    assert s.pool_events.gc_returned >= 3
    said = {m.message.split(":")[0] for m in s.sqlalchemy_warnings}
    assert {"ERROR", "SAWarning"} <= said
    # terminated where the driver can (asyncpg, aiomysql, asyncmy), else dropped (psycopg)
    outcome = "dropped, as it cannot be safely" if "psycopg" in async_url else "terminated"
    assert all(f"which will be {outcome}" in m.message for m in s.sqlalchemy_warnings)
    assert s.server.connections_at_exit == 0


@pytest.mark.postgres
def test_the_header_and_the_result_name_the_driver_and_the_engine(pg_url, tmp_path):
    from click.testing import CliRunner

    from poolbench.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(SMALL_POOL.replace("duration: 2s", "duration: 1s") + "workload: {}\n")
    url = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["run", str(path), "--url", url, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "· driver asyncpg (AsyncEngine)" in " ".join(result.output.split())
    saved = json.loads(out.read_text())["database"]
    assert saved["driver"] == "asyncpg" and saved["engine"] == "async"


CANCELLED = """
name: c
prefill: true  # a cancelled connect would say nothing about a cancelled request
pool: {pool_size: 2, max_overflow: 0, pool_timeout: 2s}
load: {workers: 4}
duration: 1500ms
interval: 250ms
seed: 3
"""


@pytest.mark.parametrize(
    ("hold", "outcome"),
    [("hold: 200ms", "returned"), ("{hold: 200ms, hold_in: server}", "invalidated")],
    ids=["holding", "in-the-query"],
)
def test_a_cancelled_request_is_counted_with_what_became_of_its_connection(
    async_url, hold, outcome
):
    hold = hold if hold.startswith("{") else "{" + hold + "}"
    workload = hold[:-1] + ", session: closed, cancel_after: 100ms}"
    s = run_yaml(CANCELLED + f"workload: {workload}\n", async_url).summary
    cancelled = s.errors["cancelled"]
    assert cancelled.count >= 10 and s.ok == 0  # every request outlives its 100 ms
    outcomes = {e.code: e.count for e in cancelled.examples}
    assert sum(outcomes.values()) == cancelled.count
    assert set(outcomes) <= {"returned", "invalidated", "no_connection"}
    assert outcomes.get(outcome, 0) >= 5, outcomes
    assert s.figures()["cancelled_checked_out"] == 0
    assert s.server.connections_at_exit == 0


@pytest.mark.postgres
def test_cancel_after_needs_an_async_engine(pg_url):
    with pytest.raises(errors.UsageError, match="cancel_after needs an async engine"):
        run_yaml(CANCELLED + "workload: {cancel_after: 10ms}\n", pg_url)


@pytest.mark.postgres
def test_cpu_bound_handlers_block_the_event_loop_and_the_diagnosis_says_so(pg_url):
    from poolbench.output.diagnosis import diagnose

    url = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    text = SMALL_POOL.replace("pool_size: 2, max_overflow: 1", "pool_size: 3, max_overflow: 0")
    text = text.replace("workers: 5", "workers: 10").replace("timeout: 0.5s", "timeout: 2s")
    result = run_yaml(text + "workload: {cpu: 10ms}", url)
    s = result.summary
    # one loop: at most 1 / 10 ms = 100 requests/s, whatever the pool's size
    assert 10 < s.throughput_ops_s <= 100  # the upper bound is the point (a loaded CI)
    assert s.peaks.waiting >= 2  # coroutines queued behind the busy handlers
    # a waiter waits out what is left of a holder's CPU slice: milliseconds, not microseconds
    assert s.latencies.checkout_wait_ms.max >= 5
    hint = next(h for h in diagnose(result) if "event loop" in h)
    assert "at most 100 requests/s" in hint
    assert result.load.workload[0].cpu == 0.01


ASYNC_TASKS = """
import itertools
from sqlalchemy import text
calls = itertools.count()

async def work(db):
    if next(calls) % 5 == 4:
        raise ValueError("every fifth request fails")
    if callable(db):  # api: sessionmaker: an async_sessionmaker
        async with db() as session:
            return (await session.execute(text("SELECT 1"))).scalar_one()
    return (await db.execute(text("SELECT 1"))).scalar_one()
"""


@pytest.mark.postgres
@pytest.mark.parametrize("api", ["session", "connection", "sessionmaker"])
def test_async_def_tasks_get_an_async_session_connection_or_sessionmaker(tmp_path, pg_url, api):
    from poolbench.db.target import Target, parse_url
    from poolbench.engine.runner import run_scenario
    from poolbench.scenario import load_scenario

    name = f"asynctasks_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(ASYNC_TASKS)
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nengine: async\npool: {pool_size: 2, max_overflow: 0, pool_timeout: 3s}\n"
        f'workload: {{task: "{name}:work", api: {api}, hold: 5ms, think: 5ms}}\n'
        "load: {workers: 3}\nduration: 1500ms\n"
    )
    url = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    s = run_scenario(load_scenario(path), Target(parse_url(url, "t"), "--url")).summary
    assert s.ok > 10
    other = s.errors["other"]
    assert other.count >= 1 and other.examples[0].message == "ValueError: every fifth request fails"
    assert s.timeouts == 0 and s.server.connections_at_exit == 0
    if api == "sessionmaker":  # checkouts timed at the pool, per task
        assert s.latencies.checkout_wait_ms.count > 10


@pytest.mark.postgres
def test_a_fleet_runs_one_event_loop_per_process(pg_url):
    from poolbench.engine.runner import RunOptions

    url = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    text = SMALL_POOL.replace("workers: 5", "workers: 6")
    result = run_yaml(
        text + "workload: {session: leaky, hold: 5ms}", url, options=RunOptions(processes=2)
    )
    s = result.summary
    assert s.peaks.checked_out == 6 and s.leaks.sessions == 6  # 2 x (2 + 1)
    assert s.timeouts >= 1 and s.server.connections_at_exit == 0
    assert [p.index for p in result.processes] == [0, 1]


@pytest.mark.postgres
def test_leak_detection_names_the_line_of_the_coroutine_that_checked_out(tmp_path, pg_url):
    from poolbench.db.target import Target, parse_url
    from poolbench.engine.runner import run_scenario
    from poolbench.scenario import load_scenario

    name = f"asyncleak_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(
        "from sqlalchemy import text\n\n"
        "async def forgetful(db):\n"
        "    session = db()\n"
        '    await session.execute(text("SELECT 1"))  # never closed\n'
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nengine: async\npool: {pool_size: 2, max_overflow: 0, pool_timeout: 500ms}\n"
        f'workload: {{task: "{name}:forgetful", api: sessionmaker}}\n'
        "load: {workers: 3}\nduration: 1500ms\nleak_detection: 300ms\n"
    )
    url = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    s = run_scenario(load_scenario(path), Target(parse_url(url, "t"), "--url")).summary
    # the awaiting task's own frame, not greenlet or asyncio internals
    assert s.leaks.sites and s.leaks.sites[0].site.endswith(f"{name}.py:5 in forgetful")
    assert s.leaks.holders_at_first_timeout
    assert s.leaks.holders_at_first_timeout[0].site.endswith(f"{name}.py:5 in forgetful")
    assert s.server.connections_at_exit == 0


@pytest.mark.postgres
def test_a_cancellable_request_runs_the_groups_task_not_its_query(tmp_path, pg_url):
    """cancel_after with a task: the handler runs (its error is the request's), as
    without cancel_after; the group's default query is never the work."""
    from poolbench.db.target import Target, parse_url
    from poolbench.engine.runner import run_scenario
    from poolbench.scenario import load_scenario

    name = f"asynccancel_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(ASYNC_TASKS)
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nengine: async\npool: {pool_size: 2, max_overflow: 0, pool_timeout: 3s}\n"
        f'workload: {{task: "{name}:work", api: session, cancel_after: 5s, think: 5ms}}\n'
        "load: {workers: 2}\nduration: 1s\n"
    )
    url = _as(pg_url, "asyncpg").render_as_string(hide_password=False)
    s = run_scenario(load_scenario(path), Target(parse_url(url, "t"), "--url")).summary
    assert s.ok > 5
    other = s.errors["other"]
    assert other.count >= 1 and other.examples[0].message == "ValueError: every fifth request fails"
    assert s.server.connections_at_exit == 0
