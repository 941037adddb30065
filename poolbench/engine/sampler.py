"""The timeline: one :class:`Sample` per interval, from the pool side(s) and the server.

Where is the timeline sampled? Here. At each tick the runner reads the pool side (or
every process of a fleet, merged), asks the server through :class:`ServerWatch` — in a
thread of its own, so a slow or restarting server never delays the pool's readings — and
:class:`Timeline` turns both into a Sample and keeps the maxima and running totals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..db.server import ServerProbe, ServerView
from ..result import PoolEvents, Progress, Sample
from .readings import PoolReading

SERVER_WAIT_S = 0.25  # how long a sample waits at most for the server's fresh count


class ServerWatch:
    """Asks the server for this run's connections when a sample asks, in its own thread."""

    def __init__(self, probe: ServerProbe, server_ids: Callable[[], Iterable[int]]) -> None:
        self._probe = probe
        self._server_ids = server_ids
        self._cond = threading.Condition()
        self._asked = 0  # requests made
        self._answered = 0  # the request the latest view was started for
        self._closed = False
        self.latest: ServerView | None = None
        self._thread = threading.Thread(target=self._run, name="poolbench-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def refresh(self, wait: float = SERVER_WAIT_S) -> tuple[ServerView | None, bool]:
        """The freshest count available within ``wait`` seconds, and whether it was taken
        for this request (rather than left over from an earlier one, still running when
        this one was made: a hung server)."""
        with self._cond:
            self._asked += 1
            asked = self._asked
            self._cond.notify_all()
            fresh = self._cond.wait_for(lambda: self._answered >= asked, wait)
            return self.latest, fresh

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._asked <= self._answered:
                    self._cond.wait()
                if self._closed:
                    return
                asking = self._asked
            view = self._probe.try_view(self._server_ids())
            with self._cond:
                self.latest = view
                self._answered = asking
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)


@dataclass
class Maxima:
    checked_out: int = 0
    overflow: int = 0
    waiting: int = 0
    open: int = 0  # connections open at once
    server: int | None = None
    stale: int | None = None


class Timeline:
    """Samples, maxima and the running totals the live view shows."""

    def __init__(self, duration_s: float) -> None:
        self._duration_s = duration_s
        self._last_events: PoolEvents | None = None
        self._recent: list[tuple[float, int]] = [(0.0, 0)]
        self.samples: list[Sample] = []
        self.maxima = Maxima()
        self.operations = 0
        self.ok = 0
        self.timeouts = 0
        self.errors = 0

    def add(
        self,
        t_s: float,
        phase: str,
        reading: PoolReading,
        wait_p99_ms: float | None,
        server: ServerView | None,
        stale: int | None,
    ) -> Sample:
        events = reading.events
        last = self._last_events
        sample = Sample(
            t_s=round(t_s, 3),
            phase=phase,
            checked_out=reading.checked_out,
            checked_in=reading.checked_in,
            overflow=reading.overflow,
            waiting=reading.waiting,
            operations=reading.stats.operations,
            ok=reading.stats.ok,
            timeouts=reading.stats.timeouts,
            errors=reading.stats.errors,
            checkout_wait_p99_ms=wait_p99_ms,
            connects=events.connects - (last.connects if last else 0),
            invalidations=events.invalidations - (last.invalidations if last else 0),
            gc_returned=events.gc_returned - (last.gc_returned if last else 0),
            leaked_open=reading.leaked_open,
            server_connections=dict(server.counts) if server is not None else None,
            stale=stale,
            disconnects=reading.stats.disconnects,
            recycles=events.recycles - (last.recycles if last else 0),
            pre_ping_recoveries=events.pre_ping_recoveries
            - (last.pre_ping_recoveries if last else 0),
            soft_invalidations=events.soft_invalidations - (last.soft_invalidations if last else 0),
            pool_status=reading.status or None,
            peak_checked_out=reading.peak_checked_out,
            peak_waiting=reading.peak_waiting,
            peak_overflow=reading.peak_overflow,
        )
        self._last_events = events
        self.samples.append(sample)
        self.operations += sample.operations
        self.ok += sample.ok
        self.timeouts += sample.timeouts
        self.errors += sample.errors
        m = self.maxima
        # the exact peaks, not the instants: a burst between two samples counts
        m.checked_out = max(m.checked_out, sample.peak("checked_out"))
        m.overflow = max(m.overflow, sample.peak("overflow"))
        m.waiting = max(m.waiting, sample.peak("waiting"))
        m.open = max(m.open, reading.peak_open)
        if server is not None:
            m.server = max(m.server or 0, server.counts.get("total", 0))
        if stale is not None:
            m.stale = max(m.stale or 0, stale)
        return sample

    def progress(
        self,
        t_s: float,
        phase: str,
        reading: PoolReading,
        first_timeout: tuple[float | None, str | None],
    ) -> Progress:
        # throughput over the last few seconds, so the view shows a collapse as it happens
        self._recent.append((t_s, self.operations))
        while len(self._recent) > 2 and t_s - self._recent[1][0] >= 5.0:
            self._recent.pop(0)
        t_then, ops_then = self._recent[0]
        span = t_s - t_then
        return Progress(
            elapsed_s=t_s,
            duration_s=self._duration_s,
            phase=phase,
            operations=self.operations,
            ok=self.ok,
            timeouts=self.timeouts,
            errors=self.errors,
            leaked=reading.leaked,
            leaked_open=reading.leaked_open,
            throughput_ops_s=(self.operations - ops_then) / span if span > 0 else 0.0,
            first_timeout_at_s=first_timeout[0],
            first_timeout_message=first_timeout[1],
        )
