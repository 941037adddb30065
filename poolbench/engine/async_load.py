"""Load on an ``AsyncEngine``: one event loop, in a thread of its own, drives every request.

The async way to drive a pool side (engine/poolside.py's ``LoadDriver``), beside the
threaded one (engine/load.py), with the same two models:

- closed loop: ``workers`` coroutines, each looping request -> think;
- open loop: Poisson arrivals at ``rate``, each a task, at most ``concurrency`` at once;
  an arrival over that bound is *dropped*, one dispatched more than 10 ms late is *late*.

A hold or a think time is ``asyncio.sleep``; a caller waiting for a connection is a
coroutine suspended in checkout, flagged on its :class:`Worker` (SQLAlchemy does not count
them). The runner and the sampler call from their own threads: everything they ask is
handed to the loop (``run_coroutine_threadsafe``) or read from plain attributes.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections.abc import Coroutine, Sequence
from time import perf_counter
from typing import Any, TypeVar

from ..scenario.model import Phase
from .async_requests import AsyncRequestExecutor
from .load import LATE_AFTER_S, GroupPicker
from .requests import GroupPlan, Worker

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0  # a call into the loop that takes longer has hung


GC_TICK_S = 0.005  # how often the loop looks whether a collection is due


class LoopCollector:
    """Python's cyclic garbage collector, run on the event loop's thread only.

    A dropped ``AsyncSession`` is reclaimed by the collector, and SQLAlchemy then
    terminates its connection right where the collection runs. Left automatic, the
    collection runs in whichever thread happens to allocate: poolbench's sampler and
    server-view threads as often as the loop. An async driver's connection terminated from
    a foreign thread corrupts the loop's state: asyncpg then fails requests that never
    touched the dropped session ("another operation is in progress", "cannot use
    Connection.transaction() in a manually started transaction"), errors an app with one
    loop thread does not have. So while a loop runs, automatic collection is off and the
    loop collects the generation the interpreter would have, when it would have (its
    allocation counts against its thresholds), every ``GC_TICK_S``."""

    _lock = threading.Lock()
    _users = 0
    _was_enabled = True

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            if cls._users == 0:
                cls._was_enabled = gc.isenabled()
                gc.disable()
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._was_enabled:
                gc.enable()

    @staticmethod
    def due() -> int | None:
        """The oldest generation whose allocation count passed its threshold, if any."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                return generation
        return None

    @classmethod
    def tick(cls, loop: asyncio.AbstractEventLoop) -> None:
        if not cls._was_enabled:
            return  # the user turned the collector off: so do we
        generation = cls.due()
        if generation is not None:
            gc.collect(generation)
        loop.call_later(GC_TICK_S, cls.tick, loop)


class EventLoopThread:
    """An event loop running in a daemon thread; other threads hand it coroutines.

    While it runs, the cyclic garbage collector runs on this thread only
    (:class:`LoopCollector`)."""

    def __init__(self, name: str = "poolbench-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        LoopCollector.acquire()
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(LoopCollector.tick, self.loop)
        try:
            self.loop.run_forever()
        finally:
            LoopCollector.release()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run ``coro`` on the loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        """Cancel what is left on the loop, stop it and close it (safe to call twice)."""
        if not self.running:
            return
        try:
            self.call(_cancel_all(), timeout=5.0)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()


async def _collect() -> None:
    gc.collect()


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)


class AsyncDriver:
    """What both async load models share: the loop, the workers, halting and cleanup."""

    def __init__(
        self,
        executor: AsyncRequestExecutor,
        plans: Sequence[GroupPlan],
        concurrency: int,
        seed: int | None,
        stop: threading.Event,
    ) -> None:
        self.executor = executor
        self.stop = stop  # set at halt: the keep-alive's thread watches it
        self.picker = GroupPicker(plans)
        self.seed = seed
        self.workers = [Worker(i, seed) for i in range(concurrency)]
        self.dropped = 0
        self.late = 0
        self._thread = EventLoopThread()
        self.loop = self._thread.loop
        executor.loop = self.loop
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None  # made on the loop
        self._disposed = False

    # -- from the runner's thread ---------------------------------------------------------------

    def start(self, t0: float) -> None:
        self.executor.started_at = t0
        self._thread.call(self._start())

    async def _start(self) -> None:
        self._changed = asyncio.Event()
        self._begin()

    def _begin(self) -> None:
        raise NotImplementedError

    def set_phase(self, phase: Phase) -> None:
        self._thread.soon(self._apply, phase)

    def _apply(self, phase: Phase) -> None:
        raise NotImplementedError

    def waiting(self) -> int:
        """Coroutines suspended in checkout right now (SQLAlchemy does not count them)."""
        return self.executor.waiting.now

    def peak_waiting(self) -> int:
        """The most coroutines suspended in checkout at once since the last call."""
        return self.executor.waiting.take()

    def reset_peaks(self) -> None:
        self.executor.waiting.reset()

    def prefill(self, connections: int) -> None:
        """Open ``connections`` connections at once and give them back."""
        self._thread.call(self._prefill(connections))

    async def _prefill(self, connections: int) -> None:
        engine = self.executor.engine
        opened = []
        try:
            for _ in range(connections):
                opened.append(await engine.connect())
        finally:
            for conn in opened:
                await conn.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run ``coro`` on the pool side's loop and wait for it (from another thread)."""
        return self._thread.call(coro, timeout)

    def halt(self) -> None:
        """Stop sending requests: in-flight ones end without being recorded, sleepers wake."""
        self.executor.halted = True
        self.stop.set()
        if self._thread.running:
            self._thread.soon(self._wake)

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
        for task in list(self._tasks):
            if getattr(task, "poolbench_resting", False):
                task.cancel()

    def join(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every request; how many are still running."""
        if not self._thread.running:
            return 0
        try:
            return self._thread.call(self._join(timeout), timeout + 5.0)
        except Exception:
            return len(self._tasks)

    async def _join(self, timeout: float) -> int:
        tasks = list(self._tasks)
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
        return len(pending)

    def dispose(self) -> None:
        """Close the engine's pooled connections on the loop, then stop the loop (twice is
        fine)."""
        if self._disposed:
            return
        self._disposed = True
        if self._thread.running:
            try:
                self._thread.call(self._dispose())
            finally:
                self._thread.stop()

    def collect_garbage(self) -> None:
        """Reclaim sessions dropped without ``close()``, on the loop (:class:`LoopCollector`)."""
        if self._thread.running:
            self._thread.call(_collect())

    async def _dispose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        await self.executor.engine.dispose()

    # -- on the loop --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _serve(self, worker: Worker) -> GroupPlan:
        plan = self.picker.pick(worker.rng)
        try:
            await self.executor.run(worker, plan)
        except Exception as exc:  # never let a worker die silently
            if worker.in_checkout:
                worker.in_checkout = False
                self.executor.waiting.down()
            self.executor.unexpected(plan, exc)
        return plan

    async def _rest(self, seconds: float) -> bool:
        """Think for ``seconds``; False when the run was halted meanwhile."""
        task = asyncio.current_task()
        task.poolbench_resting = True  # type: ignore[union-attr]
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            return False
        finally:
            task.poolbench_resting = False  # type: ignore[union-attr]
        return not self.executor.halted


class AsyncClosedLoop(AsyncDriver):
    """A fixed set of coroutines, each looping request -> think."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active = 0

    def _begin(self) -> None:
        for worker in self.workers:
            self._spawn(self._loop(worker))

    def _apply(self, phase: Phase) -> None:
        self._active = phase.workers or 0
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    async def _loop(self, worker: Worker) -> None:
        executor = self.executor
        while not executor.halted:
            if worker.index >= self._active:
                changed = self._changed
                assert changed is not None
                await changed.wait()
                continue
            plan = await self._serve(worker)
            if plan.has_think and not await self._rest(plan.think(worker.rng)):
                return


class AsyncOpenLoop(AsyncDriver):
    """Poisson arrivals at a rate, each a task, at most ``concurrency`` at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rate = 0.0
        self._free = list(reversed(self.workers))
        self._rng = random.Random(None if self.seed is None else self.seed * 7919 + 1)

    def _begin(self) -> None:
        self._spawn(self._dispatch())

    def _apply(self, phase: Phase) -> None:
        self._rate = phase.rate or 0.0
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    async def _dispatch(self) -> None:
        rng = self._rng
        while not self.executor.halted:
            rate = self._rate
            changed = self._changed
            assert changed is not None
            if rate <= 0:
                await changed.wait()
                continue
            next_at = perf_counter() + rng.expovariate(rate)
            while not self.executor.halted and not changed.is_set():
                delay = next_at - perf_counter()
                if delay > 0:
                    task = asyncio.current_task()
                    task.poolbench_resting = True  # type: ignore[union-attr]
                    try:
                        await asyncio.wait_for(changed.wait(), delay)
                    except (asyncio.TimeoutError, asyncio.CancelledError):
                        pass
                    finally:
                        task.poolbench_resting = False  # type: ignore[union-attr]
                    continue
                if -delay > LATE_AFTER_S:
                    self.late += 1
                if self._free:
                    self._spawn(self._one(self._free.pop()))
                else:
                    self.dropped += 1
                next_at += rng.expovariate(rate)

    async def _one(self, worker: Worker) -> None:
        try:
            await self._serve(worker)
        finally:
            self._free.append(worker)


def async_driver_for(open_loop: bool, *args: Any, **kwargs: Any) -> AsyncDriver:
    return (AsyncOpenLoop if open_loop else AsyncClosedLoop)(*args, **kwargs)
