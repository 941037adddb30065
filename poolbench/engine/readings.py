"""What a pool side hands the runner: plain, picklable data, and how a fleet's parts merge.

A pool side in this process and one in a fleet's worker process return the same
:class:`PoolReading` (every tick) and :class:`PoolTotals` (at the end). A fleet merges
them with :meth:`PoolReading.merged` and :meth:`PoolTotals.merged`. Every field says how
it merges in its ``metadata`` (``merge=``); the merge walks ``dataclasses.fields``, so a
field added without a rule fails loudly (tests/test_poolside_logic.py checks each one)
instead of being silently left out of a fleet's result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..metrics.histogram import LatencyHistogram, percentile_of_counts
from ..metrics.recorder import IntervalStats
from ..result import (
    ErrorExample,
    ErrorKindStats,
    GroupSummary,
    Holder,
    HttpEndpoint,
    LeakSite,
    PoolEvents,
)

MAX_SQLALCHEMY_MESSAGES = 8
MAX_LEAK_SITES = 10
MAX_ERROR_EXAMPLES = 5

# A rule takes the parts and a field's name and returns the merged value.
Rule = Callable[[Sequence[Any], str], Any]


def _values(parts: Sequence[Any], name: str) -> list[Any]:
    return [getattr(p, name) for p in parts]


def summed(parts: Sequence[Any], name: str) -> Any:
    return sum(_values(parts, name))


def same(parts: Sequence[Any], name: str) -> Any:
    """A fact every part shares (a group's name): the first part's."""
    return getattr(parts[0], name)


def _merge(cls: type, parts: Sequence[Any]) -> Any:
    """``cls`` built field by field from ``parts`` with each field's own rule."""
    # KeyError here: a field was added without a merge rule
    return cls(**{f.name: f.metadata["merge"](parts, f.name) for f in fields(cls)})


def by(rule: Rule) -> dict[str, Rule]:
    """A field's metadata: merged by ``rule``."""
    return {"merge": rule}


# -- a tick ------------------------------------------------------------------------------------


def _interval_stats(parts: Sequence[Any], name: str) -> IntervalStats:
    stats = IntervalStats.merged([p.stats for p in parts])
    wait: Counter[int] = Counter()
    for p in parts:
        wait.update(p.interval_wait)
    stats.checkout_wait_p99_ms = percentile_of_counts(wait, 99)
    return stats


def _events(parts: Sequence[Any], name: str) -> PoolEvents:
    events = PoolEvents()
    for value in _values(parts, name):
        events = events.plus(value)
    return events


def _added(parts: Sequence[Any], name: str) -> dict[int, int]:
    total: Counter[int] = Counter()
    for value in _values(parts, name):
        total.update(value)
    return dict(total)


def _joined(parts: Sequence[Any], name: str) -> str:
    return " | ".join(v for v in _values(parts, name) if v)


def _union(parts: Sequence[Any], name: str) -> set[int]:
    return set().union(*_values(parts, name))


def _concatenated(parts: Sequence[Any], name: str) -> list[Any]:
    return [item for value in _values(parts, name) for item in value]


@dataclass
class PoolReading:
    """The pool and the requests at one tick."""

    checked_out: int = field(metadata=by(summed))
    checked_in: int = field(metadata=by(summed))
    overflow: int = field(metadata=by(summed))
    waiting: int = field(metadata=by(summed))
    leaked_open: int = field(metadata=by(summed))
    leaked: int = field(metadata=by(summed))  # sessions leaked so far (cumulative)
    stats: IntervalStats = field(metadata=by(_interval_stats))
    # the interval's checkout waits, {micros: how many}: the merged stats' p99 is taken
    # from them, and the metrics endpoint's wait histogram adds them up
    interval_wait: dict[int, int] = field(metadata=by(_added))
    events: PoolEvents = field(metadata=by(_events))  # cumulative
    status: str = field(metadata=by(_joined), default="")
    open_ids: set[int] = field(metadata=by(_union), default_factory=set)
    server_ids: list[int] = field(metadata=by(_concatenated), default_factory=list)
    # the interval's holds (use times), {micros: how many}, for the metrics endpoint
    interval_hold: dict[int, int] = field(metadata=by(_added), default_factory=dict)
    # how long the interval's new connections took to open, {micros: how many}
    interval_create: dict[int, int] = field(metadata=by(_added), default_factory=dict)
    # the interval's exact highest values (engine/peaks.py); a fleet's are the sum of its
    # processes' (they may peak at different instants: an upper bound)
    peak_checked_out: int = field(metadata=by(summed), default=0)
    peak_overflow: int = field(metadata=by(summed), default=0)
    peak_waiting: int = field(metadata=by(summed), default=0)
    peak_open: int = field(metadata=by(summed), default=0)

    @classmethod
    def merged(cls, readings: Sequence[PoolReading]) -> PoolReading:
        """One reading for several processes (a single one is returned as it is)."""
        if len(readings) == 1:
            return readings[0]
        return _merge(cls, readings)


# -- the whole run -----------------------------------------------------------------------------


def _histogram(parts: Sequence[Any], name: str) -> dict[int, int]:
    """Histograms as {micros: how many}, merged exactly (as LatencyHistogram keeps them)."""
    histogram = LatencyHistogram()
    for value in _values(parts, name):
        histogram.record_counts(value)
    return histogram.to_counts()


@dataclass
class GroupTotals:
    """One workload group's whole-run counts, histograms as plain counts for merging."""

    name: str = field(metadata=by(same))
    session: str = field(metadata=by(same))
    operations: int = field(metadata=by(summed))
    ok: int = field(metadata=by(summed))
    errors: int = field(metadata=by(summed))
    leaked: int = field(metadata=by(summed))
    wait: dict[int, int] = field(metadata=by(_histogram))  # {micros: how many}
    hold: dict[int, int] = field(metadata=by(_histogram))

    @classmethod
    def merged(cls, parts: Sequence[GroupTotals]) -> GroupTotals:
        return _merge(cls, parts)

    def histograms(self) -> GroupHistograms:
        wait, hold = LatencyHistogram(), LatencyHistogram()
        wait.record_counts(self.wait)
        hold.record_counts(self.hold)
        return GroupHistograms(self.name, self.session, wait, hold)

    def summary(self) -> GroupSummary:
        h = self.histograms()
        return GroupSummary(
            name=self.name,
            session=self.session,
            operations=self.operations,
            ok=self.ok,
            errors=self.errors,
            leaked=self.leaked,
            checkout_wait_ms=h.wait.percentiles(),
            hold_ms=h.hold.percentiles(),
        )


@dataclass
class GroupHistograms:
    """One group's whole-run latency histograms (a fleet's merged)."""

    name: str
    session: str
    wait: LatencyHistogram
    hold: LatencyHistogram


def _groups(parts: Sequence[Any], name: str) -> list[GroupTotals]:
    # every part runs the same workload: groups line up by position
    per_part = _values(parts, name)
    return [GroupTotals.merged(same_group) for same_group in zip(*per_part, strict=True)]


def _error_kinds(parts: Sequence[Any], name: str) -> dict[str, ErrorKindStats]:
    kinds: dict[str, ErrorKindStats] = {}
    for kind in parts[0].errors:
        stats = ErrorKindStats()
        examples: dict[tuple[str | None, str], ErrorExample] = {}
        for p in parts:
            part = p.errors[kind]
            stats.count += part.count
            if part.first_at_s is not None and (
                stats.first_at_s is None or part.first_at_s < stats.first_at_s
            ):
                stats.first_at_s = part.first_at_s
            for e in part.examples:
                key = (e.code, e.message)
                if key in examples:
                    examples[key].count += e.count
                    examples[key].first_at_s = min(examples[key].first_at_s, e.first_at_s)
                else:
                    examples[key] = replace(e)
        stats.examples = sorted(examples.values(), key=lambda e: e.first_at_s)[:MAX_ERROR_EXAMPLES]
        kinds[kind] = stats
    return kinds


def _at_first_timeout(parts: Sequence[Any], name: str) -> Any:
    """A fact about the run's first timeout: from the part whose timeout came first."""
    timed = [p for p in parts if p.first_timeout_at_s is not None]
    if not timed:
        return None
    return getattr(min(timed, key=lambda p: p.first_timeout_at_s), name)


def _sqlalchemy_messages(parts: Sequence[Any], name: str) -> list[ErrorExample]:
    messages: dict[str, ErrorExample] = {}
    for value in _values(parts, name):
        for m in value:
            if m.message in messages:
                messages[m.message].count += m.count
            else:
                messages[m.message] = replace(m)
    return list(messages.values())[:MAX_SQLALCHEMY_MESSAGES]


def _leak_sites(parts: Sequence[Any], name: str) -> list[LeakSite]:
    sites: dict[str, LeakSite] = {}
    for value in _values(parts, name):
        for s in value:
            if s.site in sites:
                t = sites[s.site]
                t.count += s.count
                t.held_at_end += s.held_at_end
                t.longest_hold_s = max(t.longest_hold_s, s.longest_hold_s)
            else:
                sites[s.site] = replace(s)
    return sorted(sites.values(), key=lambda s: -s.count)[:MAX_LEAK_SITES]


@dataclass
class EndpointTotals:
    """One HTTP endpoint's responses, as its requests' records told them (the recorder's
    HttpLog); the latency as ``{micros: how many}``, merged exactly by adding."""

    name: str
    statuses: dict[str, int]
    pool_timeouts: int
    latency_us: dict[int, int]

    def summary(self) -> HttpEndpoint:
        latency = LatencyHistogram()
        latency.record_counts(self.latency_us)
        return HttpEndpoint(
            name=self.name,
            requests=sum(self.statuses.values()),
            statuses=dict(sorted(self.statuses.items())),
            pool_timeouts=self.pool_timeouts,
            latency_ms=latency.percentiles(),
        )


def _endpoints(parts: Sequence[Any], name: str) -> list[EndpointTotals]:
    merged: dict[str, EndpointTotals] = {}
    for value in _values(parts, name):
        for e in value:
            into = merged.setdefault(e.name, EndpointTotals(e.name, {}, 0, {}))
            into.statuses = dict(Counter(into.statuses) + Counter(e.statuses))
            into.pool_timeouts += e.pool_timeouts
            into.latency_us = dict(Counter(into.latency_us) + Counter(e.latency_us))
    return list(merged.values())


@dataclass
class PoolTotals:
    """Everything a pool side measured over the run."""

    operations: int = field(metadata=by(summed))
    ok: int = field(metadata=by(summed))
    injected: int = field(metadata=by(summed))
    groups: list[GroupTotals] = field(metadata=by(_groups))
    errors: dict[str, ErrorKindStats] = field(metadata=by(_error_kinds))
    first_timeout_at_s: float | None = field(metadata=by(_at_first_timeout))
    first_timeout_message: str | None = field(metadata=by(_at_first_timeout))
    leaked: int = field(metadata=by(summed))
    leaked_at_first_timeout: int | None = field(metadata=by(_at_first_timeout))
    events: PoolEvents = field(metadata=by(_events))
    keepalive_pings: int = field(metadata=by(summed))
    keepalive_errors: int = field(metadata=by(summed))
    dropped: int = field(metadata=by(summed))
    late: int = field(metadata=by(summed))
    stragglers: int = field(metadata=by(summed))
    sqlalchemy_messages: list[ErrorExample] = field(metadata=by(_sqlalchemy_messages))
    leak_sites: list[LeakSite] = field(metadata=by(_leak_sites))
    holders_at_first_timeout: list[Holder] | None = field(metadata=by(_at_first_timeout))
    # checkouts that blocked in the pool's queue (no idle connection, no room to open one)
    queued: int = field(metadata=by(summed), default=0)
    connect: dict[int, int] = field(metadata=by(_histogram), default_factory=dict)  # {µs: n}
    # lines for the summary's notes (an app's pool as found, its output, its threadpool)
    notes: list[str] = field(metadata=by(_concatenated), default_factory=list)
    # per HTTP endpoint (app mode over HTTP)
    endpoints: list[EndpointTotals] = field(metadata=by(_endpoints), default_factory=list)

    @classmethod
    def merged(cls, parts: Sequence[PoolTotals]) -> PoolTotals:
        """One PoolTotals for a fleet, histograms merged exactly."""
        return _merge(cls, parts)

    def group_histograms(self) -> list[GroupHistograms]:
        return [g.histograms() for g in self.groups]

    def group_summaries(self) -> list[GroupSummary]:
        return [g.summary() for g in self.groups]
