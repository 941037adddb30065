"""Latency histograms: constant memory whatever the run's length, mergeable exactly.

A histogram is a count per microsecond value (``collections.Counter``). Whole intervals
of values are added at once, which Counter does in C: recording costs the requests'
interpreter almost nothing. When a histogram holds more than ``MAX_KEYS`` distinct values
its keys are rounded to 3 significant digits, the precision of an HDR histogram with 3
digits (values below 1 ms stay exact), so memory stays bounded on runs of any length.

(We measured hdrhistogram's pure-Python ``record_value`` at ~15 000 instructions per
distinct value under callgrind; this keeps the sampler's cost a small fraction of a
request's, which is what make bench checks.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from ..result import Percentiles

MAX_KEYS = 20_000
EXACT_BELOW_US = 1_000  # sub-millisecond values are kept to the microsecond


def _round3(micros: int) -> int:
    """``micros`` to 3 significant digits (exact below EXACT_BELOW_US)."""
    if micros < EXACT_BELOW_US:
        return micros
    scale = 10 ** (len(str(micros)) - 3)
    return (micros + scale // 2) // scale * scale


class LatencyHistogram:
    """Microsecond latencies, reported in milliseconds."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()

    def record(self, micros: int) -> None:
        self.record_many((micros,))

    def record_many(self, values: Iterable[int]) -> None:
        """Add many values (microseconds) at once; Counter counts them in C."""
        self._counts.update(values)
        if len(self._counts) > MAX_KEYS:
            self._compact()

    def record_counts(self, counts: Mapping[int, int]) -> None:
        """Add ``{micros: how many}``."""
        self._counts.update(counts)
        if len(self._counts) > MAX_KEYS:
            self._compact()

    def _compact(self) -> None:
        rounded: Counter[int] = Counter()
        for micros, count in self._counts.items():
            rounded[_round3(max(micros, 0))] += count
        self._counts = rounded

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    def add(self, other: LatencyHistogram) -> None:
        if other._counts:
            self.record_counts(other._counts)

    def percentile_ms(self, percentile: float) -> float | None:
        return percentile_of_counts(self._counts, percentile)

    def fraction_above(self, micros: int) -> float | None:
        """The share of recorded values above ``micros`` (None when empty)."""
        total = self.count
        if not total:
            return None
        above = sum(count for value, count in self._counts.items() if value > micros)
        return above / total

    def percentiles(self) -> Percentiles:
        total = self.count
        if not total:
            return Percentiles()
        counts = self._counts
        values = sorted(counts)
        targets: dict[int, int] = {}
        ranks = {p: max(1, -(-total * p // 100)) for p in (50, 90, 99)}
        seen = 0
        for value in values:
            seen += counts[value]
            for p, rank in ranks.items():
                if p not in targets and seen >= rank:
                    targets[p] = value
        mean = sum(value * count for value, count in counts.items()) / total
        return Percentiles(
            count=total,
            mean=round(mean / 1000.0, 3),
            p50=targets[50] / 1000.0,
            p90=targets[90] / 1000.0,
            p99=targets[99] / 1000.0,
            max=values[-1] / 1000.0,
        )

    def to_counts(self) -> dict[int, int]:
        """The histogram as plain data, to send to another process (record_counts adds it)."""
        return dict(self._counts)


def percentile_of_counts(counts: Mapping[int, int], percentile: float) -> float | None:
    """The ``percentile`` (0-100) of ``{micros: how many}``, in milliseconds; exact."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, -(-total * percentile // 100))  # the ceil(n * p / 100)-th smallest value
    seen = 0
    for micros in sorted(counts):
        seen += counts[micros]
        if seen >= rank:
            return micros / 1000.0
    return max(counts) / 1000.0
