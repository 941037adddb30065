"""poolbench as its own bottleneck (issue 8 §4): busy CPU and holds longer than asked."""

import textwrap

import pytest

from poolbench.engine.saturation import client_load
from poolbench.result import GroupSummary, Percentiles
from poolbench.scenario import parse_scenario

from .conftest import run_yaml

SCENARIO = """
name: many
workload:
  - {name: a, hold: 10ms, share: 1}
  - {name: b, hold: {kind: exponential, mean: 5ms}, share: 1}
  - {name: c, hold: 10ms, hold_in: server, share: 1}
load: {workers: 4}
duration: 1s
"""


def group(name: str, hold_p50_ms: float) -> GroupSummary:
    hold = Percentiles(count=10, p50=hold_p50_ms)
    return GroupSummary(name, "closed", 10, 10, 0, 0, Percentiles(), hold)


def test_busy_cpu_and_inflated_holds_mean_the_client_is_saturated():
    scenario = parse_scenario(textwrap.dedent(SCENARIO), "s.yaml")
    # a: 83 ms for 10 ms asked (8.3x); b: its median 3.47 ms asked; c: held on the server
    groups = [group("a", 83.0), group("b", 4.0), group("c", 500.0)]
    c = client_load(scenario, groups, cpu_s=1.9, elapsed_s=2.0)
    assert (c.cpu_cores, c.hold_inflation, c.saturated) == (0.95, 8.3, True)
    # holds as asked: not saturated, however busy
    calm = client_load(scenario, [group("a", 10.4), group("b", 3.6), group("c", 1.0)], 1.9, 2.0)
    assert calm.hold_inflation == pytest.approx(1.04, abs=0.01) and not calm.saturated
    # inflated holds on an idle process: the machine was busy with others, not poolbench
    assert not client_load(scenario, groups, cpu_s=0.2, elapsed_s=2.0).saturated
    # a fleet: this process does not see its workers' CPU
    fleet = client_load(scenario, groups, cpu_s=None, elapsed_s=2.0)
    assert fleet.cpu_cores is None and not fleet.saturated


@pytest.mark.postgres
def test_a_run_reports_its_cpu_and_hold_inflation(pg_url):
    text = """
    name: light
    pool: {pool_size: 2, max_overflow: 0, pool_timeout: 2s}
    workload: {hold: 20ms, think: 20ms}
    load: {workers: 2}
    duration: 1s
    """
    result = run_yaml(text, pg_url)
    c = result.summary.client
    assert c is not None and 0 < c.cpu_cores < 2
    assert c.hold_inflation >= 1.0  # a hold is never shorter than asked
    assert result.to_dict()["summary"]["client"]["saturated"] is c.saturated
