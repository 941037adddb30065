"""Latency histograms: constant memory whatever the run's length, mergeable exactly."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from ..result import Percentiles

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000  # one hour
_DIGITS = 3  # values within 0.1 %


class LatencyHistogram:
    """Microsecond latencies from 1 µs to 1 h, reported in milliseconds."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)

    def record(self, micros: int) -> None:
        self._h.record_value(min(max(micros, _LOWEST_US), _HIGHEST_US))

    @property
    def count(self) -> int:
        return self._h.get_total_count()

    def add(self, other: LatencyHistogram) -> None:
        if other.count:
            self._h.add(other._h)

    def reset(self) -> None:
        if self.count:
            self._h.reset()

    def percentile_ms(self, percentile: float) -> float | None:
        if not self.count:
            return None
        return self._h.get_value_at_percentile(percentile) / 1000.0

    def percentiles(self) -> Percentiles:
        if not self.count:
            return Percentiles()
        h = self._h
        return Percentiles(
            count=self.count,
            mean=round(h.get_mean_value() / 1000.0, 3),
            p50=h.get_value_at_percentile(50) / 1000.0,
            p90=h.get_value_at_percentile(90) / 1000.0,
            p99=h.get_value_at_percentile(99) / 1000.0,
            max=h.get_max_value() / 1000.0,
        )

    def fraction_above(self, micros: int) -> float | None:
        """The share of recorded values above ``micros`` (None when empty)."""
        total = self.count
        if not total:
            return None
        at_or_below = 0
        for item in self._h.get_recorded_iterator():
            if item.value_iterated_to > micros:
                break
            at_or_below += item.count_at_value_iterated_to
        return (total - at_or_below) / total

    def encode(self) -> str:
        """A compact text form (HdrHistogram's base64 encoding), for other processes."""
        return self._h.encode().decode("ascii") if self.count else ""

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        hist = cls()
        if text:
            hist._h.add(HdrHistogram.decode(text.encode("ascii")))
        return hist
