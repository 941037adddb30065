"""Runs across hosts, tested as they would run there: independent poolbench processes,
started a few seconds apart as pods are, join one run on the real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from poolbench.metrics.histogram import percentile_of_counts
from poolbench.nodes import NodeSession, NodeSpec
from poolbench.nodes.registry import Registry

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = """\
name: nodes-test
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 1s}
workload: {session: closed, hold: {fixed: 5ms}}
load: {workers: 3}
duration: DURATION
interval: 500ms
thresholds:
  timeouts: "== 0"
"""


def start_node(tmp_path: Path, url: str, run: str, nodes: int, index: int, *extra: str, **kw):
    scenario = tmp_path / "nodes.yaml"
    if not scenario.exists():
        scenario.write_text(SCENARIO.replace("DURATION", kw.get("duration", "3s")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("JOB_COMPLETION_INDEX", None)
    if kw.get("index_from_env"):
        env["JOB_COMPLETION_INDEX"] = str(index)
    index_flag = [] if kw.get("index_from_env") else ["--node-index", str(index)]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poolbench",
            "run",
            str(scenario),
            "--url",
            url,
            "--join",
            run,
            "--nodes",
            str(nodes),
            *index_flag,
            "--json",
            str(tmp_path / f"node-{index}.json"),
            "--progress",
            "none",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def rows_of(url: str, run: str) -> list:
    """The run's rows in poolbench.nodes ([] when the table is gone)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        if not sa.inspect(engine).has_table("nodes", schema="poolbench"):
            return []
        return Registry(engine, run).rows()
    finally:
        engine.dispose()


