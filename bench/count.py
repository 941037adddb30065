"""Run a fixed number of SELECT 1 requests one way or the other, for bench/run.py to count
the instructions under callgrind (repeatable, unlike wall time on a shared machine).

    python bench/count.py bare N URL       with engine.connect() as c: c.execute(...)
    python bench/count.py poolbench N URL  poolbench's request path, its recording, and
                                           folding the records as the sampler does
    python bench/count.py tick N URL       N samples of an idle pool: the per-tick cost
    python bench/count.py async-bare N URL       the same on an AsyncEngine (URL with an
                                                 async driver): async with engine.connect()
    python bench/count.py async-poolbench N URL  poolbench's async request path on its loop
"""

from __future__ import annotations

import sys
import time

import sqlalchemy as sa


def main() -> None:
    mode, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode.startswith("async-"):
        count_async(mode, n, url)
        return
    from poolbench.db.backends import backend_for
    from poolbench.db.server import ServerProbe
    from poolbench.engine.poolside import build_pool_side
    from poolbench.engine.requests import Worker
    from poolbench.scenario import parse_scenario

    scenario = parse_scenario(
        "name: count\npool: {pool_size: 1, max_overflow: 0}\n"
        "workload: {session: closed, api: connection}\nload: {workers: 1}\nduration: 1s\n",
        "count",
    )
    backend = backend_for(sa.make_url(url))
    side = build_pool_side(scenario, sa.make_url(url), backend, "poolbench-count", lambda t: t)
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
            run(worker, picker.only or picker.pick(worker.rng))  # as a closed-loop worker
            if i % 1000 == 999:
                side.read()  # the sampler folds the records in
        side.read()
    elif mode == "tick":
        probe = ServerProbe(sa.make_url(url), backend, "poolbench-count")
        probe.open()
        for _ in range(n):
            side.read()
            probe.try_view([])  # the server's count, asked once per sample
        probe.close()
    side.close()


def count_async(mode: str, n: int, url: str) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from poolbench.db.backends import backend_for
    from poolbench.engine.poolside import build_pool_side
    from poolbench.engine.requests import Worker
    from poolbench.scenario import parse_scenario

    query = sa.text("SELECT 1")
    if mode == "async-bare":
        # an engine of its own, as an async service has it
        async def bare() -> None:
            engine = create_async_engine(url, pool_size=1, max_overflow=0)
            for _ in range(n + 1):
                async with engine.connect() as conn:
                    (await conn.execute(query)).all()
            await engine.dispose()

        asyncio.run(bare())
        return
    scenario = parse_scenario(
        "name: count\nengine: async\npool: {pool_size: 1, max_overflow: 0}\n"
        "workload: {session: closed, api: connection}\nload: {workers: 1}\nduration: 1s\n",
        "count",
    )
    backend = backend_for(sa.make_url(url), engine="async")
    side = build_pool_side(scenario, sa.make_url(url), backend, "poolbench-count", lambda t: t)
    driver = side.driver
    driver.executor.started_at = time.perf_counter()
    worker = Worker(0, 1)

    async def requests() -> None:
        run = driver.executor.run
        plan = driver.picker.pick(worker.rng)
        await run(worker, plan)  # connect and initialise the dialect up front
        for i in range(n):
            await run(worker, driver.picker.pick(worker.rng))
            if i % 1000 == 999:
                side.read()

    driver.call(requests(), timeout=600)
    side.read()
    side.close()


if __name__ == "__main__":
    main()
