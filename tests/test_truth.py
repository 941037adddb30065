"""Figures that cannot mislead (issue 8), against the real servers: exact peaks."""

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poolbench.db.backends import backend_for
from poolbench.engine import runner
from poolbench.engine.classify import classify
from poolbench.engine.peaks import Peak
from poolbench.engine.readings import PoolReading
from poolbench.engine.runner import RunOptions, straggler_note
from poolbench.engine.sampler import Timeline
from poolbench.metrics.recorder import IntervalStats
from poolbench.output.diagnosis import diagnose
from poolbench.result import PoolEvents
from poolbench.scenario import parse_scenario

from .conftest import Canary, run_yaml

BURST = """
name: burst
pool: {pool_size: 5, max_overflow: 10, pool_timeout: 2s}
load: {workers: 12}
duration: 2s
interval: 1s
seed: 1
workload: {session: closed, hold: 300ms, think: 20s}
"""


def test_a_burst_between_two_samples_shows_in_the_peaks(pg_url):
    # 12 workers hold a connection for 300 ms at the start, then think for 20 s: both
    # samples (1 s, 2 s) find nothing checked out, the peaks find all 12
    result = run_yaml(BURST, pg_url)
    s = result.summary
    assert s.operations == 12 and s.ok == 12
    assert s.peaks.checked_out == 12
    assert s.peaks.overflow == 7  # 12 - pool_size
    assert s.peaks.connections_open == 12
    assert s.pool_events.connects == 12
    first, last = result.timeline[0], result.timeline[-1]
    assert first.checked_out == 0 and first.peak_checked_out == 12
    assert first.peak_overflow == 7 and first.peak_waiting >= 1
    assert last.peak_checked_out == 0  # the peaks restart every interval
    lines = " ".join(diagnose(result))
    assert "never needed more than 12 of its 15 connections" in lines


def test_a_peak_restarts_each_interval_from_the_value_then():
    waiting = Peak()
    for _ in range(3):
        waiting.up()
    waiting.down()
    waiting.down()
    assert waiting.take() == 3
    assert waiting.take() == 1  # one still waiting: the next interval starts there
    checked_out = Peak()
    checked_out.note(4)
    checked_out.note(2)
    assert checked_out.take(current=1) == 4
    assert checked_out.take(current=0) == 1


@pytest.mark.parametrize("url_fixture", ["pg_url", "mysql_url"])
def test_a_server_that_refuses_connections_is_an_outage_not_other(url_fixture, request):
    # the driver's own error for a port nobody listens on, as during a restart
    url = sa.make_url(request.getfixturevalue(url_fixture)).set(port=1)
    engine = sa.create_engine(url, poolclass=NullPool)
    with pytest.raises(sa.exc.OperationalError) as caught:
        engine.connect()
    kind, code, message = classify(caught.value, backend_for(url))
    assert kind == "disconnect", message
    assert code in ("08001", "2003")


def test_shutting_down_and_starting_up_are_outages():
    postgres = backend_for(sa.make_url("postgresql+psycopg2://x@h/d"))
    for text in (
        "FATAL:  the database system is shutting down",
        "the database system is starting up",
    ):
        assert postgres.error_kind(None, text) == ("disconnect", "57P03")
    assert postgres.error_kind("57P03", "anything") == ("disconnect", "57P03")
    mysql = backend_for(sa.make_url("mysql+pymysql://x@h/d"))
    assert mysql.error_kind("2003", "Can't connect to MySQL server")[0] == "disconnect"
    assert mysql.error_kind("1053", "Server shutdown in progress")[0] == "disconnect"
    assert postgres.error_kind("42P01", 'relation "no_such_table" does not exist') == (
        None,
        "42P01",
    )


BLOCKED = """
name: blocked
pool: {pool_size: 1, max_overflow: 0, pool_timeout: 10s}
load: {workers: 4}
duration: 1s
interval: 250ms
seed: 1
"""


def test_the_last_sample_is_taken_while_the_load_still_runs(pg_url):
    # one connection held for 2 s, three callers blocked behind it: the sample at the end
    # shows exactly that, not the pool after the shutdown woke everyone
    result = run_yaml(BLOCKED + "workload: {session: closed, hold: 2s}", pg_url)
    last = result.timeline[-1]
    assert last.t_s == 1.0 and last.phase == "steady"
    assert (last.checked_out, last.waiting) == (1, 3)


class OrderedPools:
    """Records the order the runner drives a pool side in (pure runner logic)."""

    exact_stale = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def set_phase(self, phase) -> None:
        self.calls.append("phase")

    def read(self):
        self.calls.append("read")
        stats = IntervalStats(checkout_wait_p99_ms=None)
        return PoolReading(1, 0, 0, 3, 0, 0, stats, {}, PoolEvents()), None

    def stop_load(self) -> None:
        self.calls.append("stop")


