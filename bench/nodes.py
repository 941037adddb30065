"""Runs across hosts on this machine: merged throughput of N nodes, and the barrier's cost.

For N = 1, 2, 4 it starts N independent ``poolbench run --join`` processes a little apart
(as pods are), each running the same closed loop (8 workers, ``api: session``), merges
their results with ``poolbench merge``, and reports:

- the merged throughput against one node's;
- how closely the nodes started (the spread of each node's ``server_at_start``, the
  server's clock read the moment it started) and how late each woke after its target;
- the barrier's cost to each node: the time from its join to the start (the others'
  arrival, plus the 2 s margin) and from its end until it knew which nodes finished; and
  the throughput of a 1-node run against the same run without ``--join``, alternated.

Usage: python bench/nodes.py [--url URL] [--seconds 10] [--nodes 1,2,4] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """\
name: bench-nodes
pool: {{pool_size: 8, max_overflow: 0, pool_timeout: 5s}}
workload: {{session: closed, api: session}}
load: {{workers: 8}}
duration: {seconds}s
interval: 1s
"""


def poolbench(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "poolbench", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    out = proc.communicate(timeout=600)[0]
    if proc.returncode not in (0, 1):
        raise SystemExit(f"poolbench exited {proc.returncode}:\n{out}")
    return out


def run_nodes(work: Path, scenario: Path, url: str, nodes: int, gap_s: float) -> dict:
    name = f"bench-{os.getpid()}-{nodes}-{int(time.time())}"
    procs = []
    began = time.monotonic()
    for index in range(nodes):
        procs.append(
            poolbench(
                "run",
                str(scenario),
                "--url",
                url,
                "--join",
                name,
                "--nodes",
                str(nodes),
                "--node-index",
                str(index),
                "--json",
                str(work / f"{name}-{index}.json"),
                "--progress",
                "none",
            )
        )
        time.sleep(gap_s)
    for proc in procs:
        finish(proc)
    wall = time.monotonic() - began
    files = [str(work / f"{name}-{i}.json") for i in range(nodes)]
    docs = [json.loads(Path(f).read_text()) for f in files]
    merged_path = work / f"{name}-merged.json"
    finish(poolbench("merge", *files, "--json", str(merged_path)))
    merged = json.loads(merged_path.read_text())
    starts = [d["node"]["server_at_start"] for d in docs]
    return {
        "nodes": nodes,
        "throughput_ops_s": merged["summary"]["throughput_ops_s"],
        "per_node_ops_s": [d["summary"]["throughput_ops_s"] for d in docs],
        "start_spread_ms": round((max(starts) - min(starts)) * 1000, 3),
        "late_ms_max": max(d["node"]["late_ms"] for d in docs),
        # the barrier's cost to each node: waiting from its join to the start, and at
        # its end until it knew which nodes finished
        "waited_ms": [d["node"]["waited_ms"] for d in docs],
        "end_wait_ms": [d["node"]["end_wait_ms"] for d in docs],
        "wall_s": round(wall, 2),
    }


def plain_throughput(work: Path, scenario: Path, url: str) -> float:
    out = work / "plain.json"
    finish(poolbench("run", str(scenario), "--url", url, "--progress", "none", "--json", str(out)))
    return float(json.loads(out.read_text())["summary"]["throughput_ops_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "POOLBENCH_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--nodes", default="1,2,4")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between node starts")
    parser.add_argument("--pairs", type=int, default=3, help="rounds with and without --join")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="poolbench-bench-nodes-") as tmp:
        work = Path(tmp)
        scenario = work / "scenario.yaml"
        scenario.write_text(SCENARIO.format(seconds=args.seconds))
        counts = [int(n) for n in args.nodes.split(",")]
        rows = [run_nodes(work, scenario, args.url, n, args.gap) for n in counts]
        pairs = []
        for _ in range(args.pairs):  # alternated: the machine's noise hits both sides
            plain = plain_throughput(work, scenario, args.url)
            joined = run_nodes(work, scenario, args.url, 1, 0)["throughput_ops_s"]
            pairs.append((plain, joined))
    base = rows[0]["throughput_ops_s"]
    where = args.url.split("@")[-1]
    print(f"closed loop, 8 workers (api: session), {args.seconds}s per node, against {where}")
    print("nodes  merged ops/s  against 1  per node ops/s              start spread  latest wake")
    for r in rows:
        per = ", ".join(f"{v:g}" for v in r["per_node_ops_s"])
        print(
            f"{r['nodes']:>5}  {r['throughput_ops_s']:>12g}  {r['throughput_ops_s'] / base:>8.2f}x"
            f"  {per:<26}  {r['start_spread_ms']:>9.2f} ms  {r['late_ms_max']:>8.2f} ms"
        )
    for r in rows:
        print(
            f"{r['nodes']} nodes: waited from join to start "
            f"{', '.join(f'{w / 1000:.2f}' for w in r['waited_ms'])} s; at the end "
            f"{', '.join(f'{w:.0f}' for w in r['end_wait_ms'])} ms"
        )
    ratios = sorted(j / p for p, j in pairs)
    print(
        "1 node with --join against the same run without it: "
        + ", ".join(f"{j:g} vs {p:g} ops/s" for p, j in pairs)
        + f" (median ratio {ratios[len(ratios) // 2]:.3f})"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"rows": rows, "pairs": pairs}, indent=2))


if __name__ == "__main__":
    main()
