"""The pool side of a run: one engine, its pool, the workers and what they measured.

A run has one pool side in its own process, or one per process of a fleet. The runner
drives it — phases, readings at every tick, shutdown — and gets plain, picklable data
back (:class:`PoolReading`, :class:`PoolTotals`), so a pool side in another process is
driven exactly like a local one.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any

from sqlalchemy.engine import URL

from .. import errors
from ..metrics.histogram import LatencyHistogram, percentile_of_counts
from ..metrics.recorder import Aggregator, IntervalStats, Recorder
from ..result import ErrorExample, ErrorKindStats, GroupSummary, Holder, LeakSite, PoolEvents
from ..scenario.model import Phase, Scenario
from .faults import KeepAliveJob, install_idle_timeout
from .leaks import LeakDetector
from .load import driver_for
from .pool import PoolWatch, build_engine
from .requests import CheckoutTimer, GroupPlan, LeakRegistry, RequestExecutor
from .sqla_log import SqlaMessages


@dataclass
class PoolReading:
    """The pool and the requests at one tick."""

    checked_out: int
    checked_in: int
    overflow: int
    waiting: int
    leaked_open: int
    leaked: int  # sessions leaked so far (cumulative)
    stats: IntervalStats
    interval_wait: dict[int, int]  # the interval's checkout waits, {micros: how many}
    events: PoolEvents  # cumulative
    status: str = ""
    open_ids: set[int] = field(default_factory=set)
    server_ids: list[int] = field(default_factory=list)


@dataclass
class GroupTotals:
    """One workload group's whole-run counts, histograms as plain counts for merging."""

    name: str
    session: str
    operations: int
    ok: int
    errors: int
    leaked: int
    wait: dict[int, int]  # the histograms as {micros: how many}, merged exactly
    hold: dict[int, int]


@dataclass
class PoolTotals:
    """Everything a pool side measured over the run."""

    operations: int
    ok: int
    injected: int
    groups: list[GroupTotals]
    errors: dict[str, ErrorKindStats]
    first_timeout_at_s: float | None
    first_timeout_message: str | None
    leaked: int
    leaked_at_first_timeout: int | None
    events: PoolEvents
    keepalive_pings: int
    keepalive_errors: int
    dropped: int
    late: int
    stragglers: int
    sqlalchemy_messages: list[ErrorExample]
    leak_sites: list[LeakSite]
    holders_at_first_timeout: list[Holder] | None


def behaviour(group: Any) -> str:
    """How a group's requests handle sessions, in a word or two."""
    if group.api == "sessionmaker":
        return "its own"
    return f"{group.session} (task)" if group.task else group.session


def share_of(phase: Phase, share: tuple[int, int]) -> Phase:
    """Process ``index`` of ``count``'s part of a phase: workers split as evenly as
    possible, the arrival rate divided."""
    index, count = share
    if count == 1:
        return phase
    workers = None
    if phase.workers is not None:
        workers = phase.workers // count + (1 if index < phase.workers % count else 0)
    rate = phase.rate / count if phase.rate is not None else None
    return phase.model_copy(update={"workers": workers, "rate": rate})


