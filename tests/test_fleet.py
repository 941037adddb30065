"""A fleet of worker processes, each with its own pool, against the real servers."""

import json
import signal
import subprocess
import sys

import pytest

from .conftest import run_yaml, server_connection_count

FLEET = """
name: fleet
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 1s}
workload: {session: closed, hold: 5ms, think: 5ms}
load: {workers: 6}
fleet: {processes: 3}
duration: 2s
interval: 250ms
"""


def test_each_process_has_its_own_pool_and_the_result_merges_them(db_url):
    result = run_yaml(FLEET, db_url)
    s = result.summary
    assert s.processes == 3 and len(result.processes) == 3
    assert s.server.worst_case == 9
    assert len({p.pid for p in result.processes}) == 3
    assert s.operations == sum(p.operations for p in result.processes) > 100
    assert all(p.max_checked_out <= 3 for p in result.processes)
    assert s.peaks.checked_out <= 9 and s.peaks.server_connections <= 9
    assert s.latencies.checkout_wait_ms.count == s.operations  # histograms merged, nothing lost
    assert sum(x.operations for x in result.timeline) == s.operations
    assert s.server.connections_at_exit == 0
    assert s.server.headroom == result.database.available_connections - 9


def test_a_leak_in_one_process_of_a_fleet_is_reported(pg_url):
    text = FLEET.replace("session: closed, hold: 5ms, think: 5ms", "session: leaky") + (
        "leak_detection: 500ms\n"
    )
    s = run_yaml(text, pg_url).summary
    assert s.timeouts >= 1 and s.leaks.sessions == 9
    assert s.first_timeout_message.startswith("QueuePool limit of size 2 overflow 1 reached")
    assert s.leaks.sites and s.leaks.sites[0].count == 9
    assert s.server.connections_at_exit == 0


@pytest.mark.postgres
def test_ctrl_c_stops_every_process(pg_url, tmp_path):
    out = tmp_path / "fleet.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poolbench",
            "run",
            "closed-sessions",
            "--url",
            pg_url,
            "--processes",
            "3",
            "--duration",
            "60s",
            "--json",
            str(out),
            "--progress",
            "plain",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stdout:
        if line.startswith("progress: 2.0 s"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    doc = json.loads(out.read_text())
    assert doc["interrupted"] and len(doc["processes"]) == 3
    assert server_connection_count(pg_url, f"poolbench-{doc['run_id']}%") == 0
    pids = [p["pid"] for p in doc["processes"]]
    alive = subprocess.run(
        ["ps", "-o", "pid=", "-p", ",".join(map(str, pids))], capture_output=True, text=True
    ).stdout.split()
    assert alive == []
