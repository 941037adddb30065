"""One scenario against one database: set up, measure, and leave nothing behind.

:func:`run_scenario` is the whole measurement. Its shutdown releases every leaked
session, lets in-flight requests finish (for a grace period), disposes the engine,
and ends on the server side whatever is still connected, then checks the server shows
no connection of the run. Ctrl-C ends the measurement early and keeps what it measured.
"""

from __future__ import annotations

import gc
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from time import perf_counter
from typing import Any

from .. import checks, errors
from ..db.server import ServerProbe, probe_for
from ..db.target import Target
from ..metrics.recorder import Aggregator, Recorder
from ..result import (
    DatabaseInfo,
    FaultEvent,
    Progress,
    RunHeader,
    RunResult,
    Sample,
    Summary,
)
from ..scenario.model import Scenario
from ..units import format_duration
from .faults import FaultSchedule, KeepAliveJob, check_supported, install_idle_timeout
from .leaks import LeakDetector
from .load import driver_for
from .pool import PoolWatch, build_engine
from .requests import CheckoutTimer, GroupPlan, LeakRegistry, RequestExecutor
from .sampler import Sampler, ServerWatch
from .sqla_log import SqlaMessages


class Observer:
    """Receives a run's progress; the live view and the plain progress lines implement it.

    Methods are called from the runner's thread, except :meth:`first_timeout`, which a
    worker thread calls the moment it happens.
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
        """A kill or restart happened (called from the fault's own thread)."""

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


def new_run_id() -> str:
    return secrets.token_hex(4)


def check_requirements(scenario: Scenario, target_kind: str | None) -> None:
    """UnsupportedDatabase when the scenario needs another kind of database."""
    needed = scenario.database.requires
    if needed and target_kind != needed:
        names = {"mysql": "MySQL or MariaDB", "postgresql": "PostgreSQL"}
        got = (
            "the embedded PostgreSQL"
            if target_kind is None
            else names.get(target_kind, target_kind)
        )
        hint = f"pass --url, e.g. {_EXAMPLE_URL[needed]}"
        if needed == "postgresql":
            hint = "run it without --url and POOLBENCH_URL for the embedded PostgreSQL, or " + hint
        raise errors.UnsupportedDatabase(
            f"scenario {scenario.name!r} needs {names[needed]}; it was given {got} ({hint})"
        )


_EXAMPLE_URL = {
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
}


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
        self.notes: list[str] = []
        self.database = DatabaseInfo(
            url=target.masked,
            dialect=target.url.get_backend_name(),
            driver=target.url.get_driver_name(),
            server_version=probe.server_version,
            embedded=target.source == "embedded",
            max_connections=probe.max_connections,
            source=target.source,
        )
        self._leaks_at_first_timeout: int | None = None

    # -- the run -------------------------------------------------------------------------------

    def execute(self) -> RunResult:
        scenario = self.scenario
        try:
            plans = [
                GroupPlan.build(i, g, self.target.kind) for i, g in enumerate(scenario.workload)
            ]
        except ValueError as exc:
            raise errors.UnsupportedDatabase(f"scenario {scenario.name!r}: {exc}") from None
        engine = build_engine(self.target.url, scenario.pool, self.app_name)
        if scenario.faults.server_idle_timeout:
            install_idle_timeout(engine, self.target.kind, scenario.faults.server_idle_timeout)
        track_idle = any(k.which == "idle" for k in scenario.faults.kill)
        watch = PoolWatch(engine, scenario.pool, track_idle=track_idle)
        self.faults = FaultSchedule(
            scenario.faults,
            self.probe,
            self.target.embedded,
            watch.server_id_list,
            watch.idle_server_ids,
            self.observer.fault,
        )
        recorder = Recorder()
        leaks = LeakRegistry()
        stop = threading.Event()
        started_wall = datetime.now(timezone.utc).isoformat(timespec="seconds")
        executor = RequestExecutor(
            engine,
            recorder,
            leaks,
            stop,
            perf_counter(),
            self.target.scrub,
            self._on_first_timeout,
        )
        driver = driver_for(
            scenario.load.open_loop,
            executor=executor,
            plans=plans,
            threads=scenario.peak_workers(),
            seed=scenario.seed,
            stop=stop,
        )
        aggregator = Aggregator([(g.label, _behaviour(g)) for g in scenario.workload])
        server = ServerWatch(self.probe, watch.server_id_list)
        waiting = driver.waiting
        if any(g.api == "sessionmaker" for g in scenario.workload):
            # tasks open their own sessions: time every checkout at the pool instead
            timer = executor.timer = CheckoutTimer(engine)
            waiting = lambda: timer.in_flight  # noqa: E731
        self.leak_detector = None
        hooks = []
        if scenario.leak_detection:
            self.leak_detector = LeakDetector(engine, scenario.leak_detection)
            hooks.append(self.leak_detector.scan)
        sampler = Sampler(
            watch,
            recorder,
            aggregator,
            waiting,
            lambda: leaks.open_count,
            server,
            scenario.total_duration,
            self.options.verbose,
            hooks,
        )
        self.observer.started(self._header())
        keepalive = None
        if scenario.keepalive is not None:
            keepalive = KeepAliveJob(
                engine, scenario.keepalive.every, scenario.keepalive.query, stop
            )
        self.keepalive = keepalive
        interrupted = False
        elapsed = 0.0
        server.start()
        threading.Thread(target=leaks.run_reaper, name="poolbench-reaper", daemon=True).start()
        driver.start()  # threads wait for the first phase before sending anything
        if keepalive is not None:
            keepalive.start()
        t0 = executor.started_at = perf_counter()
        sqla = SqlaMessages(t0)
        try:
            with sqla:
                try:
                    elapsed = self._measure(driver, sampler, stop, t0)
                except KeyboardInterrupt:
                    interrupted = True
                    stop.set()
                    elapsed = perf_counter() - t0
                    self.observer.stopping("interrupted: stopping and keeping what was measured")
                    sampler.sample(elapsed, "interrupted")
                self._shutdown(stop, driver, leaks, server, engine, watch)
        finally:
            stop.set()
            driver.wake()
            leaks.release_all()
            server.close()
            engine.dispose()
            watch.remove()
            if self.leak_detector is not None:
                self.leak_detector.remove()
        summary = self._summary(elapsed, sampler, aggregator, recorder, driver, watch, sqla)
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
            timeline=sampler.timeline,
            summary=summary,
            interrupted=interrupted,
            notes=self.notes,
            variant=self.options.variant,
            variant_name=self.options.variant_name,
            faults=sorted(self.faults.events, key=lambda e: e.t_s),
        )

    def _measure(self, driver, sampler: Sampler, stop: threading.Event, t0: float) -> float:
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
        driver.set_phase(phases[0])
        next_tick = interval
        while True:
            now = perf_counter() - t0
            while current + 1 < len(phases) and now >= starts[current + 1]:
                current += 1
                driver.set_phase(phases[current])
            if now >= end:
                stop.set()
                sample, progress = sampler.sample(end, phases[current].name or "")
                self.observer.sampled(sample, progress)
                return end
            self.faults.fire_due(now)
            if now >= next_tick:
                sample, progress = sampler.sample(now, phases[current].name or "")
                self.observer.sampled(sample, progress)
                while next_tick <= now:
                    next_tick += interval
                continue
            upcoming = min(next_tick, end)
            if current + 1 < len(phases):
                upcoming = min(upcoming, starts[current + 1])
            fault_at = self.faults.next_at()
            if fault_at is not None:
                upcoming = min(upcoming, fault_at)
            time.sleep(max(0.0, upcoming - now))

    def _on_first_timeout(self, t_s: float, message: str, leaks: int) -> None:
        self._leaks_at_first_timeout = leaks
        if self.leak_detector is not None:
            self.leak_detector.note_first_timeout()
        self.observer.first_timeout(t_s, message)

    # -- leaving nothing behind -------------------------------------------------------------------

    def _shutdown(self, stop, driver, leaks, server, engine, watch) -> None:
        if self.leak_detector is not None:
            self._leak_sites = self.leak_detector.sites()  # before the cleanup returns them
        stop.set()
        driver.wake()
        self.faults.join(10)  # a restart in progress must finish before the cleanup
        if self.keepalive is not None:
            self.keepalive.join(self.options.grace_s)
        released = leaks.release_all()
        if released:
            self.observer.stopping(f"releasing {released} leaked sessions")
        stragglers = driver.join(self.options.grace_s)
        gc.collect()  # returns connections of sessions dropped without close()
        server.close()
        engine.dispose()
        if stragglers:
            self.notes.append(
                f"{stragglers} requests were still running {self.options.grace_s:g}s after "
                "the end; their connections were ended on the server"
            )
        self._terminated = 0
        remaining = self._server_count(watch)
        if remaining:
            self._terminated = self.probe.terminate(watch.server_id_list())
            remaining = self._server_count(watch)
            if self._terminated and not stragglers:
                self.notes.append(
                    f"{self._terminated} connections were still checked out after the "
                    "cleanup (held by code poolbench does not control); they were ended on "
                    "the server"
                )
        self._remaining = remaining

    def _server_count(self, watch: PoolWatch) -> int | None:
        """This run's connections the server still shows, once closes have settled."""
        count = None
        for _ in range(20):
            counts = self.probe.try_connections_by_state(watch.server_id_list())
            if counts is None:
                return None
            count = counts.get("total", 0)
            if count == 0:
                return 0
            time.sleep(0.05)
        return count

    # -- the figures ------------------------------------------------------------------------------

    def _summary(self, elapsed, sampler, aggregator, recorder, driver, watch, sqla) -> Summary:
        wait, hold, groups = aggregator.totals()
        kinds = recorder.errors.snapshot()
        maxima = sampler.maxima
        return Summary(
            duration_s=round(elapsed, 3),
            operations=aggregator.operations,
            ok=aggregator.ok,
            throughput_ops_s=round(aggregator.operations / elapsed, 2) if elapsed else 0.0,
            timeouts=kinds["timeout"].count,
            first_timeout_at_s=_round(recorder.errors.first_timeout_at_s),
            first_timeout_message=recorder.errors.first_timeout_message,
            errors=kinds,
            checkout_wait_ms=wait,
            hold_ms=hold,
            max_checked_out=maxima.checked_out,
            max_overflow=maxima.overflow,
            max_waiting=maxima.waiting,
            max_server_connections=maxima.server,
            max_stale=maxima.stale,
            leaked=recorder.leaks,
            leaked_at_first_timeout=self._leaks_at_first_timeout,
            injected_errors=aggregator.injected,
            keepalive_pings=self.keepalive.pings if self.keepalive else 0,
            keepalive_errors=self.keepalive.errors if self.keepalive else 0,
            dropped_arrivals=driver.dropped,
            late_arrivals=driver.late,
            pool_events=watch.events(),
            sqlalchemy_warnings=sqla.examples(),
            groups=groups,
            server_connections_at_exit=getattr(self, "_remaining", None),
            terminated_at_exit=getattr(self, "_terminated", 0),
            leak_sites=getattr(self, "_leak_sites", []),
            holders_at_first_timeout=self.leak_detector.holders_at_first_timeout
            if self.leak_detector is not None
            else None,
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
            pool_size=s.pool.pool_size if s.pool.poolclass == "QueuePool" else 0,
            capacity=s.pool.capacity,
            pool_timeout_s=s.pool.pool_timeout,
            load_line=_load_line(s),
            duration_s=s.total_duration,
            interval_s=s.interval,
            phases=phases,
            variant=self.options.variant,
            variant_name=self.options.variant_name,
        )


def _behaviour(group) -> str:
    """How a group's requests handle sessions, in a word or two."""
    if group.api == "sessionmaker":
        return "its own"
    return f"{group.session} (task)" if group.task else group.session


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _load_line(s: Scenario) -> str:
    groups = (
        ", ".join(f"{g.share / sum(x.share for x in s.workload):.0%} {g.label}" for g in s.workload)
        if len(s.workload) > 1
        else s.workload[0].session + " sessions"
    )
    if s.load.open_loop:
        model = f"open loop, {s.load.rate:g}/s, at most {s.load.concurrency} concurrent"
    else:
        model = f"closed loop, {s.load.workers} workers"
    phases = f", {len(s.phases)} phases" if s.phases else ""
    return f"{model}{phases}; {groups}; {format_duration(s.total_duration)}"


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
    }
