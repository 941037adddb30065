"""The pool side's pure logic with fakes, no database: merging a fleet's readings and
totals, the timeline, the load drivers (closed and open loop) and a process's share."""

from __future__ import annotations

import dataclasses
import threading
import time
from types import SimpleNamespace

import pytest

from poolbench.db.server import ServerView
from poolbench.engine.load import ClosedLoop, OpenLoop
from poolbench.engine.peaks import Peak
from poolbench.engine.poolside import LoadDriver, share_of
from poolbench.engine.readings import GroupTotals, PoolReading, PoolTotals
from poolbench.engine.sampler import Timeline
from poolbench.metrics.recorder import IntervalStats
from poolbench.result import ErrorExample, ErrorKindStats, Holder, LeakSite, PoolEvents
from poolbench.scenario.model import Phase

# -- merging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [PoolReading, GroupTotals, PoolTotals])
def test_every_field_says_how_it_merges(cls):
    # a field added without a rule would otherwise be silently left out of a fleet's result
    missing = [f.name for f in dataclasses.fields(cls) if "merge" not in f.metadata]
    assert missing == [], f"{cls.__name__}: give these fields a merge rule: {missing}"


def test_interval_stats_merge_sums_every_count():
    names = [f.name for f in dataclasses.fields(IntervalStats) if f.name != "checkout_wait_p99_ms"]
    a = IntervalStats(**{n: i + 1 for i, n in enumerate(names)}, checkout_wait_p99_ms=3.0)
    b = IntervalStats(**{n: 10 * (i + 1) for i, n in enumerate(names)}, checkout_wait_p99_ms=9.0)
    merged = IntervalStats.merged([a, b])
    assert {n: getattr(merged, n) for n in names} == {n: 11 * (i + 1) for i, n in enumerate(names)}
    assert merged.checkout_wait_p99_ms is None  # p99s do not add up; the caller has the waits


def reading(**changes) -> PoolReading:
    values = dict(
        checked_out=2,
        checked_in=1,
        overflow=0,
        waiting=1,
        leaked_open=0,
        leaked=0,
        stats=IntervalStats(operations=10, ok=10, checkout_wait_p99_ms=0.5),
        interval_wait={500: 10},
        events=PoolEvents(connects=3),
        status="",
        open_ids={1, 2},
        server_ids=[1, 2, 3],
    )
    values.update(changes)
    return PoolReading(**values)


def test_a_single_reading_is_its_own_merge():
    only = reading()
    assert PoolReading.merged([only]) is only


def test_readings_merge_gauges_ids_events_and_an_exact_p99():
    a = reading(status="pool a", leaked=1)
    b = reading(
        checked_out=5,
        overflow=2,
        waiting=4,
        leaked_open=3,
        leaked=3,
        stats=IntervalStats(operations=5, ok=3, timeouts=2, errors=2, checkout_wait_p99_ms=900.0),
        interval_wait={900_000: 2, 1_000: 3},
        events=PoolEvents(connects=4, invalidations=1),
        status="pool b",
        open_ids={7},
        server_ids=[7],
    )
    m = PoolReading.merged([a, b])
    assert (m.checked_out, m.checked_in, m.overflow, m.waiting) == (7, 2, 2, 5)
    assert (m.leaked_open, m.leaked) == (3, 4)
    assert (m.stats.operations, m.stats.ok, m.stats.timeouts, m.stats.errors) == (15, 13, 2, 2)
    # 15 waits: ten of 0.5 ms, three of 1 ms, two of 900 ms; the 15th (p99) is 900 ms
    assert m.stats.checkout_wait_p99_ms == 900.0
    assert m.interval_wait == {500: 10, 900_000: 2, 1_000: 3}
    assert m.events == PoolEvents(connects=7, invalidations=1)
    assert m.status == "pool a | pool b"
    assert m.open_ids == {1, 2, 7} and m.server_ids == [1, 2, 3, 7]


def error_kinds(**by_kind: ErrorKindStats) -> dict[str, ErrorKindStats]:
    kinds = {k: ErrorKindStats() for k in ("timeout", "disconnect", "other")}
    kinds.update(by_kind)
    return kinds


