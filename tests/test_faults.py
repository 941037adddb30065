"""Stale and broken connections against the real servers: idle timeouts, kills, restarts,
and what pre-ping, recycling and a keep-alive job do about them."""

import json

import psycopg2
import pymysql
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc

from poolbench import errors
from poolbench.cli import main
from poolbench.db import open_target
from poolbench.db.backends.mysql import MySQL, PyMySQL
from poolbench.db.backends.postgresql import PostgreSQL, Psycopg2
from poolbench.engine.classify import classify
from poolbench.engine.faults import check_supported
from poolbench.engine.runner import run_scenario
from poolbench.scenario import parse_scenario
from poolbench.scenario.model import Faults

from .conftest import run_yaml

GAP = """
name: gap
pool: {pool_size: 3, max_overflow: 0, pool_timeout: 2s}
workload: {session: closed, hold: 5ms, think: 10ms}
load: {workers: 3}
faults: {server_idle_timeout: 1s}
phases:
  - {name: busy, duration: 1s}
  - {name: idle, duration: 2.5s, workers: 0}
  - {name: busy again, duration: 1s}
interval: 250ms
"""


def test_an_idle_gap_longer_than_the_server_limit_breaks_requests_once(db_url):
    s = run_yaml(GAP, db_url).summary
    disconnects = s.errors["disconnect"]
    assert 1 <= disconnects.count <= 3  # then SQLAlchemy invalidates the whole pool
    example = disconnects.examples[0]
    if db_url.startswith("postgresql"):
        assert "server closed the connection unexpectedly" in example.message
    else:
        assert example.code in ("2006", "2013", "4031")
    assert s.peaks.stale == 3  # the pool held three connections the server had closed
    assert s.pool_events.invalidations >= 1 and s.pool_events.reconnects == 3
    assert s.server.connections_at_exit == 0


def test_pre_ping_recovers_inside_checkout(db_url):
    s = run_yaml(GAP, db_url, overrides=("pool.pool_pre_ping=true",)).summary
    assert s.error_count == 0
    assert s.pool_events.pre_ping_recoveries >= 1


def test_recycle_below_the_idle_limit_replaces_connections_first(db_url):
    s = run_yaml(GAP, db_url, overrides=("pool.pool_recycle=0.5s",)).summary
    assert s.error_count == 0
    assert s.pool_events.recycles >= 1


def test_a_keepalive_job_keeps_every_connection_warm(db_url):
    s = run_yaml(GAP, db_url, overrides=("keepalive.every=200ms",)).summary
    assert s.error_count == 0 and s.keepalive_errors == 0
    assert s.keepalive_pings >= 10 and s.peaks.stale == 0


KILL = """
name: kill
pool: {pool_size: 4, max_overflow: 0, pool_timeout: 2s}
workload:
  - {name: holders, share: 1, session: leaky}
  - {name: others, share: 2, session: closed, hold: 5ms, think: 30ms}
load: {workers: 3}
duration: 2s
interval: 250ms
seed: 4
"""


def test_kill_all_ends_every_connection_of_the_run_and_no_one_elses(db_url, outside_connection):
    result = run_yaml(KILL + "faults: {kill: [1s]}", db_url)
    (fault,) = result.faults
    assert (fault.kind, fault.t_s, fault.error) == ("kill", 1.0, None)
    assert fault.ended == 4  # the whole pool: leaked and idle alike
    assert result.summary.server.connections_at_exit == 0
    assert outside_connection.execute(sa.text("SELECT 1")).scalar() == 1


def test_kill_idle_spares_the_connections_requests_hold(db_url):
    # every connection is held by a leaked session: nothing is idle in the pool
    leaky = KILL.replace("share: 2", "share: 0.001") + "faults: {kill: [{at: 1s, which: idle}]}"
    held = run_yaml(leaky, db_url)
    at_kill = min(held.timeline, key=lambda x: abs(x.t_s - 1.0))
    assert at_kill.checked_out == 4 and at_kill.leaked_open == 4
    assert held.faults[0].ended == 0
    assert held.summary.errors["disconnect"].count == 0
    # with sessions closed between requests (and idle most of the time), the pool's idle
    # connections are ended
    closed = KILL.replace("share: 1,", "share: 0.001,").replace("think: 30ms", "think: 200ms")
    idle = run_yaml(closed + "faults: {kill: [{at: 1s, which: idle}]}", db_url)
    assert idle.faults[0].ended >= 1


def test_faults_that_cannot_apply_are_refused():
    pg = PostgreSQL(Psycopg2())
    with pytest.raises(errors.UnsupportedDatabase, match="PostgreSQL 14 or later"):
        check_supported(Faults(server_idle_timeout=2), pg, "13.4", None)
    with pytest.raises(errors.UnsupportedDatabase, match="only on the embedded PostgreSQL"):
        check_supported(Faults(restart=[{"at": 1}]), pg, "16.2", None)


