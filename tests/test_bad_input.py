"""Bad input never gives a traceback: one line naming the file and the key, exit 2 for a
scenario or a flag, 3 for the database; and a fuzz test of the scenario loader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolbench.cli import main
from poolbench.errors import ScenarioError, UsageError
from poolbench.scenario import parse_scenario
from poolbench.scenario.limits import max_threads
from poolbench.scenario.yamlsafe import MAX_DEPTH, MAX_VALUES

BASE = """\
name: t
pool: {pool_size: 2, pool_timeout: 1s}
workload: {hold: 10ms}
load: {workers: 2}
duration: 1s
"""
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Exit code and stderr+stdout of poolbench ARGS run in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POOLBENCH_URL": ""}
    done = subprocess.run(
        [sys.executable, "-m", "poolbench", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )
    return done.returncode, done.stderr + done.stdout


def one_error_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def error_of(text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml", overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# --- the scenario file ------------------------------------------------------------


def test_non_utf8_file_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, "bad.yaml", BASE.encode() + b"description: caf\xe9\n")
    code, out = cli("validate", str(path))
    assert code == 2
    assert one_error_line(out) == f"poolbench: error: {path}:6: not UTF-8 text (byte 0xe9)"


def test_deep_nesting_is_refused_not_a_recursion_error():
    deep = "x: " + "[" * 3000 + "]" * 3000 + "\n"
    assert error_of(BASE + deep) == (
        f"s.yaml:6: invalid YAML: nested deeper than {MAX_DEPTH} levels"
    )


def test_long_integers_are_refused_where_they_are():
    digits = "9" * 5000
    assert error_of(BASE.replace("workers: 2", f"workers: {digits}")) == (
        "s.yaml:4: invalid YAML: a number of 5000 digits (at most 30)"
    )


def test_a_400_digit_duration_is_one_line():
    message = error_of(BASE.replace("duration: 1s", f"duration: {'9' * 400}s"))
    assert message.startswith("s.yaml:5: duration: a duration of at most 168h, got '999")
    assert len(message) < 120


@pytest.mark.parametrize(
    "key, value",
    [("duration", "1e400"), ("duration", 10**25), ("pool.pool_timeout", 10**25)],
)
def test_huge_numbers_from_overrides_are_bounded(key, value):
    message = error_of(BASE, (f"{key}={value}",))
    assert "at most 168h" in message or "expected a duration" in message


def test_pool_size_is_bounded():
    assert error_of(BASE, ("pool.pool_size=1000000000",)) == (
        "--set pool.pool_size=1000000000: must be <= 100000, got 1000000000"
    )


def test_rates_are_bounded():
    text = BASE.replace("load: {workers: 2}", f"load: {{rate: {10**20}}}")
    assert "a rate of at most 1e+06/s" in error_of(text)


def test_alias_bomb_in_variants_set_is_bounded():
    anchors = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        anchors.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    bomb = "variants:\n  - set:\n" + "".join(f"      {line}\n" for line in anchors)
    message = error_of(BASE + bomb)
    assert message.startswith("s.yaml:")
    assert f"expands to more than {MAX_VALUES} values" in message


def test_alias_bomb_anywhere_is_bounded():
    anchors = ["k0: &k0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 6):
        anchors.append(f"k{i}: &k{i} [{', '.join([f'*k{i - 1}'] * 12)}]")
    text = BASE + "thresholds:\n" + "".join(f"  {a}\n" for a in anchors)
    assert "YAML alias bomb" in error_of(text)


def test_an_alias_inside_itself_is_refused():
    assert error_of("name: &a [*a]\n") == "s.yaml:1: invalid YAML: an alias refers to itself"


def test_small_aliases_still_work():
    text = BASE + "thresholds: &t {timeouts: '== 0'}\nexpect: *t\n"
    assert parse_scenario(text, "s.yaml").expect == {"timeouts": "== 0"}


def test_workers_beyond_the_machines_threads_are_refused():
    too_many = max_threads() + 1
    message = error_of(BASE.replace("workers: 2", f"workers: {too_many}"))
    assert message.startswith(
        f"s.yaml:4: load.workers: {too_many} load threads, but this machine lets "
        f"poolbench start at most {max_threads()} (half the least of ulimit -u"
    )
    spread = BASE.replace("workers: 2", f"workers: {too_many}") + "fleet: {processes: 2}\n"
    assert parse_scenario(spread, "s.yaml").load.workers == too_many


def test_workers_100000_is_exit_2(tmp_path: Path):
    path = write(tmp_path, "w.yaml", BASE.replace("workers: 2", "workers: 100000"))
    if max_threads() >= 100_000:
        pytest.skip("this machine allows 100000 threads")
    code, out = cli("validate", str(path))
    assert code == 2
    assert "load.workers: 100000 load threads" in one_error_line(out)


def test_validate_checks_variants_as_run_does(tmp_path: Path):
    path = write(tmp_path, "v.yaml", BASE + "variants: [{set: {pool.bogus: 1}}]\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "poolbench: error: variants[0] (bogus=1): pool.bogus: unknown key; known keys: "
        "poolclass, pool_size, max_overflow, pool_timeout, pool_recycle, pool_pre_ping, "
        "pool_use_lifo, pool_reset_on_return"
    )


def test_set_values_are_read_within_the_same_bounds():
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BASE, "s.yaml", ("load.workers=" + "9" * 5000,))
    assert "\n" not in str(info.value)


def test_malformed_set_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_scenario(BASE, "s.yaml", ("nothing",))


# --- the fuzz test: any input is a Scenario or a ScenarioError, nothing else --------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["10s", "500ms", "-1", "97%", "200/s", "1e400", "9" * 40, "closed"]),
)
KEYS = st.sampled_from(
    [
        "name",
        "description",
        "pool",
        "workload",
        "load",
        "duration",
        "phases",
        "interval",
        "faults",
        "variants",
        "thresholds",
        "expect",
        "workers",
        "rate",
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "session",
        "hold",
        "think",
        "share",
        "kill",
        "at",
        "set",
        "keepalive",
        "every",
        "fleet",
        "processes",
        "task",
        "pool.pool_size",
        "bogus",
    ]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=8)


def _check(text: str) -> None:
    try:
        parse_scenario(text, "fuzz.yaml")
    except ScenarioError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_fuzz_structured_documents(doc):
    import yaml

    _check(yaml.safe_dump(doc))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_fuzz_any_text(text):
    _check(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(BASE)), st.text(max_size=30))
def test_fuzz_edits_of_a_valid_scenario(at, insert):
    _check(BASE[:at] + insert + BASE[at:])


def test_fuzz_helpers_keep_one_line_errors():
    # the fuzz tests assert one line; make sure a known two-line YAML problem stays one
    assert "\n" not in error_of(textwrap.dedent("name: [\n"))


# --- flags and saved results --------------------------------------------------------


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    return write(tmp_path, "ok.yaml", BASE)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"POOLBENCH_URL": ""})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.strip()


@pytest.mark.parametrize(
    "url, status, line",
    [
        (
            "foo://x/y",
            3,
            "poolbench cannot measure 'foo' databases; it knows PostgreSQL (postgresql://...), "
            "MySQL or MariaDB (mysql://...)",
        ),
        (
            "sqlite://",
            3,
            "poolbench cannot measure 'sqlite' databases (a file opened in-process: no server "
            "connections, so no pool of the kind poolbench measures); it knows PostgreSQL "
            "(postgresql://...), MySQL or MariaDB (mysql://...)",
        ),
    ],
)
def test_bad_urls_are_one_line(scenario_file: Path, url: str, status: int, line: str):
    code, out = invoke("run", str(scenario_file), "--url", url)
    assert (code, out) == (status, f"poolbench: error: {line}")


def test_calibration_default_is_shown_as_a_duration():
    _, out = invoke("size", "--help")
    assert "[default: 10s]" in out and "(10s)" not in out


def test_a_second_problem_is_named_not_counted():
    text = BASE.replace(
        "pool: {pool_size: 2, pool_timeout: 1s}", "pool: {pool_size: -1, pool_timeout: x}"
    )
    assert error_of(text) == (
        "s.yaml:2: pool.pool_size: must be >= 0, got -1; also pool.pool_timeout (line 2): "
        "expected a duration such as 500ms, 10s or 2m, got 'x'"
    )
    three = text.replace("pool_timeout: x", "pool_timeout: x, max_overflow: -5")
    assert error_of(three).endswith("; and 1 more problem")