def totals(**changes) -> PoolTotals:
    values = dict(
        operations=100,
        ok=90,
        injected=1,
        groups=[
            GroupTotals("web", "closed", 60, 55, 5, 0, {100: 50, 200: 10}, {1000: 55}),
            GroupTotals("batch", "leaky", 40, 35, 5, 2, {300: 40}, {5000: 35}),
        ],
        errors=error_kinds(),
        first_timeout_at_s=None,
        first_timeout_message=None,
        leaked=2,
        leaked_at_first_timeout=None,
        events=PoolEvents(connects=5),
        keepalive_pings=3,
        keepalive_errors=1,
        dropped=4,
        late=2,
        stragglers=1,
        sqlalchemy_messages=[],
        leak_sites=[],
        holders_at_first_timeout=None,
    )
    values.update(changes)
    return PoolTotals(**values)


def test_totals_merge_counts_and_groups_by_position_with_exact_histograms():
    a = totals()
    b = totals(
        operations=50,
        ok=50,
        injected=0,
        groups=[
            GroupTotals("web", "closed", 30, 30, 0, 0, {100: 30}, {1000: 30}),
            GroupTotals("batch", "leaky", 20, 20, 0, 1, {300: 20}, {7000: 20}),
        ],
    )
    m = PoolTotals.merged([a, b])
    assert (m.operations, m.ok, m.injected, m.leaked) == (150, 140, 1, 4)
    assert (m.keepalive_pings, m.keepalive_errors, m.dropped, m.late, m.stragglers) == (
        6,
        2,
        8,
        4,
        2,
    )
    assert m.events == PoolEvents(connects=10)
    web, batch = m.groups
    assert (web.name, web.session, web.operations, web.ok, web.errors) == (
        "web",
        "closed",
        90,
        85,
        5,
    )
    assert web.wait == {100: 80, 200: 10} and web.hold == {1000: 85}
    assert batch.leaked == 3 and batch.hold == {5000: 35, 7000: 20}
    histograms = m.group_histograms()
    assert [h.name for h in histograms] == ["web", "batch"]
    assert histograms[0].wait.count == 90 and histograms[1].hold.percentiles().max == 7.0
    summaries = m.group_summaries()
    assert summaries[0].checkout_wait_ms.count == 90 and summaries[1].leaked == 3
    # the parts are left as they were
    assert a.groups[0].wait == {100: 50, 200: 10}


def test_totals_merge_takes_the_first_timeout_from_the_earliest_part():
    late = totals(
        first_timeout_at_s=4.0,
        first_timeout_message="late",
        leaked_at_first_timeout=9,
        holders_at_first_timeout=[Holder("b.py:1", 9, 3.0)],
    )
    early = totals(
        first_timeout_at_s=1.5,
        first_timeout_message="early",
        leaked_at_first_timeout=2,
        holders_at_first_timeout=[Holder("a.py:1", 2, 1.0)],
    )
    m = PoolTotals.merged([totals(), late, early])
    assert (m.first_timeout_at_s, m.first_timeout_message, m.leaked_at_first_timeout) == (
        1.5,
        "early",
        2,
    )
    assert m.holders_at_first_timeout == [Holder("a.py:1", 2, 1.0)]
    none = PoolTotals.merged([totals(), totals()])
    assert none.first_timeout_at_s is None and none.holders_at_first_timeout is None


