"""Recording and folding measurements (pure logic, no database)."""

import threading

from poolbench.metrics.histogram import LatencyHistogram
from poolbench.metrics.recorder import INJECTED, OK, OUTCOME, Aggregator, ErrorLog, Recorder


def test_histogram_percentiles_in_ms():
    h = LatencyHistogram()
    for micros in range(1, 10_001):
        h.record(micros)
    p = h.percentiles()
    assert p.count == 10_000
    assert abs(p.p50 - 5.0) < 0.01 and abs(p.p99 - 9.9) < 0.02 and abs(p.max - 10.0) < 0.02


def test_histogram_survives_out_of_range_values_and_round_trips():
    h = LatencyHistogram()
    h.record(0)
    h.record(10**12)
    assert h.count == 2
    copy = LatencyHistogram()
    copy.record_counts(h.to_counts())
    assert copy.percentiles() == h.percentiles()
    assert LatencyHistogram().percentiles().p99 is None


def test_histograms_merge_exactly():
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in range(1, 500):
        a.record(v)
        both.record(v)
    for v in range(500, 2000):
        b.record(v)
        both.record(v)
    a.add(b)
    assert a.percentiles() == both.percentiles()


def test_error_log_counts_kinds_and_keeps_first_examples():
    log = ErrorLog()
    assert log.first_timeout(3.0, "QueuePool limit ...") is True  # as it happens
    assert log.first_timeout(3.5, "QueuePool limit ...") is False
    log.record("timeout", "3o7r", "QueuePool limit ...", 3.0)
    log.record("timeout", "3o7r", "QueuePool limit ...", 3.5)
    for i in range(10):
        log.record("disconnect", "2013", f"Lost connection {i}", 4.0 + i)
    snap = log.snapshot()
    assert snap["timeout"].count == 2 and snap["timeout"].examples[0].count == 2
    assert snap["disconnect"].count == 10 and len(snap["disconnect"].examples) == 5
    assert (log.first_timeout_at_s, log.first_timeout_message) == (3.0, "QueuePool limit ...")


def test_aggregator_folds_intervals_and_totals():
    rec = Recorder()
    agg = Aggregator([("a", "closed"), ("b", "leaky")])
    rec.finished(0, OK, 100, 2000)
    rec.finished(1, OK, 200, 3000, leaked=True)
    rec.finished(1, OUTCOME["timeout"], 3_000_000, 0)
    rec.finished(0, INJECTED, 100, 1000)
    first, _ = agg.absorb(rec.drain())
    assert (first.operations, first.ok, first.timeouts, first.errors, first.injected) == (
        4,
        2,
        1,
        1,
        1,
    )
    assert first.checkout_wait_p99_ms > 2900
    second, _ = agg.absorb(rec.drain())
    assert second.operations == 0 and second.checkout_wait_p99_ms is None
    groups = agg.groups
    assert sum(g.wait.count for g in groups) == 4
    assert sum(g.hold.count for g in groups) == 3  # the timed-out request held nothing
    assert [(g.operations, g.ok, g.errors, g.leaked) for g in groups] == [
        (2, 1, 0, 0),
        (2, 1, 1, 1),
    ]


def test_recorder_is_safe_from_many_threads():
    rec = Recorder()

    def work():
        for _ in range(5000):
            rec.finished(0, OK, 1, 1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    drained = 0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        drained += len(rec.drain())
    drained += len(rec.drain())
    assert drained == 40_000


def test_percentiles_of_counts_are_exact():
    from poolbench.metrics.histogram import percentile_of_counts

    counts = {100: 98, 5000: 1, 9000: 1}  # 100 values: p99 is the 99th smallest
    assert percentile_of_counts(counts, 99) == 5.0
    assert percentile_of_counts(counts, 50) == 0.1
    assert percentile_of_counts(counts, 100) == 9.0
    assert percentile_of_counts({}, 99) is None


def test_recording_counts_equals_recording_one_by_one():
    from collections import Counter

    values = [v % 997 * 13 + 1 for v in range(5000)]
    one, many = LatencyHistogram(), LatencyHistogram()
    for v in values:
        one.record(v)
    many.record_counts(Counter(values))
    assert one.percentiles() == many.percentiles()


def test_memory_is_bounded_and_precision_kept_on_long_runs():
    import random

    rng = random.Random(1)
    h = LatencyHistogram()
    exact = []
    for _ in range(20):
        batch = [int(rng.expovariate(1 / 50_000)) + 1 for _ in range(5_000)]
        h.record_many(batch)
        exact += batch
    assert len(h.to_counts()) <= 20_000 + 5_000
    exact.sort()
    p = h.percentiles()
    assert p.count == len(exact)
    true_p99 = exact[-(-len(exact) * 99 // 100) - 1] / 1000
    assert abs(p.p99 - true_p99) / true_p99 < 0.002  # 3 significant digits


def test_errors_are_counted_with_the_records_that_carry_them():
    # an error is logged when its request's record is folded in, never before: a request
    # that ends after the last drain is in neither the operations nor the errors
    rec = Recorder()
    agg = Aggregator([("a", "closed")])
    rec.finished(0, OUTCOME["other"], 10, 0, error=("other", "42P01", "no such table", 0.1))
    assert rec.errors.snapshot()["other"].count == 0
    agg.absorb(rec.drain())
    rec.finished(0, OUTCOME["other"], 10, 0, error=("other", "42P01", "no such table", 0.2))
    assert rec.errors.snapshot()["other"].count == agg.operations == 1
