"""A fleet: N worker processes, each with its own engine and pool, sharing the load.

This is what a service with several gunicorn/uvicorn workers looks like to the database:
N pools, so up to N x (pool_size + max_overflow) connections. Each process is started
with the ``spawn`` method and builds its engine itself (SQLAlchemy's advice: never share
an engine's connections across a fork). The parent drives every process like a local
pool side, over a pipe: phases, a reading per tick, shutdown, totals. Readings merge by
summing gauges and merging latency histograms exactly; the timeline is aligned by
construction, since every process is read at the same tick.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from .. import errors
from ..db.backends import Backend
from ..db.target import Target, scrub
from ..metrics.histogram import LatencyHistogram
from ..result import ProcessInfo
from ..scenario.model import Phase, Scenario
from .poolside import build_pool_side
from .readings import GroupHistograms, PoolReading, PoolTotals

READY_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0


@dataclass
class ChildSpec:
    """What a worker process needs to build its pool side."""

    scenario: Scenario
    url: URL
    backend: Backend
    application_name: str
    index: int
    count: int
    verbose: bool


def _child_main(conn: Any, events: Any, spec: ChildSpec) -> None:
    """A worker process: build the pool side, then answer the parent's calls."""
    # Ctrl-C reaches the whole process group; the parent handles it and tells us to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def first_timeout(t_s: float, message: str) -> None:
        events.put((spec.index, t_s, message))

    try:
        side = build_pool_side(
            spec.scenario,
            spec.url,
            spec.backend,
            spec.application_name,
            lambda text: scrub(text, spec.url),
            share=(spec.index, spec.count),
            on_first_timeout=first_timeout,
            verbose=spec.verbose,
        )
    except Exception as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("ok", os.getpid()))
    serve_calls(conn, side)


def serve_calls(
    conn: Any, side: Any, overrides: dict[str, Callable[..., Any]] | None = None
) -> None:
    """Answer the parent's calls on a built pool side until it says close (or is gone);
    ``overrides`` replace some of the calls (an app's process adds to them)."""
    calls: dict[str, Callable[..., Any]] = {
        "begin": side.begin,
        "phase": side.set_phase,
        "prefill": side.prefill,
        "read": side.read,
        "idle_ids": side.idle_ids,
        "stop": side.stop_load,
        "shutdown": side.shutdown,
        "totals": side.totals,
        **(overrides or {}),
    }
    while True:
        try:
            name, arg = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        if name == "close":
            side.close()
            conn.send(("ok", None))
            break
        try:
            result = calls[name]() if arg is None else calls[name](arg)
            conn.send(("ok", result))
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
    side.close()


