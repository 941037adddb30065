"""Scenario files: defaults, overrides, and one exact error line per kind of mistake."""

import textwrap

import pytest

from poolbench.errors import ScenarioError, UsageError
from poolbench.scenario import load_scenario, parse_scenario

BASE = """\
name: t
pool:
  pool_size: 5
workload:
  session: leaky
load:
  workers: 4
duration: 5s
"""


def error_of(text: str, overrides=()) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(textwrap.dedent(text), "s.yaml", overrides)
    return str(info.value)


def test_defaults_are_sqlalchemys():
    s = parse_scenario("name: t\nworkload: {}\nload: {workers: 1}\nduration: 1s\n", "s.yaml")
    assert (s.pool.pool_size, s.pool.max_overflow, s.pool.pool_timeout) == (5, 10, 30.0)
    assert s.pool.pool_recycle == -1 and not s.pool.pool_pre_ping
    assert s.pool.poolclass == "QueuePool" and s.pool.capacity == 15
    assert s.workload[0].session == "closed" and s.workload[0].query == "SELECT 1"
    assert s.interval == 1.0


def test_unlimited_pools_have_no_capacity():
    unlimited = parse_scenario(BASE + "", "s.yaml", ["pool.max_overflow=-1"])
    assert unlimited.pool.capacity is None
    assert parse_scenario(BASE, "s.yaml", ["pool.pool_size=0"]).pool.capacity is None


def test_unknown_key_names_line_and_suggests():
    text = BASE.replace("pool_size: 5", "pool_sise: 5")
    assert error_of(text) == "s.yaml:3: pool.pool_sise: unknown key; did you mean pool_size?"


def test_wrong_type():
    text = BASE.replace("pool_size: 5", "pool_size: five")
    assert error_of(text) == "s.yaml:3: pool.pool_size: expected a whole number, got 'five'"


def test_negative_timeout():
    text = BASE.replace("pool_size: 5", "pool_timeout: -1")
    assert error_of(text) == "s.yaml:3: pool.pool_timeout: must be >= 0, got -1"


def test_bad_duration():
    text = BASE.replace("duration: 5s", "duration: 5 parsecs")
    assert error_of(text) == (
        "s.yaml:8: duration: expected a duration such as 500ms, 10s or 2m, got '5 parsecs'"
    )


def test_bad_choice_suggests():
    text = BASE.replace("session: leaky", "session: leakky")
    assert error_of(text) == (
        "s.yaml:5: workload[0].session: expected one of 'closed', 'leaky', 'unclosed' or "
        "'leak_on_error', got 'leakky'; did you mean leaky?"
    )


def test_yaml_syntax_error_has_line():
    assert error_of("name: t\nworkload: [session: leaky\nload: {workers: 1}\n").startswith(
        "s.yaml:3: invalid YAML:"
    )


def test_missing_key():
    assert error_of("name: t\nload: {workers: 1}\nduration: 1s\n") == (
        "s.yaml: workload: required key is missing"
    )


def test_top_level_must_be_mapping():
    assert error_of("- a\n- b\n") == (
        "s.yaml: the top level must be a mapping of keys (name:, pool:, ...)"
    )


def test_closed_or_open_loop_not_both():
    text = BASE.replace("workers: 4", "workers: 4\n  rate: 10/s")
    assert error_of(text) == (
        "s.yaml:7: load: give either workers (closed loop) or rate (open loop), not both"
    )


def test_threshold_figure_is_checked():
    text = BASE + 'thresholds:\n  timeout: "== 0"\n'
    assert error_of(text) == (
        "s.yaml:10: thresholds.timeout: unknown figure 'timeout'; did you mean timeouts?"
    )


def test_threshold_condition_is_checked():
    text = BASE + 'thresholds:\n  timeouts: "=< 0"\n'
    assert "thresholds.timeouts: expected a condition such as" in error_of(text)


def test_leak_hold_needs_a_leaking_session():
    text = BASE.replace("session: leaky", "session: closed\n  leak_hold: 2s")
    assert error_of(text) == (
        "s.yaml:5: workload[0]: leak_hold applies only to session: leaky or leak_on_error"
    )


def test_leak_on_error_needs_error_rate():
    text = BASE.replace("session: leaky", "session: leak_on_error")
    assert "needs error_rate > 0" in error_of(text)


def test_set_overrides_any_key_and_is_named_in_errors():
    s = parse_scenario(
        BASE,
        "s.yaml",
        ["pool.pool_size=20", "workload[0].session=closed", "workload.0.hold=50ms", "seed=3"],
    )
    assert s.pool.pool_size == 20 and s.workload[0].session == "closed"
    assert s.workload[0].hold.mean == 0.05 and s.seed == 3
    assert error_of(BASE, ["pool.pool_size=-3"]) == "--set pool.pool_size=-3: must be >= 0, got -3"


def test_malformed_set_is_a_usage_error():
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_scenario(BASE, "s.yaml", ["pool.pool_size"])
    with pytest.raises(UsageError, match="there is no item 3"):
        parse_scenario(BASE, "s.yaml", ["workload[3].session=closed"])


def test_distributions():
    text = BASE.replace(
        "session: leaky",
        "session: closed\n  hold: {exponential: 40ms}\n  think: {uniform: [1s, 3s]}",
    )
    group = parse_scenario(text, "s.yaml").workload[0]
    assert (group.hold.kind, group.hold.mean) == ("exponential", 0.04)
    assert (group.think.kind, group.think.low, group.think.high) == ("uniform", 1.0, 3.0)
    assert group.think.mean == 2.0
    bad = BASE.replace("session: leaky", "hold: {gaussian: 3s}")
    assert "unknown distribution 'gaussian'" in error_of(bad)


def test_phases_give_the_duration_and_inherit_the_load():
    text = BASE.replace(
        "duration: 5s", "phases:\n  - {duration: 2s}\n  - {duration: 3s, workers: 0}"
    )
    s = parse_scenario(text, "s.yaml")
    assert s.total_duration == 5.0
    assert [(p.duration, p.workers) for p in s.effective_phases()] == [(2.0, 4), (3.0, 0)]
    scaled = s.with_duration(10)
    assert [p.duration for p in scaled.effective_phases()] == [4.0, 6.0]


def test_phases_must_match_the_load_model():
    text = BASE.replace("duration: 5s", "phases:\n  - {duration: 2s, rate: 5/s}")
    assert "take workers, not rate" in error_of(text)


def test_duration_and_phases_must_agree():
    text = BASE + "phases:\n  - {duration: 2s}\n"
    assert "differs from the sum of phases" in error_of(text)


def test_file_errors(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ScenarioError, match="the file is empty"):
        load_scenario(empty)


def test_bundled_names_resolve():
    assert load_scenario("leaky-sessions").name == "leaky-sessions"
    with pytest.raises(ScenarioError, match="did you mean leaky-sessions"):
        load_scenario("leaky-sesions")


def test_yaml_booleans_in_names_get_a_hint():
    text = BASE.replace("duration: 5s", "phases:\n  - {name: off, duration: 2s}")
    assert error_of(text) == (
        "s.yaml:9: phases[0].name: expected text, got False "
        "(quote it: YAML reads on/off/yes/no as true/false)"
    )
