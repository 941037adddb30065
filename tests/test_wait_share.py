"""P(wait) as Erlang C means it (issue 8 §3): a checkout waited when it blocked in the
pool's queue; opening a new connection is not waiting, its time is its own histogram."""

import threading
import time

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from poolbench.engine.pool import PoolWatch
from poolbench.scenario.model import PoolSettings

from .conftest import run_yaml


def test_only_a_checkout_that_blocked_in_the_queue_counts():
    # a real QueuePool (over SQLite, in-process): pure pool logic, no server needed
    engine = sa.create_engine(
        "sqlite://",
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    watch = PoolWatch(engine, PoolSettings(), server_id=lambda conn: None)
    try:
        first = engine.pool.connect()  # opens the one connection: not a wait
        assert watch.queued() == 0
        got = threading.Event()

        def second():
            engine.pool.connect().close()  # finds none idle, no room: blocks
            got.set()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        assert not got.is_set()
        first.close()
        thread.join(5)
        assert got.is_set() and watch.queued() == 1
        engine.pool.connect().close()  # idle connection at once: not a wait
        assert watch.queued() == 1
        assert sum(watch.create_times().values()) == 1  # the one connect, timed
    finally:
        watch.remove()
        engine.dispose()
    assert "wait" not in engine.pool._pool.not_empty.__dict__  # the hook is gone


def test_a_cold_pool_that_never_runs_out_never_waits(db_url):
    # 4 workers, room for 4: no caller can ever find the pool full, but the 4 first
    # checkouts each open a connection (the old "slower than 1 ms" count called it waiting)
    text = """
    name: cold
    pool: {pool_size: 2, max_overflow: 2, pool_timeout: 2s}
    workload: {hold: 20ms, think: 20ms}
    load: {workers: 4}
    duration: 1.5s
    prefill: false
    """
    s = run_yaml(text, db_url).summary
    lat = s.latencies
    assert s.operations > 20 and s.error_count == 0
    assert lat.wait_probability == 0.0
    assert lat.connect_ms is not None and lat.connect_ms.count == s.pool_events.connects >= 1
    assert lat.connect_ms.max > 0


def test_callers_beyond_the_pool_wait_in_its_queue(pg_url):
    text = """
    name: full
    pool: {pool_size: 1, max_overflow: 0, pool_timeout: 2s}
    workload: {hold: 20ms, think: 10ms}
    load: {workers: 3}
    duration: 1.5s
    """
    s = run_yaml(text, pg_url).summary
    assert s.timeouts == 0 and s.operations > 10
    # three callers for one connection: most checkouts find it taken and block
    assert 0.5 <= s.latencies.wait_probability <= 1.0
    assert s.figures()["wait_probability"] == s.latencies.wait_probability


def test_an_async_pool_counts_the_coroutines_that_blocked(pg_url):
    text = """
    name: full-async
    engine: async
    pool: {pool_size: 1, max_overflow: 0, pool_timeout: 2s}
    workload: {hold: 20ms, think: 10ms}
    load: {workers: 3}
    duration: 1.5s
    """
    url = pg_url.replace("+psycopg2", "+asyncpg")
    s = run_yaml(text, url).summary
    assert s.timeouts == 0 and s.operations > 10
    assert 0.5 <= s.latencies.wait_probability <= 1.0
