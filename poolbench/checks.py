"""Thresholds and expectations: conditions on summary figures, e.g. ``timeouts: "== 0"``.

A condition is ``<op> <number>`` (op one of < <= > >= == !=), ``between A and B``
(inclusive), or ``contains 'text'`` for the message figures. A figure that was not
measured (None, e.g. first_timeout_at_s when nothing timed out) fails every
numeric condition, so a threshold can never pass by accident.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from .result import CheckResult, Summary

METRICS: dict[str, str] = {
    "operations": "requests finished, successful or not",
    "ok": "requests that succeeded",
    "throughput": "requests finished per second",
    "timeouts": "QueuePool TimeoutErrors (a caller waited pool_timeout for a connection)",
    "errors": "errors of every kind, timeouts included",
    "disconnects": "errors the dialect treats as a lost connection",
    "too_many_connections": "connections the server refused (MySQL 1040, PostgreSQL 53300)",
    "other_errors": "errors of no other kind",
    "error_rate": "errors / operations",
    "first_timeout_at_s": "seconds into the run of the first TimeoutError",
    "first_timeout_message": "the first TimeoutError's message, verbatim",
    "checkout_wait_mean_ms": "mean time to get a connection from the pool",
    "checkout_wait_p50_ms": "median time to get a connection from the pool",
    "checkout_wait_p90_ms": "90th percentile of the checkout wait",
    "checkout_wait_p99_ms": "99th percentile of the checkout wait",
    "checkout_wait_max_ms": "longest checkout wait",
    "wait_probability": "share of checkouts that waited more than 1 ms (Erlang C's P(wait))",
    "hold_p50_ms": "median time a request held its connection",
    "hold_p99_ms": "99th percentile of the hold time",
    "hold_max_ms": "longest hold time",
    "max_checked_out": "most connections checked out at a sample",
    "max_overflow": "most overflow connections (beyond pool_size) at a sample",
    "max_waiting": "most callers blocked in checkout at a sample",
    "max_server_connections": "most connections of this run the server counted at a sample",
    "max_stale": "most connections the pool held that the server had already closed",
    "leaked": "sessions a request never closed",
    "leaked_at_first_timeout": "sessions leaked before the first TimeoutError",
    "injected_errors": "application errors the scenario injected (error_rate)",
    "keepalive_pings": "queries the keep-alive job ran",
    "keepalive_errors": "keep-alive queries that failed (each one a dead connection found)",
    "dropped_arrivals": "open-loop arrivals dropped because max_concurrency was reached",
    "late_arrivals": "open-loop arrivals started more than 10 ms after their schedule",
    "connects": "new DBAPI connections the pool opened",
    "reconnects": "connects that replaced an earlier connection (invalidated or recycled)",
    "invalidations": "connections the pool invalidated (hard)",
    "recycles": "connections replaced because they were older than pool_recycle",
    "pre_ping_recoveries": "checkouts whose ping failed and were reconnected transparently",
    "gc_returned": "connections returned to the pool by the garbage collector",
    "server_connections_at_exit": "connections of this run the server still showed at exit",
    "leak_suspects": "checkouts held longer than leak_detection (0 when it is off)",
    "first_too_many_connections_at_s": "seconds into the run of the first refused connection",
    "worst_case_connections": "processes x (pool_size + max_overflow): the most the fleet may open",
    "connection_headroom": "connections the server had free at start, less the worst case "
    "(negative: the fleet can exhaust the server)",
}

STRING_METRICS = frozenset({"first_timeout_message"})

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_COMPARE = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_BETWEEN = re.compile(r"^\s*between\s+(-?\d+(?:\.\d+)?)\s+and\s+(-?\d+(?:\.\d+)?)\s*$", re.I)
_CONTAINS = re.compile(r"""^\s*contains\s+(['"])(.*)\1\s*$""", re.I | re.S)


@dataclass(frozen=True)
class Condition:
    """A parsed condition on one figure."""

    metric: str
    text: str
    test: Callable[[object], bool]

    def evaluate(self, figures: dict[str, float | str | None], source: str) -> CheckResult:
        value = figures.get(self.metric)
        return CheckResult(self.metric, self.text, value, bool(self.test(value)), source)


def parse_condition(metric: str, text: object) -> Condition:
    """Parse ``text`` as a condition on ``metric``; ValueError names what is wrong."""
    if metric not in METRICS:
        raise ValueError(f"unknown figure {metric!r}")
    if not isinstance(text, str):
        text = (
            f"== {text}" if isinstance(text, (int, float)) and not isinstance(text, bool) else text
        )
    if not isinstance(text, str):
        raise ValueError(f'expected a condition such as "< 50", got {text!r}')
    if metric in STRING_METRICS:
        match = _CONTAINS.match(text)
        if not match:
            raise ValueError(f"{metric} takes contains 'text', got {text!r}")
        needle = match.group(2)
        return Condition(metric, text, lambda v: isinstance(v, str) and needle in v)
    match = _COMPARE.match(text)
    if match:
        op, bound = _OPS[match.group(1)], float(match.group(2))
        return Condition(metric, text, lambda v: _is_number(v) and op(v, bound))
    match = _BETWEEN.match(text)
    if match:
        low, high = float(match.group(1)), float(match.group(2))
        if low > high:
            raise ValueError(f"between {low:g} and {high:g}: the first bound must be the lower")
        return Condition(metric, text, lambda v: _is_number(v) and low <= v <= high)
    raise ValueError(
        f'expected a condition such as "< 50", ">= 1", "== 0" or "between 10 and 20", got {text!r}'
    )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_conditions(conditions: dict[str, object]) -> list[Condition]:
    return [parse_condition(metric, text) for metric, text in conditions.items()]


def evaluate(summary: Summary, thresholds: list[Condition], expect: list[Condition]) -> None:
    """Fill in ``summary.thresholds`` and ``summary.expectations``."""
    figures = summary.figures()
    summary.thresholds = [c.evaluate(figures, "threshold") for c in thresholds]
    summary.expectations = [c.evaluate(figures, "expect") for c in expect]
