"""poolbench size: SLO parsing and the model's verdicts (pure), then the whole search
against a real server, checked by a run at the recommended size."""

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from poolbench.cli import main
from poolbench.db.target import Target, parse_url
from poolbench.engine.runner import run_scenario
from poolbench.errors import UsageError
from poolbench.result.document import load_document
from poolbench.scenario import load_scenario
from poolbench.sizing import erlang
from poolbench.sizing.planner import Planner, parse_slos, smallest_by_model


def test_slos_are_parsed_and_checked():
    assert parse_slos(["checkout_wait_p99_ms=50", "timeouts=0"]) == {
        "checkout_wait_p99_ms": 50.0,
        "timeouts": 0.0,
    }
    for bad, message in [
        ([], "give at least one --slo"),
        (["p99=50"], "expected FIGURE=MAX"),
        (["timeouts=none"], "'none' is not a number"),
        (["timeouts=-1"], "must not be negative"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_slos(bad)


def test_the_model_verdict_follows_erlang_c():
    # a = 3 erlangs of 20 ms holds: c = 4 waits p99 ~ 78 ms, c = 5 ~ 32 ms
    rate, hold = 150.0, 0.020
    a = erlang.offered_load(rate, hold)
    assert erlang.wait_percentile(4, a, hold, 0.99) * 1000 > 50
    assert erlang.wait_percentile(5, a, hold, 0.99) * 1000 <= 50
    assert smallest_by_model({"checkout_wait_p99_ms": 50.0}, a, hold, 2.0) == 5
    # timeouts = 0 means P(wait > pool_timeout) <= 1e-4
    c = smallest_by_model({"timeouts": 0}, a, hold, 2.0)
    assert 3 < c <= 6
    assert erlang.timeout_probability(c, a, hold, 2.0) <= 1e-4
    assert erlang.timeout_probability(c - 1, a, hold, 2.0) > 1e-4
    # p50 and p90 targets are honoured too
    both = smallest_by_model(
        {"checkout_wait_p50_ms": 0.001, "checkout_wait_p99_ms": 50}, a, hold, 2.0
    )
    assert erlang.wait_percentile(both, a, hold, 0.5) * 1000 <= 0.001 and both >= 5


def test_sizing_needs_an_open_loop():
    scenario = load_scenario("closed-sessions")
    with pytest.raises(UsageError, match="needs an open-loop load"):
        Planner(scenario, None, {"timeouts": 0})


@pytest.mark.postgres
def test_the_recommendation_meets_the_slo_when_run(pg_url):
    target = Target(parse_url(pg_url, "t"), "--url")
    scenario = load_scenario("sizing")
    slo = {"checkout_wait_p99_ms": 50.0, "timeouts": 0.0}
    reports: list[str] = []
    result = Planner(
        scenario, target, slo, calibration_s=3, trial_s=3, report=reports.append
    ).plan()
    if result.recommendation is None and "missed the SLO" in (result.no_recommendation or ""):
        # a 3 s trial's p99 is a handful of requests: one slow wake-up on a busy machine
        # misses a 50 ms SLO. The planner rightly refuses then; plan once more, and two
        # refusals in a row fail the test
        reports.append(f"first plan refused: {result.no_recommendation}")
        result = Planner(
            scenario, target, slo, calibration_s=3, trial_s=3, report=reports.append
        ).plan()
    assert 100 < result.rate_per_s < 170 and 15 < result.mean_hold_ms < 40
    assert abs(result.offered_load - result.rate_per_s * result.mean_hold_ms / 1000) < 0.01
    steady = [t for t in result.trials if t.role == "steady"]
    assert steady and any(t.slo_met for t in steady)
    r = result.recommendation
    assert r is not None, (result.no_recommendation, reports)
    assert r.pool_size == max(r.measured_minimum, r.model_minimum)
    assert r.pool_size >= 4 and r.max_overflow >= 1  # peak_rate 300/s needs more than 150/s
    assert r.create_engine.startswith(f"create_engine(url, pool_size={r.pool_size}, ")
    # the check the issue asks for: a run at the recommended size meets the SLO
    check = load_scenario(
        "sizing",
        [
            f"pool.pool_size={r.pool_size}",
            f"pool.max_overflow={r.max_overflow}",
            f"pool.pool_timeout={r.pool_timeout_s}",
            "prefill=true",
            "duration=6s",
        ],
    )
    s = run_scenario(check, target).summary
    assert s.timeouts == 0 and s.latencies.checkout_wait_ms.p99 <= 50, s.latencies.checkout_wait_ms
    document = result.to_dict()
    assert document["kind"] == "size" and len(document["runs"]) == len(result.runs)
    json.dumps(document, allow_nan=False)


@pytest.mark.mysql
def test_size_from_the_command_line_for_a_fleet(mysql_url, tmp_path):
    out = tmp_path / "size.json"
    result = CliRunner().invoke(
        main,
        [
            "size",
            "sizing",
            "--url",
            mysql_url,
            "--slo",
            "checkout_wait_p99_ms=60",
            "--processes",
            "2",
            "--calibration",
            "3s",
            "--trial",
            "3s",
            "--json",
            str(out),
        ],
        env={"POOLBENCH_URL": ""},
    )
    assert result.exit_code == 0, result.output
    assert "recommended: pool_size=" in result.output and "in each of 2 processes" in result.output
    doc = json.loads(out.read_text())
    r = doc["recommendation"]
    assert doc["processes"] == 2 and r["processes"] == 2
    assert r["fleet_connections"] == 2 * (r["pool_size"] + r["max_overflow"])
    assert r["fits_server"] is True
    assert all(run["processes"] and len(run["processes"]) == 2 for run in doc["runs"])


class ScriptedPlanner(Planner):
    """The planner's logic over recorded runs: each run of a label gets the checkout
    wait p99 the script gives it (pure logic; the runs themselves are tested above)."""

    def __init__(self, p99_of, **kwargs):
        super().__init__(load_scenario("sizing"), None, {"checkout_wait_p99_ms": 50.0}, **kwargs)
        doc = load_document(json.loads((Path(__file__).parent / "data" / "size.json").read_text()))
        self.base = doc.runs[0]
        self.p99_of = p99_of

    def _run(self, label, pool_size, max_overflow, duration, rate=None, prefill=True):
        result = copy.deepcopy(self.base)
        result.summary.latencies.checkout_wait_ms.p99 = self.p99_of(label, pool_size, max_overflow)
        result.summary.errors.timeouts = 0
        self.runs.append(result)
        return result


def test_size_never_recommends_a_configuration_whose_peak_trial_failed():
    # every steady trial meets p99 <= 50 ms; the peak trial misses it (108 ms)
    planner = ScriptedPlanner(lambda label, c, o: 108.0 if label.startswith("peak") else 5.0)
    result = planner.plan()
    assert result.recommendation is None
    (peak,) = [t for t in result.trials if t.role == "peak"]
    assert not peak.slo_met and peak.failed == ["checkout_wait_p99_ms 108.0 > 50"]
    assert result.no_recommendation.startswith(
        f"the peak trial (pool_size={peak.pool_size}, max_overflow={peak.max_overflow}, 300/s) "
        "missed the SLO: checkout_wait_p99_ms 108.0 > 50"
    )
    assert load_document(result.to_dict()).sizing.no_recommendation == result.no_recommendation
    # and when the peak trial holds, the recommendation is the one it tried
    good = ScriptedPlanner(lambda label, c, o: 5.0).plan()
    (peak,) = [t for t in good.trials if t.role == "peak"]
    r = good.recommendation
    assert r is not None and (r.pool_size, r.max_overflow) == (peak.pool_size, peak.max_overflow)


@pytest.mark.postgres
def test_size_says_so_and_exits_1_when_no_size_meets_the_slo(pg_url, tmp_path):
    out = tmp_path / "size.json"
    result = CliRunner().invoke(
        main,
        ["size", "sizing", "--url", pg_url, "--slo", "checkout_wait_p50_ms=0",
         "--calibration", "1s", "--trial", "1s", "--json", str(out)],
        env={"POOLBENCH_URL": ""},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "recommended:" not in result.output
    (last,) = [
        line for line in result.output.splitlines() if line.startswith("no recommendation: ")
    ]
    assert last.startswith("no recommendation: no pool up to ")
    doc = json.loads(out.read_text())
    assert doc["recommendation"] is None and doc["no_recommendation"].startswith("no pool up to ")
    assert doc["trials"] and not any(t["slo_met"] for t in doc["trials"])
