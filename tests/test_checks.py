"""Thresholds and expectations: parsing and evaluation (pure logic)."""

import pytest

from poolbench import checks
from poolbench.result import (
    ERROR_KINDS,
    ErrorKindStats,
    Errors,
    Latencies,
    Leaks,
    Peaks,
    Percentiles,
    PoolEvents,
    Summary,
)


def summary(**overrides) -> Summary:
    fields = dict(
        duration_s=10.0,
        operations=100,
        ok=90,
        throughput_ops_s=10.0,
        errors=Errors(
            timeouts=10,
            first_timeout_at_s=3.0,
            first_timeout_message="QueuePool limit of size 5 overflow 10 reached, connection "
            "timed out, timeout 3.00",
            kinds={k: ErrorKindStats() for k in ERROR_KINDS},
            injected=0,
        ),
        latencies=Latencies(
            checkout_wait_ms=Percentiles(count=100, p50=1.0, p90=2.0, p99=40.0, max=3000.0),
            hold_ms=Percentiles(),
            wait_probability=0.1,
        ),
        peaks=Peaks(checked_out=15, overflow=10, waiting=5, server_connections=15, stale=0),
        leaks=Leaks(sessions=15, at_first_timeout=15),
        keepalive_pings=0,
        keepalive_errors=0,
        dropped_arrivals=0,
        late_arrivals=0,
        pool_events=PoolEvents(),
        sqlalchemy_warnings=[],
        groups=[],
    )
    fields["errors"]["timeout"].count = 10
    first_timeout_at_s = overrides.pop("first_timeout_at_s", 3.0)
    fields["errors"].first_timeout_at_s = first_timeout_at_s
    fields.update(overrides)
    return Summary(**fields)


@pytest.mark.parametrize(
    ("metric", "condition", "ok"),
    [
        ("timeouts", "== 10", True),
        ("timeouts", "== 0", False),
        ("timeouts", "> 0", True),
        ("checkout_wait_p99_ms", "< 50", True),
        ("checkout_wait_p99_ms", "<= 39.9", False),
        ("max_checked_out", "between 14 and 16", True),
        ("max_checked_out", "!= 15", False),
        ("leaked", ">= 15", True),
        ("timeouts", 10, True),
        ("first_timeout_message", "contains 'overflow 10 reached'", True),
        ("first_timeout_message", 'contains "timeout 30.00"', False),
        ("errors", "== 10", True),
    ],
)
def test_conditions(metric, condition, ok):
    (result,) = [checks.parse_condition(metric, condition).evaluate(summary().figures(), "t")]
    assert result.ok is ok


def test_unmeasured_figure_fails_every_numeric_condition():
    s = summary(first_timeout_at_s=None)
    for condition in ("< 100", "> 0", "!= 5", "between 0 and 1000"):
        assert (
            not checks.parse_condition("first_timeout_at_s", condition)
            .evaluate(s.figures(), "t")
            .ok
        )


@pytest.mark.parametrize(
    ("metric", "condition", "message"),
    [
        ("timeout", "== 0", "unknown figure 'timeout'"),
        ("timeouts", "=< 0", "expected a condition"),
        ("timeouts", "between 5 and 1", "the first bound must be the lower"),
        ("first_timeout_message", "== 3", "takes contains 'text'"),
    ],
)
def test_bad_conditions(metric, condition, message):
    with pytest.raises(ValueError, match=message):
        checks.parse_condition(metric, condition)


def test_every_figure_is_documented_and_every_documented_figure_exists():
    assert set(summary().figures()) == set(checks.METRICS)


def test_evaluate_sets_passed():
    s = summary()
    checks.evaluate(
        s, checks.parse_conditions({"timeouts": "== 0"}), checks.parse_conditions({"leaked": "> 0"})
    )
    assert [c.ok for c in s.thresholds] == [False]
    assert [c.ok for c in s.expectations] == [True]
    assert not s.passed
    assert s.to_dict()["passed"] is False