def test_fault_times_must_fall_inside_the_run():
    from poolbench.errors import ScenarioError

    with pytest.raises(ScenarioError, match="after the run ends"):
        parse_scenario(KILL + "faults: {kill: [5s]}", "k.yaml")


@pytest.mark.postgres
def test_restart_needs_the_embedded_server(pg_url):
    with pytest.raises(errors.UnsupportedDatabase, match="embedded"):
        run_yaml(KILL + "faults: {restart: [1s]}", pg_url)


@pytest.mark.embedded
def test_restarting_the_embedded_server_mid_run():
    text = GAP.replace("faults: {server_idle_timeout: 1s}", "faults: {restart: [1.5s]}")
    scenario = parse_scenario(text, "restart.yaml", ["pool.pool_pre_ping=true"])
    with open_target(None, None, environ={}) as target:
        result = run_scenario(scenario, target)
    (fault,) = result.faults
    assert fault.kind == "restart" and fault.error is None
    s = result.summary
    assert s.error_count == 0  # nothing ran during the restart; pre-ping replaced the rest
    assert s.pool_events.pre_ping_recoveries >= 1
    assert s.server.connections_at_exit == 0


# -- classification, with real driver exceptions ------------------------------------------


def _wrap(orig, invalidated=False):
    return sa_exc.OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (
            _wrap(
                pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
                invalidated=True,
            ),
            "disconnect",
            "2013",
        ),
        (
            _wrap(pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
            "disconnect",
            "2006",
        ),
        (
            _wrap(pymysql.err.OperationalError(1040, "Too many connections")),
            "too_many_connections",
            "1040",
        ),
        (
            _wrap(
                psycopg2.OperationalError(
                    'connection to server at "127.0.0.1", port 5432 failed: '
                    "FATAL:  sorry, too many clients already\n"
                )
            ),
            "too_many_connections",
            "53300",
        ),
        (_wrap(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")), "other", "1205"),
        (sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), "timeout", None),
        (ValueError("boom"), "other", "ValueError"),
    ],
)
def test_every_error_is_classified_once(error, kind, code):
    # each driver's exception, read by its own backend
    pg = isinstance(getattr(error, "orig", None), psycopg2.Error)
    backend = PostgreSQL(Psycopg2()) if pg else MySQL(PyMySQL())
    got_kind, got_code, message = classify(error, backend)
    assert got_kind == kind
    if code is not None:
        assert got_code == code
    assert "\n" not in message


def test_classification_scrubs_secrets():
    error = _wrap(pymysql.err.OperationalError(1045, "Access denied, password s3cr3t-pw"))
    backend = MySQL(PyMySQL())
    assert "s3cr3t" not in classify(error, backend, lambda s: s.replace("s3cr3t-pw", "***"))[2]


# -- comparing fixes ------------------------------------------------------------------------


@pytest.mark.mysql
def test_vary_runs_every_combination_and_compares(tmp_path, mysql_url):
    path = tmp_path / "gap.yaml"
    path.write_text(GAP)
    out = tmp_path / "runs.json"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(path),
            "--url",
            mysql_url,
            "--vary",
            "pool_pre_ping=false,true",
            "--json",
            str(out),
        ],
        env={"POOLBENCH_URL": ""},
    )
    assert result.exit_code == 0, result.output
    assert "variants side by side" in result.output
    doc = json.loads(out.read_text())
    assert [r["variant"] for r in doc["runs"]] == [
        {"pool.pool_pre_ping": False},
        {"pool.pool_pre_ping": True},
    ]
    without, with_ping = (r["summary"] for r in doc["runs"])
    assert without["errors"]["disconnect"]["count"] >= 1
    assert with_ping["errors"]["disconnect"]["count"] == 0
    assert with_ping["pool_events"]["pre_ping_recoveries"] >= 1


def test_bad_vary_flags_are_usage_errors(tmp_path):
    path = tmp_path / "gap.yaml"
    path.write_text(GAP)
    runner = CliRunner()
    result = runner.invoke(
        main, ["run", str(path), "--vary", "pool_pre_ping"], env={"POOLBENCH_URL": ""}
    )
    assert result.exit_code == 2 and "expected KEY=V1,V2" in result.output
    result = runner.invoke(
        main, ["run", str(path), "--vary", "pool_siz=1,2"], env={"POOLBENCH_URL": ""}
    )
    assert result.exit_code == 2 and "--vary pool_siz: not a setting" in result.output
    result = runner.invoke(
        main, ["run", str(path), "--vary", "pool_size=1,-2"], env={"POOLBENCH_URL": ""}
    )
    assert result.exit_code == 2
    assert result.output.startswith(
        "poolbench: error: --vary (pool_size=-2): pool.pool_size: must be >= 0, got -2"
    )