class PoolSide:
    """Build with a scenario and a URL; :meth:`begin`, drive, :meth:`shutdown`, :meth:`close`."""

    def __init__(
        self,
        scenario: Scenario,
        url: URL,
        kind: str,
        application_name: str,
        scrub: Callable[[str], str],
        share: tuple[int, int] = (0, 1),
        on_first_timeout: Callable[[float, str], None] | None = None,
        verbose: bool = False,
    ) -> None:
        self.scenario = scenario
        self.share = share
        self.verbose = verbose
        self._on_first_timeout = on_first_timeout
        try:
            plans = [GroupPlan.build(i, g, kind) for i, g in enumerate(scenario.workload)]
        except ValueError as exc:
            raise errors.UnsupportedDatabase(f"scenario {scenario.name!r}: {exc}") from None
        self.engine = build_engine(url, scenario.pool, application_name)
        if scenario.faults.server_idle_timeout:
            install_idle_timeout(self.engine, kind, scenario.faults.server_idle_timeout)
        track_idle = any(k.which == "idle" for k in scenario.faults.kill)
        track_gc = any(g.session == "unclosed" for g in scenario.workload)
        self.watch = PoolWatch(self.engine, scenario.pool, track_idle=track_idle, track_gc=track_gc)
        self.recorder = Recorder()
        self.leaks = LeakRegistry()
        self.stop = threading.Event()
        self.executor = RequestExecutor(
            self.engine,
            self.recorder,
            self.leaks,
            self.stop,
            perf_counter(),
            scrub,
            self._first_timeout,
        )
        index, count = share
        seed = None if scenario.seed is None else scenario.seed + 7_919 * index
        threads = max(share_of(p, share).workers or 0 for p in scenario.effective_phases())
        if scenario.load.open_loop:
            threads = -(-scenario.load.concurrency // count)
        self.driver = driver_for(
            scenario.load.open_loop,
            executor=self.executor,
            plans=plans,
            threads=threads,
            seed=seed,
            stop=self.stop,
        )
        self.aggregator = Aggregator([(g.label, behaviour(g)) for g in scenario.workload])
        self._waiting = self.driver.waiting
        if any(g.api == "sessionmaker" for g in scenario.workload):
            # tasks open their own sessions: time every checkout at the pool instead
            timer = self.executor.timer = CheckoutTimer(self.engine)
            self._waiting = lambda: timer.in_flight
        self.leak_detector = (
            LeakDetector(self.engine, scenario.leak_detection) if scenario.leak_detection else None
        )
        self.keepalive = (
            KeepAliveJob(self.engine, scenario.keepalive.every, scenario.keepalive.query, self.stop)
            if scenario.keepalive is not None
            else None
        )
        self.sqla = SqlaMessages(perf_counter())
        self._leaks_at_first_timeout: int | None = None
        self._holders: list[Holder] | None = None
        self._stragglers = 0
        self._leak_sites: list[LeakSite] = []

    # -- driving ----------------------------------------------------------------------------

    def begin(self, t0: float) -> None:
        """Start the threads; times are measured from ``t0`` (perf_counter)."""
        self.sqla.started_at = t0
        self.sqla.__enter__()
        threading.Thread(target=self.leaks.run_reaper, name="poolbench-reaper", daemon=True).start()
        self.driver.start()  # threads wait for the first phase before sending anything
        if self.keepalive is not None:
            self.keepalive.start()
        self.executor.started_at = t0

    def set_phase(self, phase: Phase) -> None:
        self.driver.set_phase(share_of(phase, self.share))

    def prefill(self, connections: int) -> None:
        """Open ``connections`` connections at once and give them back, so the pool starts
        as a warmed-up service's does (and the dialect's first-connect setup is done)."""
        opened = []
        try:
            for _ in range(connections):
                opened.append(self.engine.connect())
        finally:
            for conn in opened:
                conn.close()

    def read(self) -> PoolReading:
        """The pool now, and what finished since the last reading."""
        if self.leak_detector is not None:
            self.leak_detector.scan()
        state = self.watch.state(with_status=self.verbose)
        waiting = self._waiting()
        stats, interval = self.aggregator.absorb(self.recorder.drain())
        return PoolReading(
            checked_out=state.checked_out,
            checked_in=state.checked_in,
            overflow=state.overflow,
            waiting=waiting,
            leaked_open=self.leaks.open_count,
            leaked=self.recorder.leaks,
            stats=stats,
            interval_wait=interval,
            events=self.watch.events(),
            status=state.status,
            open_ids=self.watch.open_server_ids(),
            server_ids=self.watch.server_id_list(),
        )

    def open_ids(self) -> set[int]:
        return self.watch.open_server_ids()

    def server_ids(self) -> list[int]:
        return self.watch.server_id_list()

    def idle_ids(self) -> list[int]:
        return self.watch.idle_server_ids()

    def _first_timeout(self, t_s: float, message: str, leaks: int) -> None:
        self._leaks_at_first_timeout = leaks
        if self.leak_detector is not None:
            self._holders = self.leak_detector.holders()
        if self._on_first_timeout is not None:
            self._on_first_timeout(t_s, message)

    # -- ending -----------------------------------------------------------------------------

    def stop_load(self) -> None:
        self.executor.halted = True
        self.stop.set()
        self.driver.wake()

    def shutdown(self, grace_s: float) -> int:
        """Release leaked sessions, let requests finish, return every connection to the pool
        and close them; how many requests were still running after ``grace_s``."""
        if self.leak_detector is not None:
            self._leak_sites = self.leak_detector.sites()  # before the cleanup returns them
        self.stop_load()
        if self.keepalive is not None:
            self.keepalive.join(grace_s)
        self.leaks.release_all()
        self._stragglers = self.driver.join(grace_s)
        gc.collect()  # returns connections of sessions dropped without close()
        self.engine.dispose()
        return self._stragglers

    def totals(self) -> PoolTotals:
        errors_log = self.recorder.errors
        return PoolTotals(
            operations=self.aggregator.operations,
            ok=self.aggregator.ok,
            injected=self.aggregator.injected,
            groups=[
                GroupTotals(
                    name,
                    session,
                    g.operations,
                    g.ok,
                    g.errors,
                    g.leaked,
                    g.wait.to_counts(),
                    g.hold.to_counts(),
                )
                for (name, session), g in zip(
                    self.aggregator.names, self.aggregator.groups, strict=True
                )
            ],
            errors=errors_log.snapshot(),
            first_timeout_at_s=errors_log.first_timeout_at_s,
            first_timeout_message=errors_log.first_timeout_message,
            leaked=self.recorder.leaks,
            leaked_at_first_timeout=self._leaks_at_first_timeout,
            events=self.watch.events(),
            keepalive_pings=self.keepalive.pings if self.keepalive else 0,
            keepalive_errors=self.keepalive.errors if self.keepalive else 0,
            dropped=self.driver.dropped,
            late=self.driver.late,
            stragglers=self._stragglers,
            sqlalchemy_messages=self.sqla.examples(),
            leak_sites=self._leak_sites,
            holders_at_first_timeout=self._holders,
        )

    def close(self) -> None:
        """Whatever happened, leave nothing running (safe to call twice)."""
        self.stop_load()
        self.leaks.release_all()
        self.sqla.__exit__(None, None, None)
        self.engine.dispose()
        self.watch.remove()
        if self.leak_detector is not None:
            self.leak_detector.remove()


# -- a fleet's pool sides, merged ------------------------------------------------------------


def merge_readings(readings: list[PoolReading]) -> tuple[PoolReading, float | None]:
    """One reading for several processes, and the interval's merged checkout-wait p99."""
    if len(readings) == 1:
        only = readings[0]
        return only, only.stats.checkout_wait_p99_ms
    wait: Counter[int] = Counter()
    stats = IntervalStats()
    events = PoolEvents()
    for r in readings:
        wait.update(r.interval_wait)
        for name in ("operations", "ok", "injected", "timeouts", "disconnects", "errors"):
            setattr(stats, name, getattr(stats, name) + getattr(r.stats, name))
        events = events.plus(r.events)
    stats.checkout_wait_p99_ms = percentile_of_counts(wait, 99)
    merged = PoolReading(
        checked_out=sum(r.checked_out for r in readings),
        checked_in=sum(r.checked_in for r in readings),
        overflow=sum(r.overflow for r in readings),
        waiting=sum(r.waiting for r in readings),
        leaked_open=sum(r.leaked_open for r in readings),
        leaked=sum(r.leaked for r in readings),
        stats=stats,
        interval_wait={},
        events=events,
        status=" | ".join(r.status for r in readings if r.status),
        open_ids=set().union(*(r.open_ids for r in readings)),
        server_ids=[i for r in readings for i in r.server_ids],
    )
    return merged, stats.checkout_wait_p99_ms


def merge_totals(parts: list[PoolTotals]) -> tuple[PoolTotals, list[tuple[str, str, Any, Any]]]:
    """One PoolTotals for a fleet (histograms merged exactly), and per group the merged
    (name, session, wait histogram, hold histogram)."""
    first = parts[0]
    groups = []
    for i, g in enumerate(first.groups):
        wait, hold = LatencyHistogram(), LatencyHistogram()
        for p in parts:
            wait.record_counts(p.groups[i].wait)
            hold.record_counts(p.groups[i].hold)
        groups.append((g.name, g.session, wait, hold))
    merged_groups = [
        GroupTotals(
            g.name,
            g.session,
            sum(p.groups[i].operations for p in parts),
            sum(p.groups[i].ok for p in parts),
            sum(p.groups[i].errors for p in parts),
            sum(p.groups[i].leaked for p in parts),
            {},
            {},
        )
        for i, g in enumerate(first.groups)
    ]
    kinds: dict[str, ErrorKindStats] = {}
    for kind in first.errors:
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
        stats.examples = sorted(examples.values(), key=lambda e: e.first_at_s)[:5]
        kinds[kind] = stats
    timed = [p for p in parts if p.first_timeout_at_s is not None]
    earliest = min(timed, key=lambda p: p.first_timeout_at_s) if timed else None
    events = PoolEvents()
    for p in parts:
        events = events.plus(p.events)
    sites: dict[str, LeakSite] = {}
    for p in parts:
        for s in p.leak_sites:
            if s.site in sites:
                t = sites[s.site]
                t.count += s.count
                t.held_at_end += s.held_at_end
                t.longest_hold_s = max(t.longest_hold_s, s.longest_hold_s)
            else:
                sites[s.site] = replace(s)
    messages: dict[str, ErrorExample] = {}
    for p in parts:
        for m in p.sqlalchemy_messages:
            if m.message in messages:
                messages[m.message].count += m.count
            else:
                messages[m.message] = replace(m)
    merged = PoolTotals(
        operations=sum(p.operations for p in parts),
        ok=sum(p.ok for p in parts),
        injected=sum(p.injected for p in parts),
        groups=merged_groups,
        errors=kinds,
        first_timeout_at_s=earliest.first_timeout_at_s if earliest else None,
        first_timeout_message=earliest.first_timeout_message if earliest else None,
        leaked=sum(p.leaked for p in parts),
        leaked_at_first_timeout=earliest.leaked_at_first_timeout if earliest else None,
        events=events,
        keepalive_pings=sum(p.keepalive_pings for p in parts),
        keepalive_errors=sum(p.keepalive_errors for p in parts),
        dropped=sum(p.dropped for p in parts),
        late=sum(p.late for p in parts),
        stragglers=sum(p.stragglers for p in parts),
        sqlalchemy_messages=list(messages.values())[:8],
        leak_sites=sorted(sites.values(), key=lambda s: -s.count)[:10],
        holders_at_first_timeout=earliest.holders_at_first_timeout if earliest else None,
    )
    return merged, groups


def group_summaries(
    groups: list[tuple[str, str, Any, Any]], totals: PoolTotals
) -> list[GroupSummary]:
    return [
        GroupSummary(
            name=name,
            session=session,
            operations=g.operations,
            ok=g.ok,
            errors=g.errors,
            leaked=g.leaked,
            checkout_wait_ms=wait.percentiles(),
            hold_ms=hold.percentiles(),
        )
        for (name, session, wait, hold), g in zip(groups, totals.groups, strict=True)
    ]
