"""poolbench size: measure the load, predict with Erlang C, check by measurement, recommend.

1. Calibrate: run the scenario's open-loop rate against a pool too big to queue, and
   measure the arrival rate and the mean time a request holds its connection.
2. Predict: offered load a = rate x mean hold (Little's law); for each candidate number of
   connections c, Erlang C's chance of waiting, wait percentiles and chance of a timeout.
3. Measure: short trials at candidate sizes, searching (not a full grid) from the
   model's answer: down by bisection when it meets the SLO, up by doubling when not.
4. Recommend pool_size (the smallest measured size meeting the SLO at the steady rate),
   max_overflow (enough for ``load.peak_rate`` by the model, checked by a trial),
   pool_timeout, and for a fleet the per-process sizes against the server's free
   connections.

Everything the search ran is kept: the trials are ordinary runs, so they render as a
comparison (JSON, HTML) like --vary runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import checks, errors
from ..engine.runner import RunOptions, run_scenario
from ..result import RunResult
from ..result.observer import Observer
from ..result.sizing import Measured, Prediction, Recommendation, SizingResult, Trial
from ..scenario.model import Scenario
from . import erlang

# The SLO figures --slo may name; each means "at most this".
SLO_FIGURES = {
    "checkout_wait_p50_ms": 0.50,
    "checkout_wait_p90_ms": 0.90,
    "checkout_wait_p99_ms": 0.99,
    "wait_probability": None,
    "timeouts": None,
    "error_rate": None,
}
TIMEOUT_PROBABILITY_FOR_ZERO = 1e-4  # the model's reading of "timeouts = 0"
HEADROOM_MARGIN = 0.10  # keep this share of the server's free connections spare
MAX_POOL = 500


def parse_slos(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["checkout_wait_p99_ms=50", "timeouts=0"]`` -> {figure: maximum}."""
    slos: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SLO_FIGURES:
            known = ", ".join(SLO_FIGURES)
            raise errors.UsageError(f"--slo {item}: expected FIGURE=MAX with FIGURE one of {known}")
        try:
            slos[key] = float(value)
        except ValueError:
            raise errors.UsageError(f"--slo {item}: {value!r} is not a number") from None
        if slos[key] < 0:
            raise errors.UsageError(f"--slo {item}: must not be negative")
    if not slos:
        raise errors.UsageError("give at least one --slo, e.g. --slo checkout_wait_p99_ms=50")
    return slos


def _prediction(model: erlang.Prediction, meets_slo: bool | None = None) -> Prediction:
    return Prediction.from_dict({**model.to_dict(), "meets_slo": meets_slo})


def measured_of(result: RunResult) -> Measured:
    s = result.summary
    return Measured(
        wait_probability=s.latencies.wait_probability,
        checkout_wait_p50_ms=s.latencies.checkout_wait_ms.p50,
        checkout_wait_p90_ms=s.latencies.checkout_wait_ms.p90,
        checkout_wait_p99_ms=s.latencies.checkout_wait_ms.p99,
        timeouts=s.timeouts,
        errors=s.error_count,
        error_rate=round(s.error_count / s.operations, 5) if s.operations else 0.0,
        throughput_ops_s=s.throughput_ops_s,
        dropped_arrivals=s.dropped_arrivals,
        connects=s.pool_events.connects,
    )


def slo_failures(measured: Measured, slos: dict[str, float]) -> list[str]:
    failed = []
    for figure, limit in slos.items():
        value = getattr(measured, figure)
        if value is None or value > limit:
            failed.append(f"{figure} {value if value is not None else 'not measured'} > {limit:g}")
    if measured.dropped_arrivals:
        failed.append(f"{measured.dropped_arrivals} arrivals dropped (max_concurrency reached)")
    return failed


def trial_failures(result: RunResult, measured: Measured, slos: dict[str, float]) -> list[str]:
    """Why a trial does not count as meeting the SLO: the SLOs it missed, and requests
    that failed with errors the scenario did not set out to cause."""
    failed = slo_failures(measured, slos)
    work = checks.failure_line(result.summary)
    if work:
        failed.append(work)
    return failed


def model_targets(slos: dict[str, float], pool_timeout_s: float) -> dict[str, Any]:
    """The SLOs as targets for ``erlang.smallest_pool``. Timeouts are the only errors the
    model knows of: "timeouts = 0" is read as P(timeout) <= 1e-4."""
    targets: dict[str, Any] = {"max_wait_ms": {}}
    timeout_probabilities = []
    for figure, limit in slos.items():
        quantile = SLO_FIGURES[figure]
        if quantile is not None:
            targets["max_wait_ms"][quantile] = limit
        elif figure == "wait_probability":
            targets["max_wait_probability"] = limit
        elif figure == "timeouts":
            timeout_probabilities.append(
                TIMEOUT_PROBABILITY_FOR_ZERO if limit == 0 else 10 * TIMEOUT_PROBABILITY_FOR_ZERO
            )
        elif figure == "error_rate":
            timeout_probabilities.append(limit)
    if timeout_probabilities:
        targets["timeout_s"] = pool_timeout_s
        targets["max_timeout_probability"] = min(timeout_probabilities)
    return targets