class FleetPools:
    """N pool sides in worker processes, driven as one."""

    exact_stale = False  # the server is asked after the processes were read, not between

    def __init__(
        self,
        scenario: Scenario,
        target: Target,
        application_name: str,
        processes: int,
        on_first_timeout: Callable[[float, str], None],
        verbose: bool = False,
        child_main: Callable[[Any, Any, ChildSpec], None] = _child_main,
        name: str = "fleet",
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._events = ctx.Queue()
        self._on_first_timeout = on_first_timeout
        self._conns = []
        self._procs = []
        self.pids: list[int] = []
        self._server_ids: list[int] = []
        self._open_ids: set[int] = set()
        self._maxima = [dict(checked_out=0, overflow=0, waiting=0) for _ in range(processes)]
        self._closed = False
        for index in range(processes):
            parent_end, child_end = ctx.Pipe()
            spec = ChildSpec(
                scenario, target.url, target.backend, application_name, index, processes, verbose
            )
            proc = ctx.Process(
                target=child_main,
                args=(child_end, self._events, spec),
                name=f"poolbench-{name}-{index}",
                daemon=True,
            )
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)
        try:
            self.pids = [self._receive(i, READY_TIMEOUT_S) for i in range(processes)]
        except BaseException:
            self.close()
            raise
        self._listener = threading.Thread(
            target=self._listen, name="poolbench-fleet-events", daemon=True
        )
        self._listener.start()

    # -- calls to every process -----------------------------------------------------------

    def _receive(self, index: int, timeout: float) -> Any:
        conn = self._conns[index]
        if not conn.poll(timeout):
            raise errors.PoolbenchError(f"fleet process {index} did not answer in {timeout:g}s")
        try:
            reply = conn.recv()
        except (EOFError, OSError):
            code = self._procs[index].exitcode
            raise errors.PoolbenchError(f"fleet process {index} died (exit code {code})") from None
        if reply[0] == "ok":
            return reply[1]
        _, kind, message = reply
        error = getattr(errors, kind, None)
        if isinstance(error, type) and issubclass(error, errors.PoolbenchError):
            if error is errors.ScenarioError:
                raise errors.ScenarioError("scenario", message)
            raise error(message)
        raise errors.PoolbenchError(f"fleet process {index}: {kind}: {message}")

    def _call(self, name: str, arg: Any = None, timeout: float = CALL_TIMEOUT_S) -> list[Any]:
        with self._lock:
            for conn in self._conns:
                conn.send((name, arg))
            return [self._receive(i, timeout) for i in range(len(self._conns))]

    def call(self, name: str, arg: Any = None) -> list[Any]:
        """A call of its own to every process (an app's process answers more than the
        Pools calls: app/serve.py); their answers, in process order."""
        return self._call(name, arg)

    def _listen(self) -> None:
        while not self._closed:
            try:
                item = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return
            _index, t_s, message = item
            self._on_first_timeout(t_s, message)

    # -- the Pools protocol -------------------------------------------------------------------

    def begin(self, t0: float) -> None:
        # perf_counter is the system's monotonic clock: the same t0 in every process
        self._call("begin", t0)

    def set_phase(self, phase: Phase) -> None:
        self._call("phase", phase)

    def prefill(self, connections: int) -> None:
        self._call("prefill", connections, timeout=READY_TIMEOUT_S)

    def read(self) -> tuple[PoolReading, float | None]:
        readings: list[PoolReading] = self._call("read")
        for m, r in zip(self._maxima, readings, strict=True):
            m["checked_out"] = max(m["checked_out"], r.checked_out, r.peak_checked_out)
            m["overflow"] = max(m["overflow"], r.overflow, r.peak_overflow)
            m["waiting"] = max(m["waiting"], r.waiting, r.peak_waiting)
        merged = PoolReading.merged(readings)
        self._server_ids = merged.server_ids
        self._open_ids = merged.open_ids
        return merged, merged.stats.checkout_wait_p99_ms

    def open_ids(self) -> set[int]:
        return self._open_ids

    def server_ids(self) -> list[int]:
        return self._server_ids

    def idle_ids(self) -> list[int]:
        return [i for ids in self._call("idle_ids") for i in ids]

    def stop_load(self) -> None:
        self._call("stop")

    def shutdown(self, grace_s: float) -> tuple[int, int]:
        parts = self._call("shutdown", grace_s, timeout=grace_s + CALL_TIMEOUT_S)
        return sum(h for h, _ in parts), sum(w for _, w in parts)

    def totals(self) -> tuple[PoolTotals, list[GroupHistograms], list[ProcessInfo]]:
        parts: list[PoolTotals] = self._call("totals")
        merged = PoolTotals.merged(parts)
        per_process: list[ProcessInfo] = []
        for index, (part, pid, m) in enumerate(zip(parts, self.pids, self._maxima, strict=True)):
            wait = LatencyHistogram()
            for g in part.groups:
                wait.record_counts(g.wait)
            per_process.append(
                ProcessInfo(
                    index=index,
                    pid=pid,
                    operations=part.operations,
                    ok=part.ok,
                    timeouts=part.errors["timeout"].count,
                    too_many_connections=part.errors["too_many_connections"].count,
                    errors=sum(k.count for k in part.errors.values()),
                    first_timeout_at_s=part.first_timeout_at_s,
                    connects=part.events.connects,
                    max_checked_out=m["checked_out"],
                    max_overflow=m["overflow"],
                    max_waiting=m["waiting"],
                    checkout_wait_p99_ms=wait.percentile_ms(99),
                )
            )
        return merged, merged.group_histograms(), per_process

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (OSError, ValueError):
                pass
        for index, proc in enumerate(self._procs):
            conn = self._conns[index]
            try:
                if conn.poll(10):
                    conn.recv()
            except (EOFError, OSError):
                pass
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
        self._events.close()
        self._events.join_thread()
