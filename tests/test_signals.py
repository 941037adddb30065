"""Ctrl-C as the user means it: the first ends the measurement, a later one skips the
waiting, and the summary and every file are still written (exit 130).

Each child gets SIGINT's default disposition back, so these pass when the suite itself was
started in the background (``make test &`` starts it with SIGINT ignored)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from poolbench.engine import interrupts

from .conftest import server_connection_count

# requests that sleep on the server far longer than the grace period (5 s)
SLOW = """\
name: slow-requests
pool: {pool_size: 2, max_overflow: 0, pool_timeout: 1s}
workload: {session: closed, hold: 30s, hold_in: server}
load: {workers: 2}
duration: DURATION
interval: 500ms
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(tmp_path, url: str, duration: str, *extra: str) -> subprocess.Popen[str]:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(textwrap.dedent(SLOW).replace("DURATION", duration))
    return subprocess.Popen(
        [sys.executable, "-m", "poolbench", "run", str(scenario), "--url", url,
         "--progress", "plain", "--json", str(tmp_path / "r.json"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip


def _read_until(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError("".join(lines))


@pytest.mark.postgres
def test_ctrl_c_in_the_grace_period_skips_it_and_keeps_everything(tmp_path, pg_url):
    proc = _start(tmp_path, pg_url, "1500ms", "--html", str(tmp_path / "r.html"))
    lines = _read_until(proc, "progress: 1.5 s")  # the measurement is over: grace begins
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert time.monotonic() - sent < 4.5, "the 5 s grace period was not skipped"
    assert "Traceback" not in output and "poolbench: interrupted" not in output
    assert "Checkout wait" in output or "checkout wait" in output.lower()  # the summary
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["interrupted"] is True and doc["summary"]["operations"] >= 0
    assert (tmp_path / "r.html").stat().st_size > 0
    assert server_connection_count(pg_url, f"poolbench-{doc['run_id']}%") == 0


@pytest.mark.postgres
def test_two_ctrl_c_in_quick_succession_still_write_the_summary_and_files(tmp_path, pg_url):
    proc = _start(tmp_path, pg_url, "60s")
    lines = _read_until(proc, "progress: 1.0 s")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert time.monotonic() - sent < 4.5, "the second Ctrl-C did not skip the grace period"
    assert "Traceback" not in output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["interrupted"] is True
    assert server_connection_count(pg_url, f"poolbench-{doc['run_id']}%") == 0


def test_ctrl_c_while_poolbench_imports_is_one_line(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(textwrap.dedent(SLOW).replace("DURATION", "1s"))
    # -X importtime reports each import as it ends: the signal lands in poolbench's imports
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "poolbench", "run", str(scenario),
         "--url", "postgresql+psycopg2://postgres@127.0.0.1:9/test"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "sqlalchemy" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=30)
    said = [line for line in (out + err).splitlines() if not line.startswith("import time:")]
    assert said == ["poolbench: interrupted"], said
    assert proc.returncode == 130


def test_the_rule_raises_only_where_it_should():
    state = interrupts.Interrupts()
    with pytest.raises(KeyboardInterrupt):
        state.signalled()  # measuring (or starting): the first ends it
    state.finishing()
    state.signalled()  # after the measurement: no exception, only hurry
    assert state.hurry.is_set() and state.interrupted
    with pytest.raises(KeyboardInterrupt):
        state.signalled()  # the third aborts
