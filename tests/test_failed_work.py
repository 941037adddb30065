"""Work that fails fails the run: errors the scenario did not set out to cause (issue 8 §2)."""

import textwrap

import pytest
from click.testing import CliRunner

from poolbench import checks
from poolbench.cli import main
from poolbench.output.diagnosis import diagnose
from poolbench.result import ErrorExample, ErrorKindStats
from poolbench.scenario.model import Faults

from .conftest import run_yaml

BROKEN = """\
name: broken
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 1s}
workload: {query: "SELECT * FROM no_such_table"}
load: {workers: 2}
duration: 1s
interval: 250ms
"""


def invoke(*args):
    return CliRunner().invoke(main, list(args), env={"POOLBENCH_URL": ""})


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.postgres
def test_a_query_failing_on_every_request_fails_the_run_without_thresholds(tmp_path, pg_url):
    result = invoke("run", write(tmp_path, BROKEN), "--url", pg_url, "--progress", "none")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    verdict = lines.index(next(line for line in lines if line.startswith("FAILED")))
    assert lines[verdict] == "FAILED: 1 check(s) breached: unexpected_errors == 0"
    count, rest = lines[verdict + 1].split(" of ", 1)
    assert int(count) > 2 and rest.startswith(f"{count} requests failed: ")
    assert 'relation "no_such_table" does not exist' in rest
    assert "never needed more than" not in result.output


@pytest.mark.mysql
def test_an_all_failing_group_is_named_on_mysql(mysql_url):
    text = """\
    name: two-groups
    pool: {pool_size: 2, max_overflow: 0, pool_timeout: 1s}
    workload:
      - {name: fine, query: "SELECT 1", share: 1}
      - {name: broken, query: "SELECT * FROM no_such_table", share: 1}
    load: {workers: 2}
    duration: 1s
    seed: 3
    """
    result = run_yaml(text, mysql_url)
    s = result.summary
    assert checks.failed_groups(s) == ["broken"]
    (check,) = [c for c in s.thresholds if c.source == "default"]
    assert check.metric == "unexpected_errors" and check.value == s.errors["other"].count > 0
    assert not s.passed
    broken = next(g for g in s.groups if g.name == "broken")
    named = f"Every request of group 'broken' failed ({broken.errors} of {broken.operations})."
    assert named in diagnose(result)


@pytest.mark.postgres
def test_a_threshold_on_the_errors_is_what_the_scenario_tolerates(pg_url):
    tolerant = BROKEN + 'thresholds: {error_rate: ">= 0.5"}\n'
    s = run_yaml(tolerant, pg_url).summary
    assert s.errors["other"].count > 0
    assert [c.source for c in s.thresholds] == ["threshold"] and s.passed


@pytest.mark.postgres
def test_a_task_raising_systemexit_is_an_error_of_that_request(tmp_path, pg_url, monkeypatch):
    (tmp_path / "exiting_task.py").write_text("def work(db):\n    raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = BROKEN.replace('query: "SELECT * FROM no_such_table"', 'task: "exiting_task:work"')
    s = run_yaml(text, pg_url).summary
    # every request reached the task and failed; the two workers never died
    assert s.operations > 2 and s.ok == 0
    assert s.errors["other"].count == s.operations
    assert s.errors["other"].examples[0].message == "SystemExit: 3"
    assert not s.passed and s.server.connections_at_exit == 0


def test_an_async_task_on_a_sync_engine_is_refused_with_exit_2(tmp_path):
    (tmp_path / "async_task_mod.py").write_text("async def work(db):\n    pass\n")
    path = write(
        tmp_path,
        BROKEN.replace('query: "SELECT * FROM no_such_table"', 'task: "async_task_mod:work"'),
    )
    result = invoke("run", path, "--url", "postgresql://nobody@127.0.0.1:1/x", "--progress", "none")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "poolbench: error: scenario 'broken': workload[0].task async_task_mod:work is an "
        "async def: it needs an async engine, and postgresql+psycopg drives a sync one (use "
        "engine: async, or an async driver such as postgresql+asyncpg://)"
    )
    with open(path, "a") as f:
        f.write("engine: sync\n")
    result = invoke("run", path, "--url", "postgresql://nobody@127.0.0.1:1/x", "--progress", "none")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith(
            "workload[0].task: async tasks need an async engine: async_task_mod:work is an async "
            "def, and the scenario says engine: sync; write it as a plain def or use engine: async"
        )
    )


def test_which_kinds_fail_the_run():
    assert checks.expected_errors(Faults()) == []
    assert checks.expected_errors(Faults(kill=[{"at": 1}])) == ["disconnect"]
    assert checks.expected_errors(Faults(restart=[{"at": 1}])) == ["disconnect", "other"]
    every = ["other", "disconnect", "too_many_connections"]
    assert checks.untolerated_kinds(set(), []) == every
    assert checks.untolerated_kinds({"timeouts", "max_waiting"}, []) == every
    assert checks.untolerated_kinds({"other_errors"}, ["disconnect"]) == ["too_many_connections"]
    assert checks.untolerated_kinds({"first_too_many_connections_at_s"}, []) == [
        "other",
        "disconnect",
    ]
    assert checks.untolerated_kinds({"error_rate"}, []) == []
    assert checks.untolerated_kinds({"errors"}, []) == []


def test_timeouts_and_injected_errors_never_fail_the_run_by_default(pg_url=None):
    from poolbench.result import Errors, Summary

    errors = {
        kind: ErrorKindStats()
        for kind in ("timeout", "disconnect", "too_many_connections", "other")
    }
    errors["timeout"] = ErrorKindStats(4, 0.5, [ErrorExample(None, "QueuePool limit", 4, 0.5)])
    fields = {name: None for name in Summary.__dataclass_fields__}
    summary = Summary(**{**fields, "errors": Errors(0, None, None, errors, 0), "operations": 10})
    assert checks.failed_work(summary, checks.untolerated_kinds(set(), [])) is None
    errors["other"] = ErrorKindStats(2, 0.7, [ErrorExample("E1", "boom", 2, 0.7)])
    check = checks.failed_work(summary, checks.untolerated_kinds(set(), []))
    assert check is not None and (check.value, check.ok, check.source) == (2, False, "default")
    summary.thresholds = [check]
    assert checks.failure_line(summary) == "2 of 10 requests failed: boom"
