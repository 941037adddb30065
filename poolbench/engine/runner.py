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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from .. import checks, errors
from ..db import backends
from ..db.embedded import EmbeddedPostgres
from ..db.server import ServerProbe
from ..db.target import Target
from ..metrics.histogram import LatencyHistogram
from ..result import (
    DatabaseInfo,
    Errors,
    GroupLatencies,
    Latencies,
    Leaks,
    LoadInfo,
    Peaks,
    PoolInfo,
    ProcessInfo,
    RunHeader,
    RunResult,
    ScenarioInfo,
    ServerFigures,
    Summary,
)
from ..result.observer import Observer
from ..scenario.model import Phase, Scenario
from . import interrupts
from .faults import FaultSchedule, check_supported
from .poolside import PoolSide, build_pool_side, engine_kind
from .readings import GroupHistograms, PoolReading, PoolTotals
from .requests import GroupPlan
from .sampler import SERVER_WAIT_S, ServerWatch, Timeline
from .saturation import client_load

if TYPE_CHECKING:
    from ..app import BoundApp


@dataclass
class RunOptions:
    """How to run, beyond what the scenario says."""

    verbose: bool = False  # keep SQLAlchemy's pool.status() string in every sample
    grace_s: float = 5.0  # how long in-flight requests may finish after the end
    run_id: str | None = None
    variant: dict[str, Any] | None = None  # the settings this variant overrides
    variant_name: str | None = None
    processes: int | None = None  # overrides the scenario's fleet.processes
    # Called once everything is ready, just before measuring starts; blocks until the
    # start and returns it (epoch seconds). A node of a run across hosts waits there
    # for the others (poolbench/nodes); the result's started_at is that instant.
    start_gate: Callable[[], float] | None = None
    keep_histograms: bool = False  # put the latency counts in the result, for merging


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
    def shutdown(self, grace_s: float) -> tuple[int, int]: ...  # (holding, waiting)
    def totals(self) -> tuple[PoolTotals, list[GroupHistograms], list[ProcessInfo]]: ...
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

    def shutdown(self, grace_s: float) -> tuple[int, int]:
        return self.side.shutdown(grace_s)

    def totals(self) -> tuple[PoolTotals, list[GroupHistograms], list[ProcessInfo]]:
        # merged although alone: the same ordering and limits as a fleet's
        merged = PoolTotals.merged([self.side.totals()])
        return merged, merged.group_histograms(), []

    def close(self) -> None:
        self.side.close()


def new_run_id() -> str:
    return secrets.token_hex(4)