def test_the_runner_reads_the_last_sample_before_it_stops_the_load():
    scenario = parse_scenario(BLOCKED + "workload: {hold: 2s}", "t.yaml").model_copy(
        update={"interval": 0.1}
    )
    run = runner._Run.__new__(runner._Run)
    run.scenario, run.options, run.observer = scenario, RunOptions(), Canary()
    run._lock, run._first_timeout = threading.Lock(), (None, None)
    pools = OrderedPools()
    server = SimpleNamespace(refresh=lambda wait: (None, True))
    faults = SimpleNamespace(fire_due=lambda now: None, next_at=lambda: None)
    timeline = Timeline(scenario.total_duration)
    assert run._measure(pools, faults, server, timeline, time.perf_counter()) == 1.0
    assert pools.calls[-2:] == ["read", "stop"] and pools.calls.count("stop") == 1
    assert timeline.samples[-1].t_s == 1.0 and timeline.samples[-1].waiting == 3


def test_stragglers_are_told_apart_holding_and_waiting(pg_url):
    # one request sleeps on the server for 10 s (halting does not stop it), two wait
    # behind it for the pool's only connection
    text = BLOCKED.replace("workers: 4", "workers: 3")
    text += "workload: {session: closed, hold: 10s, hold_in: server}"
    result = run_yaml(text, pg_url, options=RunOptions(grace_s=0.5))
    assert (
        "1 request still held a connection and 2 were still waiting for one 0.5s after the "
        "end; of the connections they held, 1 was ended on the server"
    ) in result.notes


def test_the_straggler_note_says_each_number_for_what_it_is():
    assert straggler_note(0, 8, 5, 0) == (
        "8 requests were still waiting for a connection (holding none) 5s after the end"
    )
    assert straggler_note(2, 0, 5, 2) == (
        "2 requests still held a connection 5s after the end; of the connections they held, "
        "2 were ended on the server"
    )


def test_a_sample_the_server_did_not_answer_in_time_has_no_server_count(pg_url):
    # the probe's own server process is stopped (SIGSTOP) for 1.2 s mid-run: those samples
    # say null, they do not repeat the count from before the hang
    stopped: list[int] = []

    def hang_the_probe() -> None:
        time.sleep(0.6)
        engine = sa.create_engine(pg_url, poolclass=NullPool)
        with engine.connect() as conn:
            pid = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE '%-probe'"
                    " AND pid <> pg_backend_pid() ORDER BY backend_start DESC LIMIT 1"
                )
            ).scalar_one()
        engine.dispose()
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        try:
            time.sleep(1.2)
        finally:
            os.kill(pid, signal.SIGCONT)

    hanger = threading.Thread(target=hang_the_probe)
    hanger.start()
    try:
        text = BLOCKED.replace("duration: 1s", "duration: 3s")
        result = run_yaml(text + "workload: {session: closed, hold: 5ms, think: 20ms}", pg_url)
    finally:
        hanger.join()
    assert stopped
    counts = [s.server_connections for s in result.timeline]
    assert counts[0] is not None and counts[-1] is not None
    missing = [s.t_s for s in result.timeline if s.server_connections is None]
    assert len(missing) >= 3, counts
    assert all(0.6 <= t <= 2.2 for t in missing), missing


LEAKY = """
name: leaky
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.5s}
load: {workers: 5}
duration: 1500ms
interval: 250ms
seed: 1
workload: {session: leaky, hold: 5ms}
"""


def test_the_diagnosis_says_what_the_server_showed_of_leaked_sessions(pg_url, mysql_url):
    on_postgres = " ".join(diagnose(run_yaml(LEAKY, pg_url)))
    assert "The server showed up to 3 of them idle in transaction." in on_postgres
    on_mysql = " ".join(diagnose(run_yaml(LEAKY, mysql_url)))
    assert "idle in transaction" not in on_mysql.replace("not idle in transaction", "")
    assert "plain idle connections (up to 3)" in on_mysql


def test_the_checked_out_peak_is_kept_by_the_executor_or_a_listener(pg_url):
    """Where poolbench's requests are the pool's only checkouts the executor reads the
    count after each one (no event on every request's path); code of the user's (a task)
    or keep-alive pings check out connections poolbench does not see: then a listener."""
    from sqlalchemy import event

    from poolbench.engine.poolside import build_pool_side

    url = sa.make_url(pg_url)
    plain = parse_scenario(BURST, "burst")
    side = build_pool_side(plain, url, backend_for(url), "t", lambda t: t)
    try:
        assert side.driver.executor.checkout_peak is side.measures.watch.peak_checked_out
        assert not event.contains(side.engine, "checkout", side.measures.watch._on_checkout_peak)
    finally:
        side.close()
    pinged = parse_scenario(BURST + "keepalive: {every: 1s}\n", "burst")
    side = build_pool_side(pinged, url, backend_for(url), "t", lambda t: t)
    try:
        assert side.driver.executor.checkout_peak is None
        assert event.contains(side.engine, "checkout", side.measures.watch._on_checkout_peak)
    finally:
        side.close()