def poolbench_schema(url: str, drop: bool = False) -> bool:
    """Whether the poolbench schema (database, on MySQL) exists; ``drop`` removes it first
    (these are the tests' own servers)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    mysql = url.startswith("mysql")
    try:
        with engine.begin() as conn:
            if drop:
                conn.exec_driver_sql(
                    "DROP DATABASE IF EXISTS poolbench"
                    if mysql
                    else "DROP SCHEMA IF EXISTS poolbench CASCADE"
                )
            found = conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'poolbench'"
            )
            return bool(found.scalar_one())
    finally:
        engine.dispose()


def wait_for_start(url: str, run: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = rows_of(url, run)
        if rows and rows[0].start_at is not None:
            return rows[0].start_at
        time.sleep(0.1)
    raise AssertionError(f"run {run} never started")


def run_name(request: pytest.FixtureRequest) -> str:
    return f"t-{os.getpid()}-{request.node.name[-40:]}"


@pytest.mark.parametrize(
    ("url_fixture", "nodes"),
    [
        pytest.param("pg_url", 3, marks=pytest.mark.postgres),
        pytest.param("mysql_url", 2, marks=pytest.mark.mysql),
    ],
)
def test_nodes_started_apart_start_together_and_leave_nothing(
    request, tmp_path, url_fixture, nodes
):
    url = request.getfixturevalue(url_fixture)
    run = run_name(request)
    assert not poolbench_schema(url, drop=True)
    procs = []
    for index in range(nodes):
        procs.append(start_node(tmp_path, url, run, nodes, index, index_from_env=index == 0))
        time.sleep(1.5)  # as pods are: not at once
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * nodes, outputs
    docs = [json.loads((tmp_path / f"node-{i}.json").read_text()) for i in range(nodes)]
    starts = {d["started_at"] for d in docs}
    assert len(starts) == 1 and len(starts.pop()) == len("2026-01-01T00:00:00.000+00:00")
    began = [d["node"]["server_at_start"] for d in docs]
    assert max(began) - min(began) < 0.100  # by the server's own clock
    for i, d in enumerate(docs):
        assert d["node"]["index"] == i and d["node"]["run_name"] == run
        assert d["node"]["finished"] == list(range(nodes)) and d["node"]["missing"] == []
        assert d["histograms"][0]["wait"]
        assert f"nodes: {nodes} of {nodes} finished" in outputs[i].replace("\n", "")
        assert f"all {nodes} nodes joined; measuring starts at" in outputs[i]
    assert f"run {run}: 1 of {nodes} nodes joined; waiting for node" in outputs[0]
    assert rows_of(url, run) == []  # the last node removed the run's rows
    assert not poolbench_schema(url)  # and the table and schema it had created

    merged, out = merge(tmp_path, nodes)
    assert out.returncode == 0, out.stdout
    m = merged["summary"]
    for figure in ("operations", "ok", "timeouts", "leaked"):
        assert m[figure] == sum(d["summary"][figure] for d in docs), figure
    for histogram in ("checkout_wait_ms", "hold_ms"):
        assert m[histogram]["count"] == sum(d["summary"][histogram]["count"] for d in docs)
        assert m[histogram]["max"] == max(d["summary"][histogram]["max"] for d in docs)
    assert m["worst_case_connections"] == nodes * 3  # nodes x 1 process x (2 + 1)
    assert m["processes"] == nodes
    at = {}
    for d in docs:
        for sample in d["timeline"]:
            at.setdefault(round(sample["t_s"] / 0.5), []).append(sample["checked_out"])
    assert m["max_checked_out"] == max(sum(v) for v in at.values())
    waits: dict = {}
    for d in docs:
        for sample in d["timeline"]:
            counts = waits.setdefault(round(sample["t_s"] / 0.5), {})
            for micros, n in sample["wait_counts"].items():
                counts[int(micros)] = counts.get(int(micros), 0) + n
    p99 = [percentile_of_counts(waits[k], 99) for k in sorted(waits)]
    assert [s["checkout_wait_p99_ms"] for s in merged["timeline"]] == p99
    assert [p["index"] for p in merged["merge"]["per_node"]] == list(range(nodes))
    assert merged["merge"]["start_skew_ms"] < 100
    assert f"nodes: {nodes} of {nodes} finished" in out.stdout


def merge(tmp_path: Path, nodes: int, *extra: str):
    files = [str(tmp_path / f"node-{i}.json") for i in range(nodes)]
    files = [f for f in files if Path(f).exists()]
    out = subprocess.run(
        [sys.executable, "-m", "poolbench", "merge", *files, "--json", str(tmp_path / "m.json")],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    merged = json.loads((tmp_path / "m.json").read_text()) if out.returncode in (0, 1) else None
    return merged, out


@pytest.mark.parametrize(
    "url_fixture",
    [
        pytest.param("pg_url", marks=pytest.mark.postgres),
        # MariaDB under test, the nodes registered in PostgreSQL (--coordinator)
        pytest.param("mysql_url", marks=[pytest.mark.mysql, pytest.mark.postgres]),
    ],
)
def test_a_node_killed_mid_run_is_reported_and_nothing_hangs(
    request, tmp_path, pg_url, url_fixture
):
    run = run_name(request)
    url = request.getfixturevalue(url_fixture)
    extra = () if url == pg_url else ("--coordinator", pg_url)
    procs = [start_node(tmp_path, url, run, 3, i, *extra, duration="4s") for i in range(3)]
    start_at = wait_for_start(pg_url, run)
    time.sleep(max(0.0, start_at - time.time()) + 1.5)
    procs[1].send_signal(signal.SIGKILL)
    began = time.monotonic()
    outputs = {i: procs[i].communicate(timeout=60)[0] for i in (0, 2)}
    assert time.monotonic() - began < 20  # the run's end, plus the stale allowance
    for i in (0, 2):
        assert procs[i].returncode == 0, outputs[i]
        doc = json.loads((tmp_path / f"node-{i}.json").read_text())
        assert doc["node"]["finished"] == [0, 2] and doc["node"]["missing"] == [1]
        assert "nodes: 2 of 3 finished (node 1 did not)" in doc["notes"]
        assert "nodes: 2 of 3 finished" in outputs[i].replace("\n", "")
        assert doc["database"]["dialect"] == make_url(url).get_backend_name()
    procs[1].wait()
    assert rows_of(pg_url, run) == []
    merged, out = merge(tmp_path, 3)
    assert out.returncode == 0, out.stdout + out.stderr
    assert merged["notes"][0] == "nodes: 2 of 3 finished (node 1 did not)"
    assert merged["merge"]["merged"] == [0, 2] and merged["merge"]["missing"] == [1]
    assert "nodes: 2 of 3 finished (node 1 did not)" in out.stdout


@pytest.mark.postgres
def test_join_timeout_names_the_missing_indexes(request, tmp_path, pg_url):
    run = run_name(request)
    proc = start_node(tmp_path, pg_url, run, 3, 1, "--join-timeout", "1s")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 3, out
    assert out.endswith(
        f"poolbench: error: run {run!r}: 1 of 3 nodes joined in 1s; missing node index 0, 2\n"
    )
    assert rows_of(pg_url, run) == []  # it left before the start: its row went with it


@pytest.mark.postgres
def test_an_index_cannot_join_twice_nor_with_another_node_count(request, pg_url):
    from poolbench.db.target import parse_url
    from poolbench.errors import NodeConflict

    run = run_name(request)
    url = parse_url(pg_url, "test")
    first = NodeSession(NodeSpec(run, 2, 0), url)
    first.join()
    try:
        with pytest.raises(NodeConflict, match=r"node index 0 has already joined \(host "):
            NodeSession(NodeSpec(run, 2, 0), url).join()
        with pytest.raises(NodeConflict, match=r"was joined with --nodes 2 .* has --nodes 3"):
            NodeSession(NodeSpec(run, 3, 1), url).join()
    finally:
        first.leave()
    assert rows_of(pg_url, run) == []


@pytest.mark.postgres
def test_nodes_that_are_fleets_merge_into_the_fleet_s_worst_case(request, tmp_path, pg_url):
    run = run_name(request)
    procs = [start_node(tmp_path, pg_url, run, 2, i, "--processes", "2") for i in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    docs = [json.loads((tmp_path / f"node-{i}.json").read_text()) for i in range(2)]
    assert [len(d["processes"]) for d in docs] == [2, 2]
    merged, out = merge(tmp_path, 2)
    assert out.returncode == 0, out.stdout + out.stderr
    m = merged["summary"]
    assert m["processes"] == 4
    assert m["worst_case_connections"] == 2 * 2 * (2 + 1)  # nodes x processes x capacity
    max_connections = merged["database"]["max_connections"]
    reserved = 0 if merged["database"]["superuser"] else merged["database"]["reserved_connections"]
    assert m["connection_headroom"] == max_connections - reserved - 12
    assert [n["processes"] for n in merged["merge"]["per_node"]] == [2, 2]
    assert m["operations"] == sum(d["summary"]["operations"] for d in docs)
    assert m["checkout_wait_ms"]["count"] == sum(
        d["summary"]["checkout_wait_ms"]["count"] for d in docs
    )


@pytest.mark.postgres
def test_a_node_whose_row_was_cleared_while_waiting_joins_again(request, pg_url):
    import threading

    from poolbench.db.target import parse_url

    run = run_name(request)
    url = parse_url(pg_url, "test")
    a, b = NodeSession(NodeSpec(run, 2, 0, 20), url), NodeSession(NodeSpec(run, 2, 1, 20), url)
    a.join()
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:  # as a node that took a's stalled heartbeat for death
            conn.execute(
                sa.text("DELETE FROM poolbench.nodes WHERE run_name = :r AND node_index = 0"),
                {"r": run},
            )
    finally:
        engine.dispose()
    b.join()
    waiter = threading.Thread(target=a.wait_for_start)
    waiter.start()
    started = b.wait_for_start()
    waiter.join(30)
    assert a.start is not None and a.start.start_at == started.start_at
    outcomes = []
    finisher = threading.Thread(target=lambda: outcomes.append(a.finish()))
    finisher.start()
    outcomes.append(b.finish())
    finisher.join(30)
    assert [o.finished for o in outcomes] == [[0, 1], [0, 1]]
    assert rows_of(pg_url, run) == []


@pytest.mark.parametrize(
    "url_fixture",
    [
        pytest.param("pg_url", marks=pytest.mark.postgres),
        pytest.param("mysql_url", marks=pytest.mark.mysql),
    ],
)
def test_the_table_goes_only_when_no_run_uses_it_and_the_schema_only_if_empty(request, url_fixture):
    from poolbench.db.target import parse_url

    url = request.getfixturevalue(url_fixture)
    run = run_name(request)
    poolbench_schema(url, drop=True)
    other = NodeSession(NodeSpec(f"{run}-other", 2, 0), parse_url(url, "test"))
    other.join()  # another run, waiting for its second node
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        registry = Registry(engine, run)
        assert registry.drop_if_unused() is False
        assert rows_of(url, f"{run}-other")[0].index == 0
        other.leave()  # its last node: the table and the schema go
        assert not poolbench_schema(url)
        registry.create()
        with engine.begin() as conn:  # something of the user's in the schema
            conn.exec_driver_sql("CREATE TABLE poolbench.mine (id INTEGER)")
        assert registry.drop_if_unused() is True
        assert poolbench_schema(url)  # kept, with the user's table
        assert not sa.inspect(engine).has_table("nodes", schema="poolbench")
        assert sa.inspect(engine).has_table("mine", schema="poolbench")
    finally:
        engine.dispose()
        poolbench_schema(url, drop=True)


@pytest.mark.postgres
def test_host_clocks_that_disagree_do_not_move_the_start(request, pg_url):
    """Three nodes whose host clocks are 7 s ahead, right, and 4 s behind start at one
    instant of the server's clock: each measured its own offset."""
    import threading

    from poolbench.db.target import parse_url

    run = run_name(request)
    url = parse_url(pg_url, "test")
    skews = [7.0, 0.0, -4.0]
    nodes = [
        NodeSession(NodeSpec(run, 3, i, 30), url, wall=lambda s=s: time.time() + s)
        for i, s in enumerate(skews)
    ]
    for node in nodes:
        node.join()
    threads = [threading.Thread(target=node.wait_for_start) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    starts = [node.start for node in nodes]
    assert all(s is not None for s in starts)
    began = [s.server_at_start for s in starts if s is not None]
    assert max(began) - min(began) < 0.100
    for skew, s in zip(skews, starts, strict=True):
        assert s is not None and s.clock.offset_s == pytest.approx(-skew, abs=0.05)
    finishers = [threading.Thread(target=node.finish) for node in nodes]
    for t in finishers:
        t.start()
    for t in finishers:
        t.join(30)
    assert rows_of(pg_url, run) == []
