"""One scenario against one database: set up, measure, and leave nothing behind.

:func:`run_scenario` is the whole measurement. The pool side (engine, workers, what they
measured; engine/poolside.py) lives in this process, or in every process of a fleet
(engine/fleet.py); this module is the server side: the probe, the faults, the timeline
and the cleanup. The shutdown releases every leaked session, lets in-flight requests
finish (for a grace period), disposes the engine, ends on the server whatever is still
connected, and checks the server shows no connection of the run. Ctrl-C ends the
measurement early and keeps what it measured.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from time import perf_counter
from typing import Any, Protocol

from .. import checks, errors
from ..db.server import ServerProbe, probe_for
from ..db.target import Target
from ..metrics.histogram import LatencyHistogram
from ..result import (
    DatabaseInfo,
    FaultEvent,
    Progress,
    RunHeader,
    RunResult,
    Sample,
    Summary,
)
from ..scenario.model import Phase, Scenario
from ..units import format_duration
from .faults import FaultSchedule, check_supported
from .poolside import PoolSide, build_pool_side
from .readings import GroupHistograms, PoolReading, PoolTotals
from .sampler import ServerWatch, Timeline

# A checkout slower than this had to wait for a connection: P(wait), as Erlang C calls
# it. No wall-clock threshold separates "waited" from "did not" exactly; 1 ms is far
# above a checkout that finds an idle connection (measured against a local PostgreSQL:
# a median of ~15 us, ~35 us with pool_pre_ping's round trip) and at or below any wait
# for a returned connection worth reporting.
WAITED_US = 1000


class Observer:
    """Receives a run's progress; the live view and the plain progress lines implement it.

    Methods are called from the runner's thread, except :meth:`first_timeout` and
    :meth:`fault`, which are called the moment they happen, from other threads.
    """

    def started(self, header: RunHeader) -> None:
        pass

    def sampled(self, sample: Sample, progress: Progress) -> None:
        pass

    def first_timeout(self, t_s: float, message: str) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass

    def fault(self, event: FaultEvent) -> None:
        """A kill or restart happened."""

    def finished(self) -> None:
        pass


@dataclass
class RunOptions:
    """How to run, beyond what the scenario says."""

    verbose: bool = False  # keep SQLAlchemy's pool.status() string in every sample
    grace_s: float = 5.0  # how long in-flight requests may finish after the end
    run_id: str | None = None
    variant: dict[str, Any] | None = None  # the settings this variant overrides
    variant_name: str | None = None
    processes: int | None = None  # overrides the scenario's fleet.processes


class Pools(Protocol):
    """The pool side(s) of a run, as the runner drives them."""

    exact_stale: bool  # whether open_ids() can be read again right after the server

    def begin(self, t0: float) -> None: ...
    def set_phase(self, phase: Phase) -> None: ...
    def prefill(self, connections: int) -> None: ...
    def read(self) -> tuple[PoolReading, float | None]: ...
    def open_ids(self) -> set[int]: ...
    def server_ids(self) -> list[int]: ...
    def idle_ids(self) -> list[int]: ...
    def stop_load(self) -> None: ...
    def shutdown(self, grace_s: float) -> int: ...
    def totals(self) -> tuple[PoolTotals, list[GroupHistograms], list[dict[str, Any]]]: ...
    def close(self) -> None: ...


class LocalPools:
    """The usual case: one pool side, in this process."""

    exact_stale = True

    def __init__(self, side: PoolSide) -> None:
        self.side = side

    def begin(self, t0: float) -> None:
        self.side.begin(t0)

    def set_phase(self, phase: Phase) -> None:
        self.side.set_phase(phase)

    def prefill(self, connections: int) -> None:
        self.side.prefill(connections)

    def read(self) -> tuple[PoolReading, float | None]:
        reading = self.side.read()
        return reading, reading.stats.checkout_wait_p99_ms

    def open_ids(self) -> set[int]:
        return self.side.open_ids()

    def server_ids(self) -> list[int]:
        return self.side.server_ids()

    def idle_ids(self) -> list[int]:
        return self.side.idle_ids()

    def stop_load(self) -> None:
        self.side.stop_load()

    def shutdown(self, grace_s: float) -> int:
        return self.side.shutdown(grace_s)

    def totals(self) -> tuple[PoolTotals, list[GroupHistograms], list[dict[str, Any]]]:
        # merged although alone: the same ordering and limits as a fleet's
        merged = PoolTotals.merged([self.side.totals()])
        return merged, merged.group_histograms(), []

    def close(self) -> None:
        self.side.close()


def new_run_id() -> str:
    return secrets.token_hex(4)


_EXAMPLE_URL = {
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
}


def check_requirements(scenario: Scenario, target_kind: str | None) -> None:
    """UnsupportedDatabase when the scenario needs another kind of database."""
    needed = scenario.database.requires
    if needed and target_kind != needed:
        names = {"mysql": "MySQL or MariaDB", "postgresql": "PostgreSQL"}
        got = names.get(target_kind or "", target_kind)
        hint = f"pass --url, e.g. {_EXAMPLE_URL[needed]}"
        if needed == "postgresql":
            hint = "run it without --url and POOLBENCH_URL for the embedded PostgreSQL, or " + hint
        raise errors.UnsupportedDatabase(
            f"scenario {scenario.name!r} needs {names[needed]}; it was given {got} ({hint})"
        )


def run_scenario(
    scenario: Scenario,
    target: Target,
    options: RunOptions | None = None,
    observer: Observer | None = None,
) -> RunResult:
    """Run ``scenario`` against ``target`` and return everything measured."""
    options = options or RunOptions()
    observer = observer or Observer()
    check_requirements(scenario, target.kind)
    run_id = options.run_id or new_run_id()
    app_name = f"poolbench-{run_id}"
    probe = probe_for(target.url, app_name)
    probe.open()
    try:
        check_supported(scenario.faults, target.kind, probe.server_version, target.embedded)
        return _Run(scenario, target, options, observer, probe, run_id, app_name).execute()
    finally:
        probe.close()


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        target: Target,
        options: RunOptions,
        observer: Observer,
        probe: ServerProbe,
        run_id: str,
        app_name: str,
    ) -> None:
        self.scenario = scenario
        self.target = target
        self.options = options
        self.observer = observer
        self.probe = probe
        self.run_id = run_id
        self.app_name = app_name
        self.processes = options.processes or scenario.fleet.processes
        self.notes: list[str] = []
        self.database = DatabaseInfo(
            url=target.masked,
            dialect=target.url.get_backend_name(),
            driver=target.url.get_driver_name(),
            server_version=probe.server_version,
            embedded=target.source == "embedded",
            max_connections=probe.max_connections,
            source=target.source,
            reserved_connections=probe.reserved_connections,
            superuser=probe.superuser,
            connections_in_use=probe.connections_in_use,
            available_connections=probe.available_connections(),
        )
        capacity = scenario.pool.capacity
        self.worst_case = None if capacity is None else capacity * self.processes
        self._first_timeout: tuple[float | None, str | None] = (None, None)
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._terminated = 0

    # -- the run -------------------------------------------------------------------------------

    def _pools(self) -> Pools:
        if self.processes > 1:
            from .fleet import FleetPools

            return FleetPools(
                self.scenario,
                self.target,
                self.app_name,
                self.processes,
                self._on_first_timeout,
                self.options.verbose,
            )
        side = build_pool_side(
            self.scenario,
            self.target.url,
            self.target.kind,
            self.app_name,
            self.target.scrub,
            on_first_timeout=self._on_first_timeout,
            verbose=self.options.verbose,
        )
        return LocalPools(side)

    def execute(self) -> RunResult:
        scenario = self.scenario
        pools = self._pools()
        try:
            faults = FaultSchedule(
                scenario.faults,
                self.probe,
                self.target.embedded,
                pools.server_ids,
                pools.idle_ids,
                self.observer.fault,
            )
            server = ServerWatch(self.probe, pools.server_ids)
            timeline = Timeline(scenario.total_duration)
            started_wall = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.observer.started(self._header())
            interrupted = False
            if scenario.prefill and scenario.pool.poolclass == "QueuePool":
                pools.prefill(scenario.pool.pool_size)
            server.start()
            t0 = perf_counter()
            pools.begin(t0)
            try:
                try:
                    elapsed = self._measure(pools, faults, server, timeline, t0)
                except KeyboardInterrupt:
                    interrupted = True
                    pools.stop_load()
                    elapsed = perf_counter() - t0
                    self.observer.stopping("interrupted: stopping and keeping what was measured")
                    self._sample(pools, server, timeline, elapsed, "interrupted")
                self._shutdown(pools, faults, server, timeline)
            finally:
                server.close()
            totals, groups, per_process = pools.totals()
        finally:
            pools.close()
        summary = self._summary(elapsed, timeline, totals, groups)
        checks.evaluate(
            summary,
            checks.parse_conditions(dict(scenario.thresholds)),
            checks.parse_conditions(dict(scenario.expect)),
        )
        self.observer.finished()
        return RunResult(
            run_id=self.run_id,
            scenario=_scenario_info(scenario),
            started_at=started_wall,
            database=self.database,
            pool={
                "poolclass": scenario.pool.poolclass,
                **_pool_dict(scenario),
                "create_engine": scenario.pool.describe(),
            },
            load=_load_dict(scenario),
            interval_s=scenario.interval,
            timeline=timeline.samples,
            summary=summary,
            interrupted=interrupted,
            notes=self.notes,
            variant=self.options.variant,
            variant_name=self.options.variant_name,
            faults=sorted(faults.events, key=lambda e: e.t_s),
            processes=per_process,
        )

    def _measure(
        self,
        pools: Pools,
        faults: FaultSchedule,
        server: ServerWatch,
        timeline: Timeline,
        t0: float,
    ) -> float:
        """Drive the phases and take a sample every interval; the measured seconds."""
        scenario = self.scenario
        phases = scenario.effective_phases()
        starts = []
        acc = 0.0
        for phase in phases:
            starts.append(acc)
            acc += phase.duration
        end = scenario.total_duration
        interval = scenario.interval
        current = 0
        pools.set_phase(phases[0])
        next_tick = interval
        while True:
            now = perf_counter() - t0
            while current + 1 < len(phases) and now >= starts[current + 1]:
                current += 1
                pools.set_phase(phases[current])
            if now >= end:
                pools.stop_load()
                self._sample(pools, server, timeline, end, phases[current].name or "")
                return end
            faults.fire_due(now)
            if now >= next_tick:
                self._sample(pools, server, timeline, now, phases[current].name or "")
                while next_tick <= now:
                    next_tick += interval
                continue
            upcoming = min(next_tick, end)
            if current + 1 < len(phases):
                upcoming = min(upcoming, starts[current + 1])
            fault_at = faults.next_at()
            if fault_at is not None:
                upcoming = min(upcoming, fault_at)
            time.sleep(max(0.0, upcoming - now))

    def _sample(
        self, pools: Pools, server: ServerWatch, timeline: Timeline, t_s: float, phase: str
    ) -> None:
        reading, wait_p99 = pools.read()
        view, fresh = server.refresh()
        stale = None
        if view is not None and fresh and pools.exact_stale:
            # connections the pool holds that the server no longer has (closed by an idle
            # timeout, a kill or a restart, and not yet noticed). Only those open both
            # before and after the server was asked: one opened or closed meanwhile is not.
            stale = len((reading.open_ids & pools.open_ids()) - view.ids)
        sample = timeline.add(t_s, phase, reading, wait_p99, view, stale)
        with self._lock:
            first = self._first_timeout
        self.observer.sampled(sample, timeline.progress(t_s, phase, reading, first))

    def _on_first_timeout(self, t_s: float, message: str) -> None:
        with self._lock:
            if self._first_timeout[0] is not None and self._first_timeout[0] <= t_s:
                return
            self._first_timeout = (t_s, message)
        self.observer.first_timeout(t_s, message)

    # -- leaving nothing behind -------------------------------------------------------------------

    def _shutdown(
        self, pools: Pools, faults: FaultSchedule, server: ServerWatch, timeline: Timeline
    ) -> None:
        pools.stop_load()
        leaked = timeline.samples[-1].leaked_open if timeline.samples else 0
        if leaked:
            self.observer.stopping(f"releasing {leaked} leaked sessions")
        faults.join(10)  # a restart in progress must finish before the cleanup
        stragglers = pools.shutdown(self.options.grace_s)
        server.close()
        if stragglers:
            self.notes.append(
                f"{stragglers} requests were still running {self.options.grace_s:g}s after "
                "the end; their connections were ended on the server"
            )
        remaining = self._server_count(pools)
        if remaining:
            self._terminated = self.probe.terminate(pools.server_ids())
            remaining = self._server_count(pools)
            if self._terminated and not stragglers:
                self.notes.append(
                    f"{self._terminated} connections were still checked out after the "
                    "cleanup (held by code poolbench does not control); they were ended on "
                    "the server"
                )
        self._remaining = remaining

    def _server_count(self, pools: Pools) -> int | None:
        """This run's connections the server still shows, once closes have settled."""
        count = None
        for _ in range(20):
            counts = self.probe.try_connections_by_state(pools.server_ids())
            if counts is None:
                return None
            count = counts.get("total", 0)
            if count == 0:
                return 0
            time.sleep(0.05)
        return count

    # -- the figures ------------------------------------------------------------------------------

    def _summary(
        self, elapsed: float, timeline: Timeline, totals: PoolTotals, groups: list
    ) -> Summary:
        wait, hold = LatencyHistogram(), LatencyHistogram()
        for g in groups:
            wait.add(g.wait)
            hold.add(g.hold)
        maxima = timeline.maxima
        return Summary(
            duration_s=round(elapsed, 3),
            operations=totals.operations,
            ok=totals.ok,
            throughput_ops_s=round(totals.operations / elapsed, 2) if elapsed else 0.0,
            timeouts=totals.errors["timeout"].count,
            first_timeout_at_s=_round(totals.first_timeout_at_s),
            first_timeout_message=totals.first_timeout_message,
            errors=totals.errors,
            checkout_wait_ms=wait.percentiles(),
            hold_ms=hold.percentiles(),
            wait_probability=_round(wait.fraction_above(WAITED_US), 4),
            max_checked_out=maxima.checked_out,
            max_overflow=maxima.overflow,
            max_waiting=maxima.waiting,
            max_server_connections=maxima.server,
            max_stale=maxima.stale,
            leaked=totals.leaked,
            leaked_at_first_timeout=totals.leaked_at_first_timeout,
            injected_errors=totals.injected,
            keepalive_pings=totals.keepalive_pings,
            keepalive_errors=totals.keepalive_errors,
            dropped_arrivals=totals.dropped,
            late_arrivals=totals.late,
            pool_events=totals.events,
            sqlalchemy_warnings=totals.sqlalchemy_messages,
            groups=totals.group_summaries(),
            server_connections_at_exit=self._remaining,
            terminated_at_exit=self._terminated,
            leak_sites=totals.leak_sites,
            holders_at_first_timeout=totals.holders_at_first_timeout,
            processes=self.processes,
            worst_case_connections=self.worst_case,
            connection_headroom=None
            if self.worst_case is None or self.database.available_connections is None
            else self.database.available_connections - self.worst_case,
        )

    def _header(self) -> RunHeader:
        s = self.scenario
        phases = [
            {"name": p.name, "duration_s": p.duration, "workers": p.workers, "rate": p.rate}
            for p in s.effective_phases()
        ]
        return RunHeader(
            run_id=self.run_id,
            scenario=s.name,
            description=s.description.strip(),
            database=self.database,
            pool_line=s.pool.describe(),
            pool_size=(s.pool.pool_size if s.pool.poolclass == "QueuePool" else 0) * self.processes,
            capacity=self.worst_case,
            processes=self.processes,
            pool_timeout_s=s.pool.pool_timeout,
            load_line=_load_line(s, self.processes),
            duration_s=s.total_duration,
            interval_s=s.interval,
            phases=phases,
            variant=self.options.variant,
            variant_name=self.options.variant_name,
        )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _load_line(s: Scenario, processes: int = 1) -> str:
    groups = (
        ", ".join(f"{g.share / sum(x.share for x in s.workload):.0%} {g.label}" for g in s.workload)
        if len(s.workload) > 1
        else s.workload[0].label + (" sessions" if not s.workload[0].task else "")
    )
    if s.load.open_loop:
        model = f"open loop, {s.load.rate:g}/s, at most {s.load.concurrency} concurrent"
    else:
        model = f"closed loop, {s.load.workers} workers"
    fleet = f" over {processes} processes" if processes > 1 else ""
    phases = f", {len(s.phases)} phases" if s.phases else ""
    return f"{model}{fleet}{phases}; {groups}; {format_duration(s.total_duration)}"


def _pool_dict(s: Scenario) -> dict[str, Any]:
    data = s.pool.model_dump()
    data.pop("poolclass")
    return data


def _load_dict(s: Scenario) -> dict[str, Any]:
    return {
        "model": "open" if s.load.open_loop else "closed",
        **s.load.model_dump(exclude_none=True),
        "phases": [p.model_dump(exclude_none=True) for p in s.effective_phases()],
        "workload": [g.model_dump() for g in s.workload],
    }


def _scenario_info(s: Scenario) -> dict[str, Any]:
    return {
        "name": s.name,
        "description": s.description.strip(),
        "duration_s": s.total_duration,
        "thresholds": dict(s.thresholds),
        "expect": dict(s.expect),
        "leak_detection_s": s.leak_detection,
    }