def check_requirements(scenario: Scenario, target: Target) -> None:
    """UnsupportedDatabase when the scenario needs another kind of database, UnknownBackend
    when the URL's driver cannot drive the engine the scenario asks for."""
    engine_kind(scenario, target.backend)
    if not scenario.database.requires:
        return
    needed = backends.named(scenario.database.requires)
    if target.backend.name != needed.name:
        embedded = needed.name == EmbeddedPostgres.backend.name
        raise errors.UnsupportedDatabase(
            f"scenario {scenario.name!r} needs {needed.title}; it was given {target.backend.title}",
            example_url=needed.example_url,
            embedded=needed.title if embedded else None,
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
    if scenario.app is not None and (options.processes or 1) > 1:
        raise errors.UsageError(
            f"--processes {options.processes}: scenario {scenario.name!r} measures the app's "
            "own engine, in one process; leave --processes out"
        )
    if scenario.app is not None and scenario.app.served:
        from ..app.binding import served_scenario

        return _run_scenario(served_scenario(scenario), target, options, observer, None)
    if scenario.app is not None:
        from ..app import bound_app

        with bound_app(scenario) as bound:
            return _run_scenario(bound.scenario, target, options, observer, bound)
    return _run_scenario(scenario, target, options, observer, None)


def _run_scenario(
    scenario: Scenario,
    target: Target,
    options: RunOptions,
    observer: Observer,
    app: BoundApp | None,
) -> RunResult:
    check_requirements(scenario, target)
    run_id = options.run_id or new_run_id()
    app_name = f"poolbench-{run_id}"
    probe = ServerProbe(target.url, target.backend, app_name)
    probe.open()
    try:
        check_supported(scenario.faults, target.backend, probe.server_version, target.embedded)
        return _Run(scenario, target, options, observer, probe, run_id, app_name, app).execute()
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
        app: BoundApp | None = None,
    ) -> None:
        self.scenario = scenario
        self.app = app
        self.target = target
        self.options = options
        self.observer = observer
        self.probe = probe
        self.run_id = run_id
        self.app_name = app_name
        self.processes = options.processes or scenario.fleet.processes
        self.notes: list[str] = list(app.notes) if app is not None else []
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
            engine=engine_kind(scenario, target.backend),
        )
        capacity = scenario.pool.capacity
        self.worst_case = None if capacity is None else capacity * self.processes
        self._first_timeout: tuple[float | None, str | None] = (None, None)
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._terminated = 0
        self._cpu_s: float | None = None  # CPU this process spent measuring

    # -- the run -------------------------------------------------------------------------------

    def _pools(self) -> Pools:
        if self.scenario.app is not None and self.scenario.app.served:
            from ..app.client import ClientPools
            from ..app.serve import serve_main
            from .fleet import FleetPools

            app = FleetPools(
                self.scenario,
                self.target,
                self.app_name,
                1,
                self._on_first_timeout,
                self.options.verbose,
                child_main=serve_main,
                name="app",
            )
            try:
                backend = self.target.backend
                plans = [
                    GroupPlan.build(i, g, backend) for i, g in enumerate(self.scenario.workload)
                ]
                return ClientPools(self.scenario, app, backend, self.target.scrub, plans)
            except BaseException:
                app.close()
                raise
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
            self.target.backend,
            self.app_name,
            self.target.scrub,
            on_first_timeout=self._on_first_timeout,
            verbose=self.options.verbose,
            app=self.app.app if self.app is not None else None,
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
            self.observer.started(self._header())
            interrupted = False
            if scenario.prefill and scenario.pool.poolclass == "QueuePool":
                pools.prefill(scenario.pool.pool_size)
            server.start()
            gate = self.options.start_gate
            started_wall = iso_ms(gate() if gate is not None else time.time())
            t0 = perf_counter()
            cpu0 = time.process_time()
            pools.begin(t0)
            ctrl_c = interrupts.current()
            try:
                try:
                    ctrl_c.measuring()
                    elapsed = self._measure(pools, faults, server, timeline, t0)
                    self._cpu_s = time.process_time() - cpu0
                    ctrl_c.finishing()
                except KeyboardInterrupt:
                    ctrl_c.finishing()  # from here a Ctrl-C skips the waiting only
                    interrupted = True
                    pools.stop_load()
                    elapsed = perf_counter() - t0
                    self._cpu_s = time.process_time() - cpu0
                    self.observer.stopping("interrupted: stopping and keeping what was measured")
                    self._sample(pools, server, timeline, elapsed, "interrupted")
                self._shutdown(pools, faults, server, timeline)
                interrupted = interrupted or ctrl_c.interrupted
            finally:
                server.close()
            totals, groups, per_process = pools.totals()
            self.notes.extend(n for n in totals.notes if n not in self.notes)
        finally:
            pools.close()
        summary = self._summary(elapsed, timeline, totals, groups)
        histograms = None
        if self.options.keep_histograms:
            histograms = [
                GroupLatencies(g.name, g.wait.to_counts(), g.hold.to_counts()) for g in groups
            ]
        checks.evaluate(
            summary,
            checks.parse_conditions(dict(scenario.thresholds)),
            checks.parse_conditions(dict(scenario.expect)),
            checks.expected_errors(scenario.faults),
            scenario.changed_by,
        )
        self.observer.finished()
        return RunResult(
            run_id=self.run_id,
            scenario=_scenario_info(scenario),
            started_at=started_wall,
            database=self.database,
            pool=_pool_info(scenario),
            load=_load_info(scenario),
            interval_s=scenario.interval,
            timeline=timeline.samples,
            summary=summary,
            interrupted=interrupted,
            notes=self.notes,
            variant=self.options.variant,
            variant_name=self.options.variant_name,
            faults=sorted(faults.events, key=lambda e: e.t_s),
            processes=per_process,
            histograms=histograms,
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
                # the last sample while the load still runs: after stop_load it would
                # describe the pool mid-shutdown (woken waiters, released sessions)
                self._sample(pools, server, timeline, end, phases[current].name or "")
                pools.stop_load()
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
        view, fresh = server.refresh(min(SERVER_WAIT_S, self.scenario.interval / 2))
        if not fresh:
            # the server did not answer in time (hung, restarting): the sample says it
            # does not know, rather than repeat an older count as if it were now
            view = None
        stale = None
        if view is not None and fresh and pools.exact_stale:
            # connections the pool holds that the server no longer has (closed by an idle
            # timeout, a kill or a restart, and not yet noticed). Only those open both
            # before and after the server was asked: one opened or closed meanwhile is not.
            stale = len((reading.open_ids & pools.open_ids()) - view.ids)
        self.observer.read(reading)
        sample = timeline.add(t_s, phase, reading, wait_p99, view, stale)
        if self.options.keep_histograms:
            sample.wait_counts = dict(reading.interval_wait)
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
        holding, waiting = pools.shutdown(self.options.grace_s)
        stragglers = holding + waiting
        server.close()
        remaining = self._server_count(pools)
        if remaining:
            self._terminated = self.probe.terminate(pools.server_ids())
            remaining = self._server_count(pools)
        if stragglers:
            self.notes.append(
                straggler_note(holding, waiting, self.options.grace_s, self._terminated)
            )
        elif self._terminated:
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
        connect = LatencyHistogram()
        connect.record_counts(totals.connect)
        maxima = timeline.maxima
        return Summary(
            duration_s=round(elapsed, 3),
            operations=totals.operations,
            ok=totals.ok,
            throughput_ops_s=round(totals.operations / elapsed, 2) if elapsed else 0.0,
            errors=Errors(
                timeouts=totals.errors["timeout"].count,
                first_timeout_at_s=_round(totals.first_timeout_at_s),
                first_timeout_message=totals.first_timeout_message,
                kinds=totals.errors,
                injected=totals.injected,
            ),
            latencies=Latencies(
                checkout_wait_ms=wait.percentiles(),
                hold_ms=hold.percentiles(),
                wait_probability=_round(min(1.0, totals.queued / wait.count), 4)
                if wait.count
                else None,
                connect_ms=connect.percentiles(),
            ),
            peaks=Peaks(
                checked_out=maxima.checked_out,
                overflow=maxima.overflow,
                waiting=maxima.waiting,
                server_connections=maxima.server,
                stale=maxima.stale,
                connections_open=maxima.open,
            ),
            leaks=Leaks(
                sessions=totals.leaked,
                at_first_timeout=totals.leaked_at_first_timeout,
                sites=totals.leak_sites,
                holders_at_first_timeout=totals.holders_at_first_timeout,
            ),
            keepalive_pings=totals.keepalive_pings,
            keepalive_errors=totals.keepalive_errors,
            dropped_arrivals=totals.dropped,
            late_arrivals=totals.late,
            pool_events=totals.events,
            sqlalchemy_warnings=totals.sqlalchemy_messages,
            groups=totals.group_summaries(),
            http=[e.summary() for e in totals.endpoints],
            server=ServerFigures(
                connections_at_exit=self._remaining,
                terminated_at_exit=self._terminated,
                worst_case=self.worst_case,
                headroom=None
                if self.worst_case is None or self.database.available_connections is None
                else self.database.available_connections - self.worst_case,
            ),
            processes=self.processes,
            client=client_load(
                self.scenario,
                totals.group_summaries(),
                # a fleet's load runs in other processes, whose CPU this one does not see
                self._cpu_s if self.processes == 1 else None,
                elapsed,
            ),
        )

    def _header(self) -> RunHeader:
        s = self.scenario
        return RunHeader(
            run_id=self.run_id,
            scenario=s.name,
            description=s.description.strip(),
            database=self.database,
            pool=_pool_info(s),
            load=_load_info(s),
            pool_size=(s.pool.pool_size if s.pool.poolclass == "QueuePool" else 0) * self.processes,
            capacity=self.worst_case,
            concurrency=s.load.concurrency,
            phased=bool(s.phases),
            processes=self.processes,
            duration_s=s.total_duration,
            interval_s=s.interval,
            variant=self.options.variant,
            variant_name=self.options.variant_name,
        )


def iso_ms(epoch_s: float) -> str:
    """An instant as UTC ISO 8601 with milliseconds, as every result's started_at."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _pool_info(s: Scenario) -> PoolInfo:
    return PoolInfo.from_dict({**s.pool.model_dump(), "create_engine": s.pool.describe()})


def _load_info(s: Scenario) -> LoadInfo:
    return LoadInfo.from_dict(
        {
            "model": "open" if s.load.open_loop else "closed",
            **s.load.model_dump(exclude_none=True),
            "phases": [p.model_dump(exclude_none=True) for p in s.effective_phases()],
            "workload": [g.model_dump() for g in s.workload],
        }
    )


def _scenario_info(s: Scenario) -> ScenarioInfo:
    return ScenarioInfo(
        name=s.name,
        description=s.description.strip(),
        duration_s=s.total_duration,
        thresholds=dict(s.thresholds),
        expect=dict(s.expect),
        leak_detection_s=s.leak_detection,
        expected_errors=checks.expected_errors(s.faults),
    )


def straggler_note(holding: int, waiting: int, grace_s: float, terminated: int) -> str:
    """What the requests still running ``grace_s`` after the end were doing, each number
    for what it is: holding a connection, or still waiting for one (they hold none)."""

    def requests(n: int) -> str:
        return f"{n} request" + ("" if n == 1 else "s")

    if holding and waiting:
        verb = "was" if waiting == 1 else "were"
        note = f"{requests(holding)} still held a connection and {waiting} {verb} still waiting "
        note += "for one"
    elif holding:
        note = f"{requests(holding)} still held a connection"
    else:
        verb = "was" if waiting == 1 else "were"
        note = f"{requests(waiting)} {verb} still waiting for a connection (holding none)"
    note += f" {grace_s:g}s after the end"
    if holding and terminated:
        ended = "1 was" if terminated == 1 else f"{terminated} were"
        note += f"; of the connections they held, {ended} ended on the server"
    return note
