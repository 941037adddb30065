"""Ctrl-C (and SIGTERM) as a user means them, during a run and after it.

The rule (README, "Ctrl-C"; exit statuses in docs/ci.md):

- before the measurement, or during it, the first Ctrl-C raises KeyboardInterrupt: start-up
  stops, or the measurement ends and what was measured is kept;
- after the measurement (the grace period, releasing leaked sessions, the report and the
  files), a Ctrl-C raises nothing: it makes every remaining wait end at once
  (:func:`hurried`), and the summary and every requested file are still written;
- the third Ctrl-C raises KeyboardInterrupt wherever the run is: it aborts.

The handler is installed by :func:`handling` (the CLI does, in the main thread); without
it, Python's own KeyboardInterrupt applies and nothing here changes behaviour.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

ABORT_AFTER = 3  # the Ctrl-C that aborts whatever is going on


class Interrupts:
    """How many times the user asked to stop, and whether the measurement has ended."""

    def __init__(self) -> None:
        self.count = 0
        self.measurement_over = False
        self.hurry = threading.Event()

    def signalled(self) -> None:
        self.count += 1
        if self.count >= ABORT_AFTER or not self.measurement_over:
            raise KeyboardInterrupt
        self.hurry.set()

    def measuring(self) -> None:
        """A measurement starts: the next Ctrl-C ends it."""
        self.measurement_over = False

    def finishing(self) -> None:
        """The measurement is over: a Ctrl-C now only skips the waiting."""
        self.measurement_over = True
        if self.count:
            self.hurry.set()

    @property
    def interrupted(self) -> bool:
        return self.count > 0


_current = Interrupts()


def current() -> Interrupts:
    return _current


def hurried() -> bool:
    """Whether the user asked to skip the waiting (a Ctrl-C after the measurement)."""
    return _current.hurry.is_set()


def join_all(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Join ``threads`` for up to ``timeout`` seconds in all, or until :func:`hurried`."""
    deadline = perf_counter() + timeout
    for thread in threads:
        while thread.is_alive() and not hurried():
            left = deadline - perf_counter()
            if left <= 0:
                return
            thread.join(min(left, 0.05))


@contextmanager
def handling() -> Iterator[Interrupts]:
    """Install the rule for SIGINT and SIGTERM (main thread only) with a fresh count."""
    global _current
    _current = Interrupts()

    def handler(signum: int, frame: Any) -> None:
        _current.signalled()

    # SIGINT ignored at start (``nohup``, a background job of a script) stays ignored
    signals = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    try:
        previous = {sig: signal.signal(sig, handler) for sig in signals}
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield _current
        return
    try:
        yield _current
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = ["Interrupts", "current", "handling", "hurried", "join_all"]