def test_totals_merge_error_examples_leak_sites_and_sqlalchemy_messages():
    e1 = ErrorExample("08006", "connection lost", 2, 3.0)
    e2 = ErrorExample(None, "QueuePool limit reached", 1, 1.0)
    a = totals(
        errors=error_kinds(timeout=ErrorKindStats(3, 2.0, [e1])),
        leak_sites=[LeakSite("app.py:10", ["app.py:10"], 2, 1.5, 1)],
        sqlalchemy_messages=[ErrorExample(None, "Exception during reset", 1, 0.5)],
    )
    b = totals(
        errors=error_kinds(timeout=ErrorKindStats(4, 0.8, [e2, dataclasses.replace(e1, count=5)])),
        leak_sites=[
            LeakSite("app.py:10", ["app.py:10"], 3, 4.0, 2),
            LeakSite("job.py:3", ["job.py:3"], 9, 0.5, 0),
        ],
        sqlalchemy_messages=[ErrorExample(None, "Exception during reset", 4, 0.7)],
    )
    m = PoolTotals.merged([a, b])
    timeout = m.errors["timeout"]
    assert (timeout.count, timeout.first_at_s) == (7, 0.8)
    assert [(e.message, e.count) for e in timeout.examples] == [
        ("QueuePool limit reached", 1),
        ("connection lost", 7),
    ]
    assert set(m.errors) == set(a.errors)
    assert [(s.site, s.count, s.longest_hold_s, s.held_at_end) for s in m.leak_sites] == [
        ("job.py:3", 9, 0.5, 0),
        ("app.py:10", 5, 4.0, 3),
    ]
    assert [(x.message, x.count) for x in m.sqlalchemy_messages] == [("Exception during reset", 5)]
    assert a.leak_sites[0].count == 2 and e1.count == 2  # the parts are not modified


# -- the timeline -----------------------------------------------------------------------------


def test_timeline_turns_cumulative_events_into_per_interval_counts_and_keeps_maxima():
    timeline = Timeline(duration_s=3.0)
    first = reading(
        events=PoolEvents(connects=3, recycles=1), stats=IntervalStats(10, 9, 0, 1, 0, 1)
    )
    second = reading(
        checked_out=6,
        overflow=2,
        waiting=3,
        events=PoolEvents(connects=5, recycles=1, invalidations=2),
        stats=IntervalStats(operations=4, ok=4),
        status="Pool size: 5",
    )
    s1 = timeline.add(1.0004, "warm", first, 0.5, None, None)
    view = ServerView({"total": 7, "idle": 2}, frozenset({1}))
    s2 = timeline.add(2.0, "peak", second, 12.0, view, 1)
    assert (s1.t_s, s1.phase, s1.connects, s1.recycles, s1.timeouts) == (1.0, "warm", 3, 1, 1)
    assert s1.server_connections is None and s1.pool_status is None
    assert (s2.connects, s2.recycles, s2.invalidations) == (2, 0, 2)
    assert s2.server_connections == {"total": 7, "idle": 2} and s2.stale == 1
    assert s2.checkout_wait_p99_ms == 12.0 and s2.pool_status == "Pool size: 5"
    assert (timeline.operations, timeline.ok, timeline.timeouts, timeline.errors) == (14, 13, 1, 1)
    m = timeline.maxima
    assert (m.checked_out, m.overflow, m.waiting, m.server, m.stale) == (6, 2, 3, 7, 1)
    assert timeline.samples == [s1, s2]


def test_timeline_progress_shows_recent_throughput():
    timeline = Timeline(duration_s=20.0)
    for t in range(1, 11):
        ops = 100 if t <= 5 else 10  # a collapse after 5 s
        timeline.add(
            float(t), "", reading(stats=IntervalStats(operations=ops, ok=ops)), None, None, None
        )
        progress = timeline.progress(float(t), "", reading(leaked=2), (1.5, "first"))
    assert progress.operations == 550 and progress.elapsed_s == 10.0
    assert progress.duration_s == 20.0 and progress.leaked == 2
    assert progress.first_timeout_at_s == 1.5 and progress.first_timeout_message == "first"
    # over the last ~5 s only: the collapse shows, the whole-run mean (55/s) would hide it
    assert progress.throughput_ops_s == pytest.approx(10.0)


# -- the load drivers, with a fake executor ---------------------------------------------------


class FakeExecutor:
    """Stands in for RequestExecutor: records who served what, optionally blocks."""

    def __init__(self, delay: float = 0.001, fail: bool = False) -> None:
        self.engine = None
        self.halted = False
        self.started_at = 0.0
        self.timer = None
        self.waiting = Peak()
        self.delay = delay
        self.fail = fail
        self.gate: threading.Event | None = None
        self.served: list[int] = []
        self.unexpected_errors: list[BaseException] = []
        self._lock = threading.Lock()

    def run(self, worker, plan) -> None:
        with self._lock:
            self.served.append(worker.index)
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("a bug in a request")

    def unexpected(self, plan, exc) -> None:
        self.unexpected_errors.append(exc)


