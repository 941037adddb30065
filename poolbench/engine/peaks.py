"""Exact high-water marks of the pool's gauges, kept at every pool event.

A timeline sample is an instant: a burst that lives between two samples (12 callers
holding a connection for 300 ms, then thinking for 20 s) never shows in one. So each
gauge keeps its peak as it changes — a counter updated where the change happens (a
checkout, a connect, a caller entering or leaving checkout), never a list of values —
and every reading takes the peak since the last reading and starts the next interval
from the value the gauge has then. The run's peak is the largest interval peak.
"""

from __future__ import annotations

import threading


class Peak:
    """One gauge's value now and its highest value since the last :meth:`take`.

    Either the gauge is counted here (:meth:`up` / :meth:`down`: callers waiting) or
    it is read where it changes and handed in (:meth:`note`: the pool's checked-out
    count at a checkout). Safe from any thread; the common case (no new peak) takes no
    lock in :meth:`note`.
    """

    __slots__ = ("_lock", "now", "peak")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def up(self) -> None:
        with self._lock:
            now = self.now = self.now + 1
            if now > self.peak:
                self.peak = now

    def down(self) -> None:
        with self._lock:
            self.now -= 1

    def note(self, value: int) -> None:
        """A value the gauge had at an event (read by the caller)."""
        if value > self.peak:
            with self._lock:
                if value > self.peak:
                    self.peak = value

    def take(self, current: int | None = None) -> int:
        """The peak since the last take; the next interval starts from ``current`` (the
        gauge's value read now), or from the counted value."""
        with self._lock:
            if current is not None:
                self.now = current
            # no call between reading and resetting: under the GIL a counter updated
            # inline elsewhere (RequestExecutor.run) cannot change in between
            now = self.now
            peak = self.peak
            self.peak = now
        return peak if peak > now else now

    def reset(self, current: int | None = None) -> None:
        """Forget what came before (the prefill): the peak is the value now."""
        self.take(current)
