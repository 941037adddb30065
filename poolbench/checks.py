"""Thresholds and expectations: conditions on summary figures, e.g. ``timeouts: "== 0"``.

A condition is ``<op> <number>`` (op one of < <= > >= == !=), ``between A and B``
(inclusive), or ``contains 'text'`` for the message figures. A figure that was not
measured (None, e.g. first_timeout_at_s when nothing timed out) fails every
numeric condition, so a threshold can never pass by accident.

Work that fails fails the run, thresholds or not: errors of a kind the scenario did not
set out to cause (see :func:`failed_work`) add a check of their own, ``unexpected_errors
== 0`` (source ``default``), unless the scenario names what it tolerates.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

from .result import CheckResult, Summary

if TYPE_CHECKING:
    from .scenario.model import Faults

METRICS: dict[str, str] = {
    "operations": "requests finished, successful or not",
    "ok": "requests that succeeded",
    "throughput": "requests finished per second",
    "timeouts": "QueuePool TimeoutErrors (a caller waited pool_timeout for a connection)",
    "errors": "errors of every kind, timeouts included",
    "disconnects": "errors the dialect treats as a lost connection",
    "too_many_connections": "connections the server refused (MySQL 1040, PostgreSQL 53300)",
    "other_errors": "errors of no other kind",
    "cancelled": "requests cancelled mid-flight (cancel_after, async engines)",
    "cancelled_returned": "cancelled requests whose connection went back to the pool",
    "cancelled_invalidated": "cancelled requests whose connection was invalidated",
    "cancelled_checked_out": "cancelled requests whose connection was still checked out "
    "when the request ended",
    "cancelled_in_checkout": "requests cancelled while waiting for a connection",
    "error_rate": "errors / operations",
    "first_timeout_at_s": "seconds into the run of the first TimeoutError",
    "first_timeout_message": "the first TimeoutError's message, verbatim",
    "checkout_wait_mean_ms": "mean time to get a connection from the pool",
    "checkout_wait_p50_ms": "median time to get a connection from the pool",
    "checkout_wait_p90_ms": "90th percentile of the checkout wait",
    "checkout_wait_p99_ms": "99th percentile of the checkout wait",
    "checkout_wait_max_ms": "longest checkout wait",
    "wait_probability": "share of checkouts that blocked in the pool's queue: no idle connection "
    "and no room to open one (Erlang C's P(wait))",
    "hold_p50_ms": "median time a request held its connection",
    "hold_p99_ms": "99th percentile of the hold time",
    "hold_max_ms": "longest hold time",
    "max_checked_out": "most connections checked out at once (exact, at every checkout)",
    "max_overflow": "most overflow connections (beyond pool_size) at once (exact)",
    "max_waiting": "most callers in checkout at once (exact, counted as they enter and leave)",
    "max_connections_open": "most connections the pool held open at once (exact, at every connect)",
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
    "gc_returned": "connections returned to the pool by the garbage collector (an async "
    "engine's collector terminates them instead, freeing the slot)",
    "sqlalchemy_messages": "warnings and errors SQLAlchemy itself logged during the run",
    "sqlalchemy_said": "what SQLAlchemy logged and warned, verbatim (one message a line)",
    "server_connections_at_exit": "connections of this run the server still showed at exit",
    "leak_suspects": "checkouts held longer than leak_detection (0 when it is off)",
    "first_too_many_connections_at_s": "seconds into the run of the first refused connection",
    "worst_case_connections": "processes x (pool_size + max_overflow): the most the fleet may open",
    "connection_headroom": "connections the server had free at start, less the worst case "
    "(negative: the fleet can exhaust the server)",
}

STRING_METRICS = frozenset({"first_timeout_message", "sqlalchemy_said"})

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


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_conditions(conditions: dict[str, object]) -> list[Condition]:
    return [parse_condition(metric, text) for metric, text in conditions.items()]


# The figures that say what a scenario tolerates of one error kind; naming one of them
# (in thresholds or expect) is the scenario's own rule for that kind.
KIND_FIGURES: dict[str, frozenset[str]] = {
    "other": frozenset({"other_errors"}),
    "disconnect": frozenset({"disconnects"}),
    "too_many_connections": frozenset({"too_many_connections", "first_too_many_connections_at_s"}),
}
# Naming one of these states the rule for every kind at once.
ALL_KINDS_FIGURES = frozenset({"errors", "error_rate"})
UNEXPECTED = "unexpected_errors"


def expected_errors(faults: Faults) -> list[str]:
    """Error kinds a scenario's faults set out to cause: a killed connection or a server
    that closes idle ones is a disconnect; a restarted server also refuses connections
    while it is down."""
    kinds = []
    if faults.kill or faults.server_idle_timeout or faults.restart:
        kinds.append("disconnect")
    if faults.restart:
        kinds.append("other")  # connection refused while the server is down
    return kinds


def untolerated_kinds(named: set[str], expected: list[str]) -> list[str]:
    """The error kinds that fail the run when any request meets them: every kind but
    pool timeouts (what poolbench sets out to show) and injected errors (their own
    outcome), less those the faults cause and those whose figures the checks name."""
    if named & ALL_KINDS_FIGURES:
        return []
    return [
        kind
        for kind, figures in KIND_FIGURES.items()
        if kind not in expected and not (figures & named)
    ]


def failed_work(summary: Summary, kinds: list[str]) -> CheckResult | None:
    """The ``unexpected_errors == 0`` check, when requests met errors of ``kinds``."""
    count = sum(summary.errors[kind].count for kind in kinds)
    if not count:
        return None
    return CheckResult(UNEXPECTED, "== 0", count, False, "default")


def failure_line(summary: Summary) -> str | None:
    """One line for a run failed by its own work: how many, and the first message."""
    check = next((c for c in summary.thresholds if c.source == "default"), None)
    if check is None:
        return None
    examples = [
        example
        for kind, stats in summary.errors.items()
        if kind != "timeout"
        for example in stats.examples
    ]
    first = min(examples, key=lambda e: e.first_at_s, default=None)
    line = f"{check.value} of {summary.operations} requests failed"
    return f"{line}: {first.message}" if first is not None else line


def failed_groups(summary: Summary) -> list[str]:
    """Groups in which every request failed (none succeeded, none was injected)."""
    return [g.name for g in summary.groups if g.operations and g.errors == g.operations]


def evaluate(
    summary: Summary,
    thresholds: list[Condition],
    expect: list[Condition],
    expected: list[str] | None = None,
    changed_by: tuple[str, ...] = (),
) -> None:
    """Fill in ``summary.thresholds`` and ``summary.expectations``; errors the scenario
    did not set out to cause add a failed ``default`` check to the thresholds.

    When the user changed the scenario (``changed_by``: --set, --duration, --vary), its
    expectations describe it as written: those that still hold are reported as held,
    those that do not are measured but not checked (``summary.skipped_expectations``,
    with the reason), since the change may be what broke them. Thresholds always gate."""
    figures = summary.figures()
    summary.thresholds = [c.evaluate(figures, "threshold") for c in thresholds]
    evaluated = [c.evaluate(figures, "expect") for c in expect]
    broken = [c for c in evaluated if not c.ok] if changed_by else []
    summary.expectations = [c for c in evaluated if c not in broken]
    summary.skipped_expectations = broken
    if broken:
        summary.expectations_skipped_because = "the scenario was changed: " + ", ".join(changed_by)
    named = {c.metric for c in (*thresholds, *expect)}
    check = failed_work(summary, untolerated_kinds(named, expected or []))
    if check is not None:
        summary.thresholds.append(check)
