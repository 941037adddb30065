"""The timeline: one sample per interval, and the ways every renderer reads it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .codec import Record

# The order a reader scans the server's connection states in: what is working, what is
# stuck holding a transaction open, what is idle. Any other state follows alphabetically.
SERVER_STATE_ORDER = ("active", "idle in transaction", "idle")


def server_state_order(states: Iterable[str]) -> list[str]:
    """``states`` without repeats, in :data:`SERVER_STATE_ORDER` then alphabetically."""
    seen = set(states)
    known = [s for s in SERVER_STATE_ORDER if s in seen]
    return known + sorted(seen.difference(SERVER_STATE_ORDER))


@dataclass
class Sample(Record):
    """The pool, the load and the server at one instant (counters cover the interval before it)."""

    OMIT_NONE = frozenset({"checkout_wait_p50_ms", "wait_counts"})

    t_s: float
    phase: str
    checked_out: int
    checked_in: int
    overflow: int
    waiting: int
    operations: int
    ok: int
    timeouts: int
    errors: int
    checkout_wait_p99_ms: float | None
    connects: int
    invalidations: int
    gc_returned: int
    leaked_open: int
    server_connections: dict[str, int] | None
    stale: int | None = None
    disconnects: int | None = None  # None: not measured (results before faults existed)
    recycles: int = 0  # connections replaced for age (pool_recycle) in the interval
    pre_ping_recoveries: int = 0  # checkouts whose ping failed and were reconnected
    soft_invalidations: int = 0
    pool_status: str | None = None
    # no sampler writes it yet; the HTML chart draws it beside p99 when a result has it
    checkout_wait_p50_ms: float | None = None
    # a node's interval checkout waits {micros: how many}, so a merge's p99 is exact
    wait_counts: dict[int, int] | None = None
    # the interval's exact highest values, kept at every pool event (a burst between two
    # samples shows here, not in the instant values); None in results written before
    peak_checked_out: int | None = None
    peak_waiting: int | None = None
    peak_overflow: int | None = None

    def peak(self, gauge: str) -> int:
        """The interval's highest ``gauge`` (checked_out, waiting, overflow): the exact
        peak when the result has it, else the instant value."""
        instant = getattr(self, gauge) or 0
        peak = getattr(self, f"peak_{gauge}")
        return instant if peak is None else max(peak, instant)


@dataclass
class TimelineRow:
    """One or more consecutive samples folded together: gauges at their maximum,
    counters summed, so a long run still fits on a screen without hiding a spike."""

    t_s: float
    checked_out: int
    checked_in: int
    overflow: int
    waiting: int
    operations: int
    timeouts: int
    errors: int
    checkout_wait_p99_ms: float | None
    connects: int
    invalidations: int
    gc_returned: int
    stale: int | None
    recycles: int
    pre_ping_recoveries: int
    server_connections: dict[str, int] | None
    samples: int
    peak_checked_out: int = 0  # the rows' exact peaks (instant values when not measured)
    peak_waiting: int = 0
    peak_overflow: int = 0


def fold(timeline: Sequence[Sample], max_rows: int) -> list[TimelineRow]:
    """``timeline`` in at most ``max_rows`` rows of equally many consecutive samples."""
    if not timeline:
        return []
    size = -(-len(timeline) // max_rows)
    rows = []
    for start in range(0, len(timeline), size):
        chunk = timeline[start : start + size]
        p99s = [s.checkout_wait_p99_ms for s in chunk if s.checkout_wait_p99_ms is not None]
        servers = [s.server_connections for s in chunk if s.server_connections is not None]
        rows.append(
            TimelineRow(
                t_s=chunk[-1].t_s,
                checked_out=max(s.checked_out for s in chunk),
                checked_in=max(s.checked_in for s in chunk),
                overflow=max(s.overflow for s in chunk),
                waiting=max(s.waiting for s in chunk),
                operations=sum(s.operations for s in chunk),
                timeouts=sum(s.timeouts for s in chunk),
                errors=sum(s.errors for s in chunk),
                checkout_wait_p99_ms=max(p99s) if p99s else None,
                connects=sum(s.connects for s in chunk),
                invalidations=sum(s.invalidations for s in chunk),
                gc_returned=sum(s.gc_returned for s in chunk),
                stale=max((s.stale for s in chunk if s.stale is not None), default=None),
                recycles=sum(s.recycles or 0 for s in chunk),
                pre_ping_recoveries=sum(s.pre_ping_recoveries or 0 for s in chunk),
                server_connections=max(servers, key=lambda c: c.get("total", 0))
                if servers
                else None,
                samples=len(chunk),
                peak_checked_out=max(s.peak("checked_out") for s in chunk),
                peak_waiting=max(s.peak("waiting") for s in chunk),
                peak_overflow=max(s.peak("overflow") for s in chunk),
            )
        )
    return rows
