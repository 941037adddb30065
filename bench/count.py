"""Run a fixed number of SELECT 1 requests one way or the other, for bench/run.py to count
the instructions under callgrind (repeatable, unlike wall time on a shared machine).

    python bench/count.py bare N URL       with engine.connect() as c: c.execute(...)
    python bench/count.py poolbench N URL  poolbench's request path, its recording, and
                                           folding the records as the sampler does
    python bench/count.py tick N URL       N samples of an idle pool: the per-tick cost
"""

from __future__ import annotations

import sys
import time

import sqlalchemy as sa


def main() -> None:
    mode, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    from poolbench.db.server import probe_for
    from poolbench.engine.poolside import build_pool_side
    from poolbench.engine.requests import Worker
    from poolbench.scenario import parse_scenario

    scenario = parse_scenario(
        "name: count\npool: {pool_size: 1, max_overflow: 0}\n"
        "workload: {session: closed, api: connection}\nload: {workers: 1}\nduration: 1s\n",
        "count",
    )
    side = build_pool_side(scenario, sa.make_url(url), "postgresql", "poolbench-count", lambda t: t)
    side.driver.executor.started_at = time.perf_counter()
    worker = Worker(0, 1)
    picker = side.driver.picker
    query = sa.text("SELECT 1")
    with side.engine.connect() as conn:  # connect and initialise the dialect up front
        conn.execute(query).all()
    if mode == "bare":
        # an engine of its own: no poolbench listeners, exactly what a service has
        engine = sa.create_engine(url, pool_size=1, max_overflow=0)
        with engine.connect() as conn:
            conn.execute(query).all()
        for _ in range(n):
            with engine.connect() as conn:
                conn.execute(query).all()
    elif mode == "poolbench":
        run = side.driver.executor.run
        for i in range(n):
            run(worker, picker.pick(worker.rng))  # what a closed-loop worker does
            if i % 1000 == 999:
                side.read()  # the sampler folds the records in
        side.read()
    elif mode == "tick":
        probe = probe_for(sa.make_url(url), "poolbench-count")
        probe.open()
        for _ in range(n):
            side.read()
            probe.try_view([])  # the server's count, asked once per sample
        probe.close()
    side.close()


if __name__ == "__main__":
    main()
