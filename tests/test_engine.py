"""The engine against the real PostgreSQL and MariaDB: every session behaviour, both load
models, and the promise that nothing is left connected afterwards."""

import _thread
import threading

import sqlalchemy as sa

from poolbench.engine.runner import RunOptions

from .conftest import Canary, run_yaml, server_connection_count

SMALL_POOL = """
name: t
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.5s}
load: {workers: 5}
duration: 2s
interval: 250ms
seed: 1
"""


def test_leaky_sessions_drain_the_pool_and_time_out(db_url):
    canary = Canary()
    result = run_yaml(SMALL_POOL + "workload: {session: leaky, hold: 5ms}", db_url, observer=canary)
    s = result.summary
    assert s.peaks.checked_out == 3 and s.peaks.overflow == 1
    assert s.leaks.sessions == 3 and s.leaks.at_first_timeout == 3
    assert s.timeouts >= 1 and s.errors["timeout"].count == s.timeouts
    assert s.first_timeout_message.startswith(
        "QueuePool limit of size 2 overflow 1 reached, connection timed out, timeout 0.50"
    )
    assert 0.4 < s.first_timeout_at_s < 1.5
    assert s.latencies.checkout_wait_ms.max >= 500
    assert s.peaks.waiting >= 2  # the workers whose requests could not get a connection
    assert s.peaks.server_connections == 3  # the server saw exactly the pool's connections
    assert s.server.connections_at_exit == 0 and s.server.terminated_at_exit == 0
    assert canary.names()[0] == "started" and "first_timeout" in canary.names()
    assert canary.names()[-1] == "finished"
    assert result.timeline[-1].t_s == 2.0


def test_closed_sessions_never_time_out(db_url):
    # Think time matters: QueuePool is not FIFO-fair, and a worker that asks again the
    # instant it returns a connection can starve a waiter all the way to pool_timeout.
    text = SMALL_POOL.replace("pool_timeout: 0.5s", "pool_timeout: 2s").replace(
        "workers: 5", "workers: 4"
    )
    result = run_yaml(text + "workload: {session: closed, hold: 5ms, think: 5ms}", db_url)
    s = result.summary
    assert s.timeouts == 0 and s.error_count == 0 and s.leaks.sessions == 0
    assert s.operations > 50 and s.ok == s.operations
    assert 1 <= s.peaks.checked_out <= 3
    assert s.latencies.hold_ms.p50 >= 5
    assert s.server.connections_at_exit == 0


def test_leak_hold_releases_leaked_sessions(db_url):
    text = SMALL_POOL.replace("pool_timeout: 0.5s", "pool_timeout: 2s") + (
        "workload: {session: leaky, hold: 5ms, leak_hold: 200ms}"
    )
    s = run_yaml(text, db_url).summary
    assert s.timeouts == 0
    assert s.leaks.sessions > 3  # more leaks than the pool holds: each was released after 200 ms


def test_unclosed_sessions_come_back_through_the_garbage_collector(db_url):
    s = run_yaml(SMALL_POOL + "workload: {session: unclosed, hold: 5ms}", db_url).summary
    assert s.leaks.sessions >= 3
    # whatever the collector did not return during the run, the final collection did
    assert s.pool_events.gc_returned >= 3
    assert s.server.connections_at_exit == 0


def test_leak_on_error_leaks_exactly_the_failed_requests(db_url):
    text = SMALL_POOL + "workload: {session: leak_on_error, error_rate: 0.3, hold: 5ms}"
    s = run_yaml(text, db_url).summary
    assert s.injected_errors >= 1
    assert s.leaks.sessions == s.injected_errors
    assert s.error_count == s.timeouts  # injected errors are not database errors


def test_groups_share_the_traffic(db_url):
    text = (
        SMALL_POOL.replace("pool_size: 2", "pool_size: 5")
        + """
workload:
  - {name: big, share: 80%, session: closed}
  - {name: small, share: 20%, session: closed}
"""
    )
    groups = run_yaml(text, db_url).summary.groups
    big, small = (g.operations for g in groups)
    assert big > 2 * small > 0


def test_open_loop_follows_its_phases(db_url):
    text = """
name: t
pool: {pool_size: 3, max_overflow: 0, pool_timeout: 1s}
workload: {session: closed}
load: {rate: 100/s, max_concurrency: 10}
phases:
  - {name: busy, duration: 1s}
  - {name: quiet, duration: 1s, rate: 0}
interval: 250ms
seed: 2
"""
    result = run_yaml(text, db_url)
    s = result.summary
    assert 50 <= s.operations <= 160  # Poisson: ~100 in the first second
    quiet = [x for x in result.timeline if x.phase == "quiet" and x.t_s >= 1.5]
    assert quiet and all(x.operations == 0 for x in quiet)
    assert s.dropped_arrivals == 0


def test_server_side_hold_shows_active_connections(db_url):
    text = SMALL_POOL.replace("workers: 5", "workers: 2") + (
        "workload: {session: closed, hold: 100ms, hold_in: server}"
    )
    result = run_yaml(text, db_url)
    assert result.summary.latencies.hold_ms.p50 >= 95
    assert any((x.server_connections or {}).get("active", 0) >= 1 for x in result.timeline)


def test_nullpool_connects_for_every_request(db_url):
    text = SMALL_POOL + "workload: {session: closed}"
    s = run_yaml(text, db_url, overrides=("pool.poolclass=NullPool",)).summary
    assert s.ok > 10
    assert s.pool_events.connects >= s.ok
    assert s.peaks.overflow == 0 and s.timeouts == 0
    assert s.server.connections_at_exit == 0


def test_samples_are_consistent(db_url):
    result = run_yaml(
        SMALL_POOL + "workload: {session: leaky, hold: 5ms}",
        db_url,
        options=RunOptions(verbose=True),
    )
    for x in result.timeline:
        assert 0 <= x.checked_out <= 3 and x.overflow >= 0 and x.waiting >= 0
        assert x.checked_in + x.checked_out <= 3
        assert x.pool_status and "Pool size: 2" in x.pool_status
    assert sum(x.operations for x in result.timeline) == result.summary.operations


def test_ctrl_c_stops_cleanly_and_keeps_the_measurements(db_url):
    text = SMALL_POOL.replace("duration: 2s", "duration: 30s") + (
        "workload: {session: leaky, hold: 5ms}"
    )
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    try:
        result = run_yaml(text, db_url)
    finally:
        timer.cancel()
    assert result.interrupted
    assert 1.0 < result.summary.duration_s < 5
    assert result.summary.leaks.sessions == 3 and result.summary.peaks.checked_out == 3
    assert result.summary.server.connections_at_exit == 0


def test_stuck_requests_are_ended_on_the_server_and_others_are_left_alone(
    db_url, outside_connection
):
    text = SMALL_POOL.replace("duration: 2s", "duration: 1s") + (
        "workload: {session: closed, hold: 20s, hold_in: server}"
    )
    result = run_yaml(text, db_url, options=RunOptions(grace_s=0.5))
    s = result.summary
    assert s.server.terminated_at_exit == 3 and s.server.connections_at_exit == 0
    assert "3 requests still held a connection 0.5s after the end" in result.notes[0]
    # the connection poolbench did not open is alive and well
    assert outside_connection.execute(sa.text("SELECT 1")).scalar() == 1


def test_no_connection_of_a_run_outlives_it(pg_url):
    before = server_connection_count(pg_url)
    result = run_yaml(SMALL_POOL + "workload: {session: leaky}", pg_url)
    assert server_connection_count(pg_url, f"poolbench-{result.run_id}%") == 0
    assert server_connection_count(pg_url) == before
