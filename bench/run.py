"""make bench: what poolbench itself costs, measured as ratios within one run.

1. Throughput: poolbench's closed loop of `SELECT 1` (api: connection) against a bare loop
   of threads doing `with engine.connect() as c: c.execute(SELECT 1)` on the same engine
   settings, alternated over several rounds. Target: ratio >= 0.95. The ORM Session's own
   cost (api: session, what services use) is reported beside it.
2. Sampler cost: the same poolbench run sampled every 100 ms against every 10 s.
   Target: < 2 %.
3. Memory: peak RSS of a short run and of a 10x longer one, each in a fresh process.
   Target: flat (histograms, not lists of samples).

Ratios come from rounds interleaved in one run, because this machine is noisy; absolute
numbers are printed for context only. Usage: python bench/run.py [--url URL] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import sqlalchemy as sa

DEFAULT_URL = os.environ.get(
    "POOLBENCH_BENCH_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
WORKERS = 8


def bare_loop(url: str, seconds: float) -> float:
    """Requests per second of N threads doing what a minimal service does."""
    engine = sa.create_engine(url, pool_size=WORKERS, max_overflow=0, pool_timeout=30)
    query = sa.text("SELECT 1")
    stop = threading.Event()
    counts = [0] * WORKERS

    def work(i: int) -> None:
        n = 0
        while not stop.is_set():
            with engine.connect() as conn:
                conn.execute(query).all()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return sum(counts) / elapsed


def poolbench_loop(
    url: str, seconds: float, api: str = "connection", interval: str = "1s"
) -> float:
    from poolbench.db.target import Target, parse_url
    from poolbench.engine.runner import run_scenario
    from poolbench.scenario import parse_scenario

    text = f"""
name: bench
pool: {{pool_size: {WORKERS}, max_overflow: 0, pool_timeout: 30s}}
workload: {{session: closed, api: {api}}}
load: {{workers: {WORKERS}}}
duration: {seconds}s
interval: {interval}
"""
    scenario = parse_scenario(text, "bench")
    result = run_scenario(scenario, Target(parse_url(url, "bench"), "--url"))
    return result.summary.operations / result.summary.duration_s


def peak_rss_mb(url: str, seconds: float) -> tuple[float, int]:
    """Peak RSS (MB) and requests of a fresh process running poolbench this long."""
    code = f"""
import resource
from poolbench.db.target import Target, parse_url
from poolbench.engine.runner import run_scenario
from poolbench.scenario import parse_scenario
text = '''
name: mem
pool: {{pool_size: {WORKERS}, max_overflow: 0}}
workload: {{session: closed, api: connection}}
load: {{workers: {WORKERS}}}
duration: {seconds}s
interval: 100ms
'''
r = run_scenario(parse_scenario(text, 'mem'), Target(parse_url({url!r}, 'x'), '--url'))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, r.summary.operations)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, ops = out.stdout.split()
    return float(rss), int(ops)


def rounds(label: str, pairs: int, a, b) -> tuple[float, list[float], list[float]]:
    """Alternate a and b ``pairs`` times; the median of the per-pair ratios b/a."""
    xs, ys, ratios = [], [], []
    for i in range(pairs):
        if i % 2 == 0:
            x = a()
            y = b()
        else:
            y = b()
            x = a()
        xs.append(x)
        ys.append(y)
        ratios.append(y / x)
        print(f"  {label} round {i + 1}: {x:8.0f} vs {y:8.0f} req/s  ratio {y / x:.3f}", flush=True)
    return statistics.median(ratios), xs, ys


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 6.0
    pairs = 3 if args.quick else 5
    url = args.url
    shown = sa.make_url(url).render_as_string(hide_password=True)
    print(
        f"poolbench bench against {shown}, {WORKERS} workers, {seconds:g}s rounds, "
        f"{os.cpu_count()} cores"
    )

    print("1. throughput: bare engine.connect() loop vs poolbench (api: connection)")
    harness, bare, pb = rounds(
        "harness", pairs, lambda: bare_loop(url, seconds), lambda: poolbench_loop(url, seconds)
    )
    print("   poolbench api: connection vs api: session (the ORM Session's own cost)")
    orm, _, _ = rounds(
        "session",
        max(2, pairs - 2),
        lambda: poolbench_loop(url, seconds),
        lambda: poolbench_loop(url, seconds, api="session"),
    )

    print("2. sampler cost: interval 10s vs 100ms")
    sampled, _, _ = rounds(
        "sampler",
        pairs,
        lambda: poolbench_loop(url, seconds, interval="10s"),
        lambda: poolbench_loop(url, seconds, interval="100ms"),
    )

    print("3. memory: peak RSS of a short and a 10x longer run (fresh processes)")
    short_s, long_s = (2.0, 20.0) if args.quick else (3.0, 30.0)
    rss_short, ops_short = peak_rss_mb(url, short_s)
    rss_long, ops_long = peak_rss_mb(url, long_s)
    print(
        f"  {short_s:g}s: {rss_short:.1f} MB after {ops_short} requests; "
        f"{long_s:g}s: {rss_long:.1f} MB after {ops_long} requests"
    )

    figures = {
        "harness_ratio": round(harness, 3),
        "bare_req_s_median": round(statistics.median(bare)),
        "poolbench_req_s_median": round(statistics.median(pb)),
        "orm_session_ratio": round(orm, 3),
        "sampler_cost_100ms": round(1 - sampled, 4),
        "rss_short_mb": round(rss_short, 1),
        "rss_long_mb": round(rss_long, 1),
        "rss_growth": round(rss_long / rss_short - 1, 4),
        "requests_short": ops_short,
        "requests_long": ops_long,
    }
    print()
    print(f"harness throughput ratio   {harness:.3f}   (target >= 0.95)")
    print(f"ORM Session / connection   {orm:.3f}   (the Session's own cost, not poolbench's)")
    print(f"sampler cost at 100 ms     {1 - sampled:+.2%}  (target < 2%)")
    print(f"memory growth, 10x longer  {rss_long / rss_short - 1:+.1%}  (target: flat)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