def smallest_by_model(
    slos: dict[str, float], a: float, mean_hold_s: float, pool_timeout_s: float
) -> int:
    """The fewest connections the model says meet every SLO (more never hurts, in it)."""
    try:
        return erlang.smallest_pool(
            a, mean_hold_s, limit=MAX_POOL, **model_targets(slos, pool_timeout_s)
        )
    except ValueError:
        raise errors.PoolbenchError(
            f"no pool up to {MAX_POOL} connections meets the SLO by the model"
        ) from None


class Planner:
    """Runs the calibration and the trials; ``plan()`` returns a SizingResult."""

    def __init__(
        self,
        scenario: Scenario,
        target: Any,
        slos: dict[str, float],
        processes: int = 1,
        calibration_s: float = 10.0,
        trial_s: float = 10.0,
        observer_for: Callable[[str], Observer] | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        if not scenario.load.open_loop or not scenario.load.rate:
            raise errors.UsageError(
                "poolbench size needs an open-loop load (load: {rate: 200/s}): a closed "
                "loop's arrival rate depends on the pool being sized"
            )
        self.scenario = scenario
        self.target = target
        self.slos = slos
        self.processes = processes
        self.calibration_s = calibration_s
        self.trial_s = trial_s
        self.observer_for = observer_for or (lambda label: Observer())
        self.report = report or (lambda text: None)
        self.runs: list[RunResult] = []

    def _run(
        self,
        label: str,
        pool_size: int,
        max_overflow: int,
        duration: float,
        rate: float | None = None,
        prefill: bool = True,
    ) -> RunResult:
        s = self.scenario
        load = s.load if rate is None else s.load.model_copy(update={"rate": rate})
        concurrency = max(load.concurrency, (pool_size + max(max_overflow, 0)) * 4)
        scenario = s.model_copy(
            update={
                "pool": s.pool.model_copy(
                    update={
                        "poolclass": "QueuePool",
                        "pool_size": pool_size,
                        "max_overflow": max_overflow,
                    }
                ),
                "load": load.model_copy(update={"max_concurrency": concurrency}),
                "phases": [],
                "duration": duration,
                "variants": [],
                "thresholds": {},
                "expect": {},
                # measure the steady state: the pool starts as a warmed-up service's
                # does, so connect time and first-connect setup stay out of the trial
                "prefill": prefill,
            }
        )
        options = RunOptions(
            processes=self.processes,
            variant={"pool.pool_size": pool_size, "pool.max_overflow": max_overflow},
            variant_name=label,
        )
        result = run_scenario(scenario, self.target, options, self.observer_for(label))
        self.runs.append(result)
        if result.interrupted:
            raise KeyboardInterrupt
        return result

    def plan(self) -> SizingResult:
        s = self.scenario
        per = self.processes
        declared = s.load.rate or 0.0
        # 1. calibrate with a pool too big to queue in (per process)
        big = max(4, math.ceil(s.load.concurrency / per))
        self.report(f"calibrating: {declared:g}/s with a pool of {big} per process")
        # (no prefill: the hold time it measures does not depend on connecting)
        calibration = self._run("calibration", big, 0, self.calibration_s, prefill=False)
        cs = calibration.summary
        rate = cs.operations / cs.duration_s if cs.duration_s else declared
        hold_s = (cs.latencies.hold_ms.mean or 0.0) / 1000.0
        if not hold_s or not rate:
            raise errors.PoolbenchError("the calibration run measured no requests")
        rate_pp = rate / per
        a = erlang.offered_load(rate_pp, hold_s)
        timeout_s = s.pool.pool_timeout
        self.report(
            f"measured {rate:.1f}/s, mean hold {hold_s * 1000:.2f} ms: offered load "
            f"{a:.2f} connections per process"
        )
        # 2. predict
        c_model = smallest_by_model(self.slos, a, hold_s, timeout_s)
        top = max(c_model + 3, math.ceil(a) + 4)
        predictions = [
            _prediction(erlang.predict(c, rate_pp, hold_s, timeout_s), meets_slo=c >= c_model)
            for c in range(max(1, math.floor(a)), top + 1)
        ]
        # 3. measure: bisection around the model's answer
        trials: dict[int, Trial] = {}

        def trial(c: int) -> Trial:
            if c not in trials:
                result = self._run(f"pool_size={c}", c, 0, self.trial_s, rate=declared)
                measured = measured_of(result)
                failed = trial_failures(result, measured, self.slos)
                pred = _prediction(erlang.predict(c, rate_pp, hold_s, timeout_s))
                trials[c] = Trial(
                    "steady", c, 0, declared, pred, measured, not failed, failed, result.run_id
                )
                verdict = "meets the SLO" if not failed else "misses: " + "; ".join(failed)
                self.report(f"trial pool_size={c}: {verdict}")
            return trials[c]

        measured_best, refusal = self._search(trial, c_model, max(0, math.floor(a)))
        # A short trial can be lucky; the model is the long run. Where the measurement is
        # worse than the model (connect time, the GIL, unfair wake-ups) it decides; where it
        # is better, the model does: recommend a size both say meets the SLO.
        best = max(measured_best or 0, c_model)
        if measured_best is not None and best > measured_best:
            self.report(
                f"pool_size={measured_best} met the SLO in its trial, the model needs {best}: "
                f"recommending {best}"
            )
        if best in trials and not trials[best].slo_met:  # never recommend a failed trial
            refusal = refusal or f"pool_size={best} missed the SLO in its own trial"
        # 4. recommend
        peak = s.load.peak_rate
        overflow = 0
        steps = list(trials.values())
        if peak and refusal is None:
            peak_pp = peak / per
            a_peak = erlang.offered_load(peak_pp, hold_s)
            c_peak = max(best, smallest_by_model(self.slos, a_peak, hold_s, timeout_s))
            overflow = c_peak - best
            result = self._run(f"peak {peak:g}/s", best, overflow, self.trial_s, rate=peak)
            measured = measured_of(result)
            failed = trial_failures(result, measured, self.slos)
            pred = _prediction(erlang.predict(c_peak, peak_pp, hold_s, timeout_s))
            steps.append(
                Trial(
                    "peak", best, overflow, peak, pred, measured, not failed, failed, result.run_id
                )
            )
            verdict = "meets the SLO" if not failed else "misses: " + "; ".join(failed)
            self.report(f"peak trial pool_size={best}, max_overflow={overflow}: {verdict}")
            if failed:
                refusal = (
                    f"the peak trial (pool_size={best}, max_overflow={overflow}, {peak:g}/s) "
                    f"missed the SLO: {'; '.join(failed)}; nothing tried meets it at the peak "
                    "rate (try a larger max_overflow with poolbench run, or a looser SLO)"
                )
        recommendation = None
        if refusal is None:
            recommendation = self._recommend(best, overflow, hold_s, peak or rate, calibration)
            recommendation.measured_minimum = measured_best
            recommendation.model_minimum = c_model
        return SizingResult(
            scenario=s.name,
            slo=dict(self.slos),
            processes=per,
            rate_per_s=round(rate, 3),
            declared_rate_per_s=declared,
            peak_rate_per_s=peak,
            mean_hold_ms=round(hold_s * 1000, 3),
            hold_p99_ms=cs.latencies.hold_ms.p99,
            offered_load=round(a, 4),
            predictions=predictions,
            trials=sorted(steps, key=lambda t: (t.role != "steady", t.pool_size)),
            recommendation=recommendation,
            runs=self.runs,
            no_recommendation=refusal,
        )

    def _search(
        self, trial: Callable[[int], Trial], start: int, floor_c: int
    ) -> tuple[int | None, str | None]:
        """The smallest measured size meeting the SLO, assuming more connections never
        hurt: bisection below the model's answer when it holds, doubling above when not.
        ``(None, why)`` when no size tried met it."""
        good = None
        bad = floor_c  # at or below the offered load the queue grows without bound
        c = max(start, bad + 1)
        limit = min(MAX_POOL, max(4 * start, start + 8))
        while good is None:
            if trial(c).slo_met:
                good = c
            else:
                bad = c
                if c >= limit:
                    return None, (
                        f"no pool up to {c} connections met the SLO in a trial, while the "
                        f"model says {start} suffice: the wait is not the pool's (see the "
                        "trials: connect time, a saturated CPU, a slow server, failing work)"
                    )
                c = min(limit, c * 2)
        while good - bad > 1:
            mid = (good + bad) // 2
            if trial(mid).slo_met:
                good = mid
            else:
                bad = mid
        return good, None

    def _recommend(
        self, pool_size: int, overflow: int, hold_s: float, top_rate: float, calibration: RunResult
    ) -> Recommendation:
        per = self.processes
        c = pool_size + overflow
        a = erlang.offered_load(top_rate / per, hold_s)
        # long enough that a healthy pool at its busiest essentially never times out
        tail = erlang.wait_percentile(c, a, hold_s, 1 - 1e-6) if a < c else 30.0
        pool_timeout = min(30.0, max(1.0, math.ceil(tail * 2 * 2) / 2))
        fleet = per * c
        available = calibration.database.available_connections
        notes = []
        fits = None
        if available is not None:
            usable = math.floor(available * (1 - HEADROOM_MARGIN))
            fits = fleet <= usable
            if not fits:
                notes.append(
                    f"{per} processes x {c} = {fleet} connections exceed the {usable} the "
                    f"server can spare ({available} free, less a {HEADROOM_MARGIN:.0%} "
                    "margin): run fewer processes, raise max_connections, or put PgBouncer "
                    "(or ProxySQL) in front"
                )
        pre_ping = ", pool_pre_ping=True" if self.scenario.pool.pool_pre_ping else ""
        line = (
            f"create_engine(url, pool_size={pool_size}, max_overflow={overflow}, "
            f"pool_timeout={pool_timeout:g}{pre_ping})"
        )
        notes.append(
            "pool_timeout: long enough that the model gives a healthy pool at its busiest a "
            "one-in-a-million chance of waiting that long; keep it below your request timeout"
        )
        return Recommendation(
            pool_size, overflow, pool_timeout, per, fleet, available, fits, line, notes
        )
