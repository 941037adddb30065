"""What a run tells while it runs: the protocol the live view and the progress lines follow."""

from __future__ import annotations

from .run import FaultEvent, Progress, RunHeader
from .timeline import Sample


class Observer:
    """Receives a run's progress; the live view and the plain progress lines implement it.

    Methods are called from the runner's thread, except :meth:`first_timeout` and
    :meth:`fault`, which are called the moment they happen, from other threads.
    """

    def started(self, header: RunHeader) -> None:
        pass

    def read(self, reading: object) -> None:
        """The pool side's raw reading (engine/readings.py PoolReading) behind the next
        sample; the metrics endpoint's histograms are built from it."""

    def sampled(self, sample: Sample, progress: Progress) -> None:
        pass

    def first_timeout(self, t_s: float, message: str) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass

    def fault(self, event: FaultEvent) -> None:
        """A kill or restart happened."""

    def finished(self) -> None:
        pass