PLAN = SimpleNamespace(group=SimpleNamespace(share=1.0), has_think=False)


def closed_loop(executor: FakeExecutor, threads: int = 3) -> ClosedLoop:
    return ClosedLoop(
        executor=executor, plans=[PLAN], threads=threads, seed=1, stop=threading.Event()
    )


def open_loop(executor: FakeExecutor, threads: int) -> OpenLoop:
    return OpenLoop(
        executor=executor, plans=[PLAN], threads=threads, seed=1, stop=threading.Event()
    )


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_closed_loop_runs_only_the_phase_s_workers_and_stops_cleanly():
    executor = FakeExecutor()
    driver = closed_loop(executor)
    driver.start(t0=12.5)
    assert executor.started_at == 12.5
    time.sleep(0.1)
    assert executor.served == []  # nothing is sent before the first phase
    driver.set_phase(Phase(duration=1, workers=2))
    wait_until(lambda: len(executor.served) > 20)
    driver.set_phase(Phase(duration=1, workers=3))
    wait_until(lambda: 2 in executor.served)
    driver.set_phase(Phase(duration=1, workers=1))
    time.sleep(0.05)
    seen = len(executor.served)
    time.sleep(0.1)
    assert set(executor.served[seen:]) == {0}
    assert set(executor.served[:seen]) == {0, 1, 2}
    driver.halt()
    assert executor.halted
    assert driver.join(2.0) == 0
    assert (driver.dropped, driver.late) == (0, 0)


def test_a_failing_request_is_reported_and_its_worker_goes_on():
    executor = FakeExecutor(fail=True)
    driver = closed_loop(executor, threads=1)
    driver.start(0.0)
    driver.set_phase(Phase(duration=1, workers=1))
    wait_until(lambda: len(executor.unexpected_errors) >= 3)
    driver.halt()
    assert driver.join(2.0) == 0
    assert all(str(e) == "a bug in a request" for e in executor.unexpected_errors)


def test_both_threaded_drivers_are_load_drivers():
    assert isinstance(closed_loop(FakeExecutor()), LoadDriver)
    assert isinstance(open_loop(FakeExecutor(), threads=2), LoadDriver)
    assert not isinstance(object(), LoadDriver)


def test_waiting_counts_callers_in_checkout_or_the_pool_s_timer():
    executor = FakeExecutor()
    driver = closed_loop(executor, threads=4)
    assert driver.waiting() == 0
    # as RequestExecutor.run does: a worker's flag and the count move together
    driver.workers[1].in_checkout = driver.workers[3].in_checkout = True
    executor.waiting.up()
    executor.waiting.up()
    driver.workers[3].in_checkout = False
    executor.waiting.down()
    assert driver.waiting() == 1
    assert driver.peak_waiting() == 2 and driver.peak_waiting() == 1
    executor.waiting.up()  # a count that drifted from the flags is set right at a sample
    assert driver.peak_waiting() == 2 and driver.waiting() == 1
    in_flight = Peak()
    for _ in range(5):
        in_flight.up()
    executor.timer = SimpleNamespace(in_flight=in_flight)  # tasks opening their own sessions
    assert driver.waiting() == 5


def test_open_loop_drops_arrivals_with_no_free_worker():
    executor = FakeExecutor()
    executor.gate = threading.Event()  # the one worker stays busy
    driver = open_loop(executor, threads=1)
    driver.start(0.0)
    driver.set_phase(Phase(duration=1, rate=400))
    wait_until(lambda: driver.dropped >= 20)
    assert executor.served == [0]
    executor.gate.set()
    driver.halt()
    assert driver.join(2.0) == 0


