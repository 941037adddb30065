"""The async kind of pool side: an ``AsyncEngine`` (``AsyncAdaptedQueuePool``) driven by
one event loop in its own thread (engine/async_load.py).

Everything is measured on the engine's ``sync_engine``, whose pool fires the same events
as a synchronous engine's, with the threaded side's :class:`Measures`; so the runner,
the fleet, the timeline and every output see a :class:`PoolSide` like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from ..db.backends import Backend
from ..scenario.model import PoolSettings, Scenario
from .async_load import AsyncDriver, async_driver_for
from .async_requests import AsyncRequestExecutor
from .faults import KeepAliveJob
from .pool import engine_kwargs
from .poolside import Measures, share_of
from .requests import GroupPlan

AsyncEngineFactory = Callable[[URL, PoolSettings, dict[str, Any]], AsyncEngine]


def build_async_engine(
    url: URL, settings: PoolSettings, connect_args: dict[str, Any]
) -> AsyncEngine:
    """``create_async_engine`` with the same pool arguments a sync run passes; QueuePool
    becomes its asyncio twin, as SQLAlchemy itself chooses for an async engine."""
    kwargs = engine_kwargs(settings)
    if kwargs.get("poolclass") is QueuePool:
        kwargs["poolclass"] = AsyncAdaptedQueuePool
    return create_async_engine(url, connect_args=connect_args, **kwargs)


def async_ping(driver: AsyncDriver, engine: AsyncEngine, query: str) -> Callable[[], None]:
    """The keep-alive's ping, run on the pool side's event loop."""
    statement = text(query)

    async def ping() -> None:
        async with engine.connect() as conn:
            (await conn.execute(statement)).all()

    def run() -> None:
        driver.call(ping())

    return run


def async_load_parts(
    scenario: Scenario,
    engine: AsyncEngine,
    backend: Backend,
    measures: Measures,
    scrub: Callable[[str], str],
    share: tuple[int, int],
    plans: list[GroupPlan],
) -> tuple[AsyncDriver, KeepAliveJob | None]:
    """The load driver and the keep-alive of an async pool side."""
    executor = AsyncRequestExecutor(
        engine,
        backend,
        measures.recorder,
        measures.leaks,
        perf_counter(),
        scrub,
        measures.first_timeout,
    )
    index, count = share
    seed = None if scenario.seed is None else scenario.seed + 7_919 * index
    concurrency = max(share_of(p, share).workers or 0 for p in scenario.effective_phases())
    if scenario.load.open_loop:
        concurrency = -(-scenario.load.concurrency // count)
    stop = threading.Event()
    driver = async_driver_for(scenario.load.open_loop, executor, plans, concurrency, seed, stop)
    keepalive = (
        KeepAliveJob(
            async_ping(driver, engine, scenario.keepalive.query), scenario.keepalive.every, stop
        )
        if scenario.keepalive is not None
        else None
    )
    return driver, keepalive
