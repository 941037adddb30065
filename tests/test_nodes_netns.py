"""Nodes as separate hosts: each in its own network namespace (a loopback and a veth pair,
the database reached over the veth), its own PID namespace (every node is PID 1) and its
own host name, so nothing depends on sharing one network or one process table.

Needs root, ``ip``, ``unshare`` and ``socat`` (the database listens on loopback; a socat
on the host's end of each veth forwards to it, as a router would).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from .test_nodes import ROOT, SCENARIO, rows_of, wait_for_start

pytestmark = [pytest.mark.postgres, pytest.mark.netns]

NODES = 3


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture
def hosts(pg_url: str) -> Iterator[list[tuple[str, str]]]:
    """NODES network namespaces, each with the database at the host end of its veth:
    ``(namespace, url seen from inside)``."""
    missing = [tool for tool in ("ip", "unshare", "socat") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root and {', '.join(missing) or 'ip, unshare, socat'}")
    url = make_url(pg_url)
    port = url.port or 5432
    tag = os.getpid() % 100000
    made: list[tuple[str, str]] = []
    forwarders: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(NODES):
            ns, outside, inside = f"pb{tag}n{i}", f"pb{tag}h{i}", f"pb{tag}v{i}"
            router = f"10.213.{i}.1"
            sh("ip", "netns", "add", ns)
            made.append((ns, outside))
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "addr", "add", f"{router}/30", "dev", outside)
            sh("ip", "link", "set", outside, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.213.{i}.2/30", "dev", inside)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            forwarders.append(
                subprocess.Popen(
                    [
                        "socat",
                        f"TCP-LISTEN:{port},bind={router},fork,reuseaddr",
                        f"TCP:{url.host or '127.0.0.1'}:{port}",
                    ]
                )
            )
        time.sleep(0.3)  # socat listening
        yield [
            (ns, url.set(host=f"10.213.{i}.1").render_as_string(hide_password=False))
            for i, (ns, _) in enumerate(made)
        ]
    finally:
        for proc in forwarders:
            proc.kill()
            proc.wait()
        for ns, outside in made:
            subprocess.run(["ip", "link", "del", outside], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_host(tmp_path: Path, ns: str, url: str, run: str, index: int) -> subprocess.Popen[str]:
    scenario = tmp_path / "nodes.yaml"
    if not scenario.exists():
        scenario.write_text(SCENARIO.replace("DURATION", "4s"))
    command = (
        f"hostname node-{index} && exec {sys.executable} -m poolbench run {scenario} "
        f"--url '{url}' --join {run} --nodes {NODES} --node-index {index} "
        f"--json {tmp_path / f'node-{index}.json'} --progress none"
    )
    # --kill-child: killing this process kills the node's whole PID namespace
    host = ["ip", "netns", "exec", ns, "unshare", "--uts", "--pid", "--fork", "--kill-child"]
    return subprocess.Popen(
        [*host, "--mount-proc", "sh", "-c", command],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_nodes_on_separate_hosts_start_together_and_report_a_lost_one(
    request, tmp_path, pg_url, hosts
):
    run = f"netns-{os.getpid()}"
    procs = []
    for index, (ns, url) in enumerate(hosts):
        procs.append(start_host(tmp_path, ns, url, run, index))
        time.sleep(1.0)
    start_at = wait_for_start(pg_url, run)
    time.sleep(max(0.0, start_at - time.time()) + 1.5)
    procs[2].send_signal(signal.SIGKILL)  # host 2 is lost mid-run
    outputs = [p.communicate(timeout=90)[0] for p in procs[:2]]
    procs[2].wait()
    docs = [json.loads((tmp_path / f"node-{i}.json").read_text()) for i in range(2)]
    for i, (proc, doc) in enumerate(zip(procs, docs, strict=False)):
        assert proc.returncode == 0, outputs[i]
        assert doc["node"]["host"] == f"node-{i}"  # its own UTS namespace
        assert doc["node"]["missing"] == [2]
    began = [d["node"]["server_at_start"] for d in docs]
    assert max(began) - min(began) < 0.100
    assert rows_of(pg_url, run) == []
    files = [str(tmp_path / f"node-{i}.json") for i in range(2)]
    out = subprocess.run(
        [sys.executable, "-m", "poolbench", "merge", *files, "--json", str(tmp_path / "m.json")],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    merged = json.loads((tmp_path / "m.json").read_text())
    assert [n["host"] for n in merged["merge"]["per_node"]] == ["node-0", "node-1"]
    assert merged["notes"][0] == "nodes: 2 of 3 finished (node 2 did not)"
    assert merged["summary"]["operations"] == sum(d["summary"]["operations"] for d in docs)