def test_open_loop_sends_about_rate_times_duration_and_nothing_at_rate_zero():
    executor = FakeExecutor(delay=0.0)
    driver = open_loop(executor, threads=4)
    driver.start(0.0)
    driver.set_phase(Phase(duration=1, rate=0))
    time.sleep(0.2)
    assert executor.served == []
    driver.set_phase(Phase(duration=1, rate=100))
    time.sleep(1.0)
    driver.set_phase(Phase(duration=1, rate=0))
    arrivals = len(executor.served) + driver.dropped
    driver.halt()
    assert driver.join(2.0) == 0
    # Poisson with a mean of 100: far outside [50, 160] only if the driver is wrong
    assert 50 <= arrivals <= 160, arrivals


# -- a process's share of a phase -------------------------------------------------------------


@pytest.mark.parametrize(("workers", "count"), [(7, 3), (2, 4), (9, 1), (0, 2)])
def test_share_of_splits_workers_as_evenly_as_possible(workers, count):
    phase = Phase(name="p", duration=5, workers=workers)
    shares = [share_of(phase, (i, count)).workers for i in range(count)]
    assert sum(shares) == workers
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the first processes take the remainder


def test_share_of_divides_the_rate_and_keeps_the_rest():
    phase = Phase(name="burst", duration=5, rate=90)
    part = share_of(phase, (2, 3))
    assert (part.rate, part.workers, part.name, part.duration) == (30, None, "burst", 5)
    assert share_of(phase, (0, 1)) is phase


def test_garbage_is_collected_on_the_event_loops_thread_only():
    """A dropped AsyncSession's connection is terminated where the collection runs: with a
    loop running, cycles made and dropped by another thread are reclaimed on the loop."""
    import gc
    import threading
    import time

    from poolbench.engine.async_load import EventLoopThread

    seen: list[str] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            seen.append(threading.current_thread().name)

    was_enabled = gc.isenabled()
    gc.enable()
    gc.collect()
    loop = EventLoopThread("test-loop")
    try:
        assert not gc.isenabled()
        for _ in range(5000):  # enough cycles to pass the youngest generation's threshold
            Cycle()
        deadline = time.monotonic() + 5
        while len(seen) < 4000 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    assert gc.isenabled()
    if not was_enabled:
        gc.disable()
    assert len(seen) >= 4000 and set(seen) == {"test-loop"}


def test_http_facts_travel_in_the_records_and_merge_by_endpoint():
    """An endpoint's statuses and latency are counted as its records are drained (so
    they cover exactly the requests the operations do), and a fleet's add up by name."""
    from poolbench.engine.readings import EndpointTotals, _endpoints
    from poolbench.metrics.recorder import OK, TIMEOUT, Recorder

    recorder = Recorder()
    recorder.finished(0, OK, 10, 900, False, None, ("200", 1_000))
    recorder.finished(0, OK, 10, 900, False, None, ("200", 1_000))
    recorder.finished(
        0, TIMEOUT, 500_000, 0, False, ("timeout", None, "QueuePool limit", 0.6), ("500", 501_000)
    )
    recorder.finished(1, OK, 5, 5, False)  # a group without http:
    assert len(recorder.drain()) == 4
    http = recorder.http
    assert http.statuses == {0: {"200": 2, "500": 1}} and http.pool_timeouts[0] == 1
    assert http.latency_us[0] == {1_000: 2, 501_000: 1}
    assert recorder.errors.kinds["timeout"].count == 1

    a = SimpleNamespace(endpoints=[EndpointTotals("GET /a", {"200": 2}, 0, {1_000: 2})])
    b = SimpleNamespace(
        endpoints=[
            EndpointTotals("GET /a", {"200": 1, "500": 1}, 1, {1_000: 1, 501_000: 1}),
            EndpointTotals("GET /b", {"200": 1}, 0, {2_000: 1}),
        ]
    )
    merged = {e.name: e for e in _endpoints([a, b], "endpoints")}
    assert merged["GET /a"].statuses == {"200": 3, "500": 1} and merged["GET /a"].pool_timeouts == 1
    summary = merged["GET /a"].summary()
    assert summary.requests == 4 and summary.latency_ms.count == 4
    assert summary.latency_ms.max == 501.0
    assert merged["GET /b"].summary().statuses == {"200": 1}
