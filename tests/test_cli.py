"""The command line through click's CliRunner and real subprocesses: exit codes and the exact
one-line errors a user sees."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.pool import NullPool

from poolbench.cli import main
from poolbench.result import ERROR_KINDS

from .conftest import server_connection_count

LEAKY = """\
name: cli-leaky
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.5s}
workload: {session: leaky}
load: {workers: 4}
duration: 1.5s
interval: 250ms
"""


def invoke(*args, env=None):
    return CliRunner().invoke(
        main, list(args), env=env or {"POOLBENCH_URL": ""}, catch_exceptions=False
    )


@pytest.fixture
def scenario_file(tmp_path):
    def write(text: str, name: str = "s.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


def test_help_teaches():
    out = invoke("--help").output
    assert "poolbench run scenarios/leaky-sessions.yaml" in out and "Exit codes" in out
    run_help = invoke("run", "--help").output
    for flag in ("--url", "--duration", "--set", "--json", "--progress"):
        assert flag in run_help
    assert "Examples:" in run_help


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            LEAKY.replace("pool_size: 2", "pool_sise: 2"),
            "s.yaml:2: pool.pool_sise: unknown key; did you mean pool_size?",
        ),
        (
            LEAKY.replace("pool_size: 2", "pool_size: two"),
            "s.yaml:2: pool.pool_size: expected a whole number, got 'two'",
        ),
        (
            LEAKY.replace("pool_timeout: 0.5s", "pool_timeout: -2"),
            "s.yaml:2: pool.pool_timeout: must be >= 0, got -2",
        ),
        (
            LEAKY.replace("duration: 1.5s", "duration: soon"),
            "s.yaml:5: duration: expected a duration such as 500ms, 10s or 2m, got 'soon'",
        ),
        ("name: x\nworkload: [session: leaky\n", "s.yaml:3: invalid YAML:"),
    ],
)
def test_bad_scenarios_exit_2_with_one_line(scenario_file, text, expected):
    path = scenario_file(text)
    result = invoke("run", path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"poolbench: error: {os.path.dirname(path)}/{expected}")


def test_missing_file_and_bad_flags_exit_2(scenario_file):
    result = invoke("run", "no-such.yaml")
    assert (result.exit_code, result.output) == (
        2,
        "poolbench: error: no-such.yaml: no such scenario file\n",
    )
    result = invoke("run", scenario_file(LEAKY), "--set", "pool.pool_size")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    result = invoke("run", scenario_file(LEAKY), "--duration", "-5s")
    assert result.exit_code == 2


@pytest.mark.postgres
def test_unreachable_database_exits_3_quickly(scenario_file):
    start = time.monotonic()
    result = invoke("run", scenario_file(LEAKY), "--url", "postgresql://postgres@127.0.0.1:9/x")
    assert result.exit_code == 3
    assert result.output.startswith(
        # postgresql:// is psycopg 3 under SQLAlchemy 2.1, as in the user's application
        "poolbench: error: cannot connect to postgresql+psycopg://postgres@127.0.0.1:9/x: "
        'connection failed: connection to server at "127.0.0.1", port 9 failed: '
        "Connection refused"
    )
    assert result.output.count("\n") == 1
    assert time.monotonic() - start < 5


@pytest.fixture
def silent_server():
    """A TCP server that accepts and never answers: a database that hangs on connect."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted = []
    stop = threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(sock.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


@pytest.mark.parametrize(
    "scheme", ["postgresql", "mysql+pymysql", "postgresql+asyncpg", "mysql+asyncmy"]
)
def test_a_server_that_never_answers_fails_within_seconds(scenario_file, silent_server, scheme):
    start = time.monotonic()
    result = invoke(
        "run", scenario_file(LEAKY), "--url", f"{scheme}://u@127.0.0.1:{silent_server}/x"
    )
    assert result.exit_code == 3 and result.output.startswith("poolbench: error: cannot connect")
    assert time.monotonic() - start < 9


@pytest.mark.mysql
def test_wrong_password_exits_3_and_never_shows_the_password(scenario_file, mysql_url):
    admin = sa.create_engine(mysql_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE USER IF NOT EXISTS 'pb_pw'@'%%' IDENTIFIED BY 'right-pass'")
        conn.exec_driver_sql("GRANT ALL ON test.* TO 'pb_pw'@'%%'")
    admin.dispose()
    url = "mysql+pymysql://pb_pw:wrong-pass-1234@127.0.0.1:3306/test"
    result = invoke("run", scenario_file(LEAKY), "--url", url)
    assert result.exit_code == 3
    assert "Access denied for user 'pb_pw'" in result.output
    assert "wrong-pass-1234" not in result.output and "pb_pw:***@" in result.output


def test_bad_url_exits_2():
    result = invoke("run", "leaky-sessions", "--url", "nonsense")
    assert result.exit_code == 2
    assert result.output.startswith("poolbench: error: --url: not a database URL: 'nonsense'")


@pytest.mark.postgres
def test_run_prints_progress_summary_and_writes_json(scenario_file, pg_url, tmp_path):
    out = tmp_path / "r" / "result.json"
    result = invoke("run", scenario_file(LEAKY), "--url", pg_url, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "progress: 0.2 s, checked_out 3/3" in result.output or "checked_out 3/3" in result.output
    assert "first TimeoutError at" in result.output
    assert "QueuePool limit of size 2 overflow 1 reached" in result.output
    assert "timeline" in result.output and "checkout wait" in result.output
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1
    s = doc["summary"]
    for key in (
        "operations",
        "timeouts",
        "first_timeout_at_s",
        "first_timeout_message",
        "errors",
        "max_checked_out",
        "max_overflow",
        "max_waiting",
        "checkout_wait_ms",
        "thresholds",
        "passed",
    ):
        assert key in s
    assert set(s["errors"]) == set(ERROR_KINDS)
    assert set(s["checkout_wait_ms"]) >= {"p50", "p90", "p99", "max"}
    assert doc["pool"]["pool_size"] == 2 and doc["database"]["dialect"] == "postgresql"
    sample = doc["timeline"][0]
    for key in (
        "t_s",
        "checked_out",
        "checked_in",
        "overflow",
        "waiting",
        "operations",
        "timeouts",
        "server_connections",
    ):
        assert key in sample


@pytest.mark.mysql
def test_thresholds_breached_exit_1_and_json_to_stdout(scenario_file, mysql_url):
    path = scenario_file(LEAKY + 'thresholds:\n  timeouts: "== 0"\n')
    result = CliRunner().invoke(
        main, ["run", path, "--url", mysql_url, "--json", "-"], env={"POOLBENCH_URL": ""}
    )
    assert result.exit_code == 1
    doc = json.loads(result.stdout)  # stdout holds nothing but the JSON
    assert doc["summary"]["passed"] is False
    assert doc["summary"]["thresholds"][0] == {
        "metric": "timeouts",
        "condition": "== 0",
        "value": doc["summary"]["timeouts"],
        "ok": False,
        "source": "threshold",
    }
    assert "FAILED" in result.stderr and "timeouts == 0" in result.stderr


@pytest.mark.postgres
def test_url_precedence_and_masking(scenario_file, pg_url):
    pg_with_password = pg_url.replace("postgres@", "postgres:hunter2-secret@")
    path = scenario_file(LEAKY + "database: {url: 'mysql+pymysql://root@127.0.0.1:1/none'}\n")
    # POOLBENCH_URL beats the scenario's database.url; --url beats both
    result = invoke("run", path, env={"POOLBENCH_URL": pg_with_password})
    assert result.exit_code == 0, result.output
    assert "postgres:***@127.0.0.1" in result.output and "hunter2" not in result.output
    result = invoke(
        "run", path, "--url", "postgresql://postgres@127.0.0.1:9/x", env={"POOLBENCH_URL": pg_url}
    )
    assert result.exit_code == 3 and "port 9" in result.output
    result = invoke("run", path)
    assert result.exit_code == 3 and "mysql+pymysql://root@127.0.0.1:1/none" in result.output


def test_validate_and_listings():
    result = invoke("validate", "rare-leak", "--set", "pool.pool_size=10")
    assert result.exit_code == 0 and "pool_size=10" in result.output
    assert "leaky-sessions" in invoke("scenarios").output
    assert "checkout_wait_p99_ms" in invoke("metrics").output


@pytest.mark.postgres
def test_ctrl_c_exits_130_writes_json_and_leaves_no_connection(tmp_path, pg_url):
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poolbench",
            "run",
            "leaky-sessions",
            "--url",
            pg_url,
            "--duration",
            "60s",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("progress: 2.0 s"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["summary"]["max_checked_out"] == 15
    assert server_connection_count(pg_url, f"poolbench-{doc['run_id']}%") == 0


@pytest.mark.embedded
def test_without_a_url_an_embedded_postgres_is_started_and_removed(scenario_file):
    env = {k: v for k, v in os.environ.items() if k != "POOLBENCH_URL"}
    before = set(os.listdir("/tmp"))
    proc = subprocess.run(
        [sys.executable, "-m", "poolbench", "run", scenario_file(LEAKY), "--json", "-"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["database"]["embedded"] is True and doc["database"]["source"] == "embedded"
    assert doc["summary"]["max_checked_out"] == 3
    assert doc["summary"]["server_connections_at_exit"] == 0
    leftovers = {d for d in set(os.listdir("/tmp")) - before if d.startswith("poolbench-pg-")}
    assert not leftovers
    assert (
        "poolbench-pg-"
        not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    )


@pytest.mark.postgres
def test_run_writes_every_file_and_report_renders_them_again(scenario_file, pg_url, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "run",
        scenario_file(LEAKY),
        "--url",
        pg_url,
        "--progress",
        "none",
        "--json",
        str(out / "r.json"),
        "--html",
        str(out / "r.html"),
        "--csv",
        str(out / "r"),
        "--junit",
        str(out / "r.xml"),
    )
    assert result.exit_code == 0, result.output
    for name in ("r.json", "r.html", "r_timeline.csv", "r_summary.csv", "r.xml"):
        assert (out / name).stat().st_size > 0 and f"written: {out / name}" in result.output
    html = (out / "r.html").read_text()
    assert "QueuePool limit of size 2 overflow 1 reached" in html
    # report renders the same HTML from the saved JSON, and the terminal summary too
    again = invoke("report", str(out / "r.json"), "--html", str(out / "again.html"))
    assert again.exit_code == 0
    assert (out / "again.html").read_text() == html
    summary = invoke("report", str(out / "r.json"))
    assert summary.exit_code == 0 and "max checked out 3 / 3" in summary.output


def test_report_renders_results_of_an_older_poolbench():
    result = invoke("report", "tests/data/rare-leak.json", "--no-timeline")
    assert result.exit_code == 0, result.output
    assert "15 sessions never closed" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<html></html>", "r.json:1: not JSON: Expecting value"),
        ('{"hello": 1}', "r.json: not a poolbench result (written by poolbench run --json)"),
        ('{"schema_version": 99, "summary": {}}', "r.json: schema_version 99 is newer"),
    ],
)
def test_report_explains_what_is_wrong_with_a_file(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    result = invoke("report", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"poolbench: error: {tmp_path}/{message}")


def test_the_wrong_kind_of_database_names_the_flag_that_helps(scenario_file, pg_url, mysql_url):
    """The engine states the facts; the CLI adds the flags (cli.error_line)."""
    needs_mysql = scenario_file(LEAKY + "database: {requires: mysql}\n")
    result = invoke("run", needs_mysql, "--url", pg_url)
    assert result.exit_code == 3
    assert result.output.splitlines()[-1] == (
        "poolbench: error: scenario 'cli-leaky' needs MySQL or MariaDB; it was given "
        "PostgreSQL (pass --url, e.g. mysql+pymysql://root@127.0.0.1:3306/test)"
    )
    needs_pg = scenario_file(LEAKY + "database: {requires: postgresql}\n", "pg.yaml")
    result = invoke("run", needs_pg, "--url", mysql_url)
    assert result.exit_code == 3
    assert result.output.splitlines()[-1] == (
        "poolbench: error: scenario 'cli-leaky' needs PostgreSQL; it was given MySQL or "
        "MariaDB (run it without --url and POOLBENCH_URL for the embedded PostgreSQL, or "
        "pass --url, e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test)"
    )
    restart = scenario_file(LEAKY + "faults: {restart: [1s]}\n", "restart.yaml")
    result = invoke("run", restart, "--url", pg_url)
    assert result.exit_code == 3
    assert result.output.splitlines()[-1] == (
        "poolbench: error: restart works only on the embedded PostgreSQL (poolbench never "
        "restarts a server it does not own): run without --url and POOLBENCH_URL"
    )


def test_the_library_names_no_flag(pg_url):
    import poolbench
    from poolbench.errors import UnsupportedDatabase
    from poolbench.scenario import parse_scenario

    scenario = parse_scenario(LEAKY + "database: {requires: mysql}\n", "s.yaml")
    with pytest.raises(UnsupportedDatabase) as caught:
        poolbench.run(scenario, url=pg_url)
    assert "--" not in str(caught.value) and "POOLBENCH_URL" not in str(caught.value)
    assert caught.value.example_url == "mysql+pymysql://root@127.0.0.1:3306/test"


def test_a_scenario_folder_runs_its_scenario_yaml_and_is_listed(tmp_path, monkeypatch):
    """A folder holds scenario.yaml beside its app; the listing shows an app scenario's
    description even where its import cannot run (no DATABASE_URL here)."""
    from poolbench.scenario import bundled_scenarios, load_scenario

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_tasks_mod.py").write_text("def work(conn):\n    pass\n")
    (folder / "scenario.yaml").write_text(
        "name: mine\nworkload: {task: my_tasks_mod:work, api: connection}\n"
        "load: {workers: 1}\nduration: 1s\n"
    )
    assert load_scenario(str(folder)).name == "mine"
    (folder / "scenario.yaml").write_text("name: mine\npool: {pool_sise: 1}\n")
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exit_code == 2
    assert f"{folder / 'scenario.yaml'}:2: pool.pool_sise" in result.output
    assert bundled_scenarios()["fastapi-get-db"].name == "scenario.yaml"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("POOLBENCH_URL", raising=False)
    monkeypatch.delitem(sys.modules, "fastapi_streaming_app", raising=False)  # imported anew
    listing = CliRunner().invoke(main, ["scenarios"]).output
    line = next(line for line in listing.splitlines() if "fastapi-streaming" in line)
    assert "No leak, and still every connection out" in line
    assert "(here: set DATABASE_URL" in " ".join(listing.split())
