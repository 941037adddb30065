"""Load models: who sends requests, and when.

- :class:`ClosedLoop`: ``workers`` threads, each looping request -> think. When the pool
  is slow, they slow down with it (as a fixed set of web workers does).
- :class:`OpenLoop`: Poisson arrivals at ``rate``, each served by one of a bounded set
  of threads. An arrival with no free thread is *dropped* and one dispatched more than
  10 ms after its time is *late*; both are counted, never silently absorbed.

Phases change the worker count or the rate while the run goes on.

Both are the threaded way to drive a pool side (engine/poolside.py's ``LoadDriver``):
requests run in threads, a hold is spent in ``Event.wait`` (or on the server), and a
caller waiting for a connection is a thread blocked in checkout, flagged on its
:class:`Worker`. Another kind of pool side (an event loop driving an ``AsyncEngine``)
brings its own driver; the measuring stays the same.
"""

from __future__ import annotations

import bisect
import gc
import queue
import random
import threading
from collections.abc import Sequence
from time import perf_counter
from typing import Any

from ..scenario.model import Phase
from .interrupts import join_all
from .peaks import Peak
from .requests import GroupPlan, RequestExecutor, Worker

LATE_AFTER_S = 0.010


class GroupPicker:
    """Chooses a request's group by the groups' shares."""

    def __init__(self, plans: Sequence[GroupPlan]) -> None:
        self.plans = list(plans)
        total = 0.0
        self._cumulative = []
        for plan in self.plans:
            total += plan.group.share
            self._cumulative.append(total)
        self._total = total
        # one group: the plan every request runs, read by the drivers without a call
        self.only = self.plans[0] if len(self.plans) == 1 else None

    def pick(self, rng: random.Random) -> GroupPlan:
        if self.only is not None:
            return self.only
        index = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return self.plans[min(index, len(self.plans) - 1)]


def prefill(engine: Any, connections: int) -> None:
    """Open ``connections`` connections at once and give them back."""
    opened = []
    try:
        for _ in range(connections):
            opened.append(engine.connect())
    finally:
        for conn in opened:
            conn.close()


class _Driver:
    def __init__(
        self,
        executor: RequestExecutor,
        plans: Sequence[GroupPlan],
        threads: int,
        seed: int | None,
        stop: threading.Event,
    ) -> None:
        self.executor = executor
        self.picker = GroupPicker(plans)
        self.stop = stop
        self.seed = seed
        self.workers = [Worker(i, seed) for i in range(threads)]
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self.dropped = 0
        self.late = 0

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, worker: Worker) -> GroupPlan:
        picker = self.picker
        plan = picker.only or picker.pick(worker.rng)
        try:
            self.executor.run(worker, plan)
        except BaseException as exc:  # never let a worker thread die silently
            if worker.in_checkout:
                worker.in_checkout = False
                self.executor.waiting.down()
            self.executor.unexpected(plan, exc)
        return plan

    def waiting(self) -> int:
        """Callers blocked in checkout right now (SQLAlchemy does not count them)."""
        return self._waiting().now

    def peak_waiting(self) -> int:
        """The most callers blocked in checkout at once since the last call."""
        if self.executor.timer is not None:
            return self._waiting().take()
        # the next interval starts from the workers' own flags, so the inline count
        # (RequestExecutor.run) can never drift
        return self._waiting().take(sum(1 for w in self.workers if w.in_checkout))

    def reset_peaks(self) -> None:
        self._waiting().reset()

    def _waiting(self) -> Peak:
        timer = self.executor.timer
        # tasks that open their own sessions: their checkouts are counted at the pool
        return timer.in_flight if timer is not None else self.executor.waiting

    def set_phase(self, phase: Phase) -> None:
        raise NotImplementedError

    def start(self, t0: float) -> None:
        """Start the threads; they wait for the first phase before sending anything.
        Times are measured from ``t0`` (perf_counter)."""
        self.executor.started_at = t0
        self._start()

    def _start(self) -> None:
        raise NotImplementedError

    def prefill(self, connections: int) -> None:
        prefill(self.executor.engine, connections)

    def halt(self) -> None:
        """Stop sending requests: in-flight ones end without being recorded, sleepers wake."""
        self.executor.halted = True
        self.stop.set()
        self.wake()

    def dispose(self) -> None:
        """Close the engine's pooled connections (from any thread)."""
        self.executor.engine.dispose()

    def collect_garbage(self) -> None:
        """Reclaim sessions dropped without ``close()``: their connections go back."""
        gc.collect()

    def wake(self) -> None:
        """Let threads see that ``stop`` is set."""
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every thread (less if the user asked to skip the
        waiting, engine/interrupts.py); how many are still running."""
        join_all(self._threads, timeout)
        return sum(1 for t in self._threads if t.is_alive())


class ClosedLoop(_Driver):
    """A fixed set of workers, each looping request -> think."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._active = 0

    def _start(self) -> None:
        for worker in self.workers:
            self._spawn(self._loop, f"poolbench-worker-{worker.index}", worker)

    def set_phase(self, phase: Phase) -> None:
        with self._cond:
            self._active = phase.workers or 0
            self._cond.notify_all()

    def _loop(self, worker: Worker) -> None:
        stop = self.stop
        executor = self.executor
        while not executor.halted:
            if worker.index >= self._active:
                with self._cond:
                    while not stop.is_set() and worker.index >= self._active:
                        self._cond.wait()
                continue
            plan = self._serve(worker)
            if plan.has_think:
                stop.wait(plan.think(worker.rng))


class OpenLoop(_Driver):
    """Poisson arrivals at a rate, served by at most ``threads`` concurrent requests."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rate = 0.0
        self._rate_changed = False
        self._queue: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(len(self.workers))
        self._rng = random.Random(None if self.seed is None else self.seed * 7919 + 1)

    def _start(self) -> None:
        for worker in self.workers:
            self._spawn(self._serve_loop, f"poolbench-worker-{worker.index}", worker)
        self._spawn(self._dispatch, "poolbench-dispatcher")

    def set_phase(self, phase: Phase) -> None:
        with self._cond:
            self._rate = phase.rate or 0.0
            self._rate_changed = True
            self._cond.notify_all()

    def wake(self) -> None:
        super().wake()
        for _ in self.workers:
            self._queue.put(None)

    def _dispatch(self) -> None:
        stop, rng = self.stop, self._rng
        next_at: float | None = None
        while not stop.is_set():
            with self._cond:
                if self._rate_changed:
                    self._rate_changed = False
                    next_at = None
                rate = self._rate
                if rate <= 0:
                    self._cond.wait()
                    continue
                now = perf_counter()
                if next_at is None:
                    next_at = now + rng.expovariate(rate)
                if next_at > now:
                    self._cond.wait(next_at - now)
                    continue
            if now - next_at > LATE_AFTER_S:
                self.late += 1
            if self._idle.acquire(blocking=False):
                self._queue.put(next_at)
            else:
                self.dropped += 1
            next_at += rng.expovariate(rate)

    def _serve_loop(self, worker: Worker) -> None:
        while not self.stop.is_set():
            scheduled = self._queue.get()
            if scheduled is None:
                return
            try:
                self._serve(worker)
            finally:
                self._idle.release()


def driver_for(open_loop: bool, *args, **kwargs) -> _Driver:
    return (OpenLoop if open_loop else ClosedLoop)(*args, **kwargs)
