"""The timeline: one :class:`Sample` per interval, from the pool, the workers and the server.

Where is the timeline sampled? Here. The runner calls :meth:`Sampler.sample` at each
tick from its own thread; the server's count comes from :class:`ServerWatch`, which
asks the server in a thread of its own so a slow or restarting server never delays
the pool's readings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..db.server import ServerProbe, ServerView
from ..metrics.recorder import Aggregator, Recorder
from ..result import Progress, Sample
from .pool import PoolWatch

SERVER_WAIT_S = 0.05  # how long a sample waits for the server's fresh count


class ServerWatch:
    """Asks the server for this run's connections when a sample asks, in its own thread."""

    def __init__(self, probe: ServerProbe, server_ids: Callable[[], Iterable[int]]) -> None:
        self._probe = probe
        self._server_ids = server_ids
        self._request = threading.Event()
        self._done = threading.Event()
        self._closed = False
        self.latest: ServerView | None = None
        self._thread = threading.Thread(target=self._run, name="poolbench-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def refresh(self, wait: float = SERVER_WAIT_S) -> tuple[ServerView | None, bool]:
        """The freshest count available within ``wait`` seconds, and whether it was taken
        now (rather than left over from an earlier sample)."""
        self._done.clear()
        self._request.set()
        fresh = self._done.wait(wait)
        return self.latest, fresh

    def _run(self) -> None:
        while True:
            self._request.wait()
            self._request.clear()
            if self._closed:
                return
            self.latest = self._probe.try_view(self._server_ids())
            self._done.set()

    def close(self) -> None:
        self._closed = True
        self._request.set()
        if self._thread.is_alive():
            self._thread.join(5)


@dataclass
class _Maxima:
    checked_out: int = 0
    overflow: int = 0
    waiting: int = 0
    server: int | None = None
    stale: int | None = None


class Sampler:
    """Builds the timeline and the running totals the live view shows."""

    def __init__(
        self,
        watch: PoolWatch,
        recorder: Recorder,
        aggregator: Aggregator,
        waiting: Callable[[], int],
        leaked_open: Callable[[], int],
        server: ServerWatch | None,
        duration_s: float,
        verbose: bool,
        hooks: list[Callable[[], None]] | None = None,
    ) -> None:
        self._watch = watch
        self._recorder = recorder
        self._aggregator = aggregator
        self._waiting = waiting
        self._leaked_open = leaked_open
        self._server = server
        self._duration_s = duration_s
        self._verbose = verbose
        self._hooks = hooks or []
        self._last_events = watch.events()
        self._recent: list[tuple[float, int]] = [(0.0, 0)]
        self.timeline: list[Sample] = []
        self.maxima = _Maxima()

    def sample(self, t_s: float, phase: str) -> tuple[Sample, Progress]:
        for hook in self._hooks:
            hook()
        state = self._watch.state(with_status=self._verbose)
        waiting = self._waiting()
        stats = self._aggregator.absorb(self._recorder.drain())
        events = self._watch.events()
        open_before = self._watch.open_server_ids()
        server, fresh = self._server.refresh() if self._server is not None else (None, False)
        stale = None
        if server is not None and fresh:
            # connections the pool holds that the server no longer has (closed by an idle
            # timeout, a kill or a restart, and not yet noticed). Only those open both
            # before and after the server was asked: one opened or closed meanwhile is not.
            open_ids = open_before & self._watch.open_server_ids()
            stale = len(open_ids - server.ids)
        sample = Sample(
            t_s=round(t_s, 3),
            phase=phase,
            checked_out=state.checked_out,
            checked_in=state.checked_in,
            overflow=state.overflow,
            waiting=waiting,
            operations=stats.operations,
            ok=stats.ok,
            timeouts=stats.timeouts,
            errors=stats.errors,
            checkout_wait_p99_ms=stats.checkout_wait_p99_ms,
            connects=events.connects - self._last_events.connects,
            invalidations=events.invalidations - self._last_events.invalidations,
            gc_returned=events.gc_returned - self._last_events.gc_returned,
            leaked_open=self._leaked_open(),
            server_connections=dict(server.counts) if server is not None else None,
            stale=stale,
            disconnects=stats.disconnects,
            pool_status=state.status or None,
        )
        self._last_events = events
        self.timeline.append(sample)
        m = self.maxima
        m.checked_out = max(m.checked_out, sample.checked_out)
        m.overflow = max(m.overflow, sample.overflow)
        m.waiting = max(m.waiting, sample.waiting)
        if server is not None:
            m.server = max(m.server or 0, server.counts.get("total", 0))
        if stale is not None:
            m.stale = max(m.stale or 0, stale)
        return sample, self._progress(t_s, phase)

    def _progress(self, t_s: float, phase: str) -> Progress:
        agg = self._aggregator
        errors = self._recorder.errors
        # throughput over the last few seconds, so the view shows a collapse as it happens
        self._recent.append((t_s, agg.operations))
        while len(self._recent) > 2 and t_s - self._recent[1][0] >= 5.0:
            self._recent.pop(0)
        t_then, ops_then = self._recent[0]
        span = t_s - t_then
        kinds = errors.kinds
        return Progress(
            elapsed_s=t_s,
            duration_s=self._duration_s,
            phase=phase,
            operations=agg.operations,
            ok=agg.ok,
            timeouts=kinds["timeout"].count,
            errors=sum(k.count for k in kinds.values()),
            leaked=self._recorder.leaks,
            leaked_open=self._leaked_open(),
            throughput_ops_s=(agg.operations - ops_then) / span if span > 0 else 0.0,
            first_timeout_at_s=errors.first_timeout_at_s,
            first_timeout_message=errors.first_timeout_message,
        )
