"""Your own request code (task: module:function) and leak sites (leak_detection)."""

import inspect
import textwrap
from pathlib import Path

import pytest

from poolbench.db.target import Target, parse_url
from poolbench.engine import requests as requests_module
from poolbench.engine.runner import run_scenario
from poolbench.errors import ScenarioError
from poolbench.scenario import BUNDLED_DIR, load_scenario, parse_scenario

from .conftest import run_yaml


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    (number,) = [i + 1 for i, line in enumerate(lines) if needle in line]
    return number


@pytest.mark.postgres
def test_leak_sites_name_the_line_in_your_code(pg_url):
    scenario = load_scenario("your-code", duration=5)
    result = run_scenario(scenario, Target(parse_url(pg_url, "t"), "--url"))
    line = line_of(BUNDLED_DIR / "example_app.py", 'text("SELECT 3")')
    expected = f"example_app.py:{line} in legacy_report"
    s = result.summary
    assert s.leaks.sites and s.leaks.sites[0].site.endswith(expected)
    assert s.leaks.sites[0].count >= 1 and s.leaks.sites[0].longest_hold_s >= 1.0
    assert s.leaks.holders_at_first_timeout and s.leaks.holders_at_first_timeout[0].site.endswith(
        expected
    )
    # the well-behaved endpoints never show up as suspects
    assert all("order_" not in site.site for site in s.leaks.sites)
    assert s.server.connections_at_exit == 0


@pytest.mark.mysql
def test_leak_sites_of_builtin_leaky_sessions_name_the_group(mysql_url):
    text = """
    name: t
    pool: {pool_size: 2, max_overflow: 0, pool_timeout: 0.5s}
    workload: {session: leaky}
    load: {workers: 3}
    duration: 1.5s
    leak_detection: 500ms
    """
    s = run_yaml(text, mysql_url).summary
    # the scenario's group, by design, rather than poolbench's own line (which reads as
    # a bug in poolbench); the stack still shows where the checkout happened
    assert [site.site for site in s.leaks.sites] == [
        "group 'leaky': the session is never closed, by design"
    ]
    source = inspect.getsource(requests_module.RequestExecutor.run)
    first = requests_module.RequestExecutor.run.__code__.co_firstlineno
    offset = next(i for i, line in enumerate(source.splitlines()) if "conn = checkout()" in line)
    assert f"poolbench/engine/requests.py:{first + offset} in run" in s.leaks.sites[0].stack
    assert s.leaks.sites[0].count == 2 and s.leaks.sites[0].held_at_end == 2
    assert s.figures()["leak_suspects"] == 2


@pytest.fixture
def task_module(tmp_path):
    """Writes the module as mytasks_<n>.py (a fresh name: imports are cached) and returns
    the folder; scenario texts say "mytasks" and are renamed to match."""
    name = f"mytasks_{abs(hash(str(tmp_path)))}"

    def write(source: str) -> Path:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return tmp_path

    write.name = name  # type: ignore[attr-defined]
    return write


def scenario_text(task: str, api: str = "session") -> str:
    return textwrap.dedent(f"""\
        name: t
        pool: {{pool_size: 2, max_overflow: 0, pool_timeout: 1s}}
        workload: {{task: "{task}", api: {api}}}
        load: {{workers: 2}}
        duration: 1s
        """)


@pytest.mark.postgres
@pytest.mark.parametrize("api", ["session", "connection", "sessionmaker"])
def test_tasks_run_with_each_api_and_their_errors_are_counted(task_module, pg_url, api):
    folder = task_module("""
        import itertools
        from sqlalchemy import text
        calls = itertools.count()

        def work(db):
            if next(calls) % 5 == 4:
                raise ValueError("every fifth request fails")
            if callable(db):  # api: sessionmaker
                with db() as session:
                    return session.execute(text("SELECT 1")).scalar_one()
            return db.execute(text("SELECT 1")).scalar_one()
        """)
    path = folder / "s.yaml"
    path.write_text(scenario_text(f"{task_module.name}:work", api))
    scenario = load_scenario(path)
    s = run_scenario(scenario, Target(parse_url(pg_url, "t"), "--url")).summary
    assert s.ok > 10
    other = s.errors["other"]
    assert other.count >= 1 and other.examples[0].message == "ValueError: every fifth request fails"
    assert s.timeouts == 0 and s.server.connections_at_exit == 0


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("nosuchmodule:work", "s.yaml:3: workload[0].task: cannot import 'nosuchmodule'"),
        ("mytasks:missing", "s.yaml:3: workload[0].task: 'mytasks' has no 'missing'"),
        ("mytasks:VALUE", "s.yaml:3: workload[0].task: mytasks:VALUE is not callable"),
        ("mytasks:boom", None),
        ("not a spec", "s.yaml:3: workload[0].task: String should match pattern"),
    ],
)
def test_bad_tasks_are_scenario_errors(task_module, task, message):
    folder = task_module("VALUE = 3\ndef boom(db):\n    pass\n")
    path = folder / "s.yaml"
    task = task.replace("mytasks", task_module.name)
    message = message and message.replace("mytasks", task_module.name)
    path.write_text(scenario_text(task))
    if message is None:
        load_scenario(path)  # a good task loads
        return
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}".replace("s.yaml", "") + message)


def test_sessionmaker_api_needs_a_task_and_manages_its_own_sessions():
    with pytest.raises(ScenarioError, match="api: sessionmaker needs a task"):
        parse_scenario(scenario_text("x:y", "sessionmaker").replace('task: "x:y", ', ""), "s.yaml")
    text = scenario_text("x:y", "sessionmaker").replace("api:", "session: leaky, api:")
    with pytest.raises(ScenarioError, match="manages its own sessions"):
        parse_scenario(text, "s.yaml")
