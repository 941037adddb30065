"""Where workers report what happened, and where the sampler gathers it per interval.

Workers call :meth:`Recorder.finished` once per request: one ``deque.append`` of a
small tuple, lock-free and thread-safe, so measuring costs the hot path almost
nothing. The sampler thread drains the deque into histograms (:class:`Aggregator`).
Errors are rarer and richer (code, message); they go to :class:`ErrorLog`.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import repeat, starmap
from typing import Any

from ..result import ERROR_KINDS, ErrorExample, ErrorKindStats
from .histogram import LatencyHistogram, percentile_of_counts

OK = 0
# outcome codes 1.. map to ERROR_KINDS[code - 1]
OUTCOME = {kind: i + 1 for i, kind in enumerate(ERROR_KINDS)}
TIMEOUT = OUTCOME["timeout"]
DISCONNECT = OUTCOME["disconnect"]
INJECTED = 9  # an application error the scenario injected: neither ok nor a database error
MAX_EXAMPLES = 5


class ErrorLog:
    """Counts errors by kind and keeps the first examples of each distinct message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kinds: dict[str, ErrorKindStats] = {k: ErrorKindStats() for k in ERROR_KINDS}
        self._examples: dict[tuple[str, str | None, str], ErrorExample] = {}
        self.first_timeout_at_s: float | None = None
        self.first_timeout_message: str | None = None

    def first_timeout(self, t_s: float, message: str) -> bool:
        """Note a timeout as it happens (the worker calls this); True for the run's first."""
        if self.first_timeout_at_s is not None:
            return False
        with self._lock:
            if self.first_timeout_at_s is not None:
                return False
            self.first_timeout_at_s = round(t_s, 3)
            self.first_timeout_message = message
            return True

    def record(self, kind: str, code: str | None, message: str, t_s: float) -> None:
        """Count one error (the sampler does, as it folds the request's record in)."""
        t_s = round(t_s, 3)
        with self._lock:
            stats = self.kinds[kind]
            stats.count += 1
            if stats.first_at_s is None:
                stats.first_at_s = t_s
            key = (kind, code, message)
            example = self._examples.get(key)
            if example is not None:
                example.count += 1
            elif len(stats.examples) < MAX_EXAMPLES:
                example = ErrorExample(code=code, message=message, count=1, first_at_s=t_s)
                self._examples[key] = example
                stats.examples.append(example)

    def snapshot(self) -> dict[str, ErrorKindStats]:
        with self._lock:
            return {
                kind: ErrorKindStats(
                    count=s.count,
                    first_at_s=s.first_at_s,
                    examples=[ErrorExample(**vars(e)) for e in s.examples],
                )
                for kind, s in self.kinds.items()
            }


class HttpLog:
    """Per group sent over HTTP: the responses by status, the pool's TimeoutErrors among
    them and the HTTP latency as ``{micros: how many}`` (the sampler's thread, at drain)."""

    def __init__(self) -> None:
        self.statuses: dict[int, Counter[str]] = {}
        self.pool_timeouts: Counter[int] = Counter()
        self.latency_us: dict[int, Counter[int]] = {}

    def record(self, group: int, outcome: int, status: str, latency_us: int) -> None:
        self.statuses.setdefault(group, Counter())[status] += 1
        self.latency_us.setdefault(group, Counter())[latency_us] += 1
        if outcome == TIMEOUT:
            self.pool_timeouts[group] += 1


class Recorder:
    """The worker-facing side: thread-safe and cheap."""

    def __init__(self) -> None:
        self._records: deque[tuple[int, int, int, int, bool]] = deque()
        # finished(), as a bound method of the deque: the hot path appends through this
        self.append = self._records.append
        self.errors = ErrorLog()
        self.http = HttpLog()
        self._leak_lock = threading.Lock()
        self.leaks = 0

    def finished(
        self,
        group: int,
        outcome: int,
        wait_us: int,
        hold_us: int,
        leaked: bool = False,
        error: tuple[str, str | None, str, float] | None = None,
        http: tuple[str, int] | None = None,
    ) -> None:
        """One request ended (``outcome`` is OK or an OUTCOME code); a failed one carries
        its ``(kind, code, message, t_s)``, one sent over HTTP its ``(status,
        latency_us)``, both logged when the record is drained, so the error and endpoint
        figures cover exactly the requests the operations do."""
        if http is not None:
            self._records.append((group, outcome, wait_us, hold_us, leaked, error, http))  # type: ignore[arg-type]
        elif error is None:
            self._records.append((group, outcome, wait_us, hold_us, leaked))
        else:
            self._records.append((group, outcome, wait_us, hold_us, leaked, error))  # type: ignore[arg-type]

    def extend(self, records: list[tuple[Any, ...]]) -> None:
        """Records made elsewhere (app/client.py's, in poolbench's process), as if here."""
        self._records.extend(records)

    def note_leak(self) -> int:
        with self._leak_lock:
            self.leaks += 1
            return self.leaks

    def take(self) -> list[tuple[Any, ...]]:
        """Every record so far, oldest first, as recorded (safe while workers keep
        appending: it takes exactly the records present when it starts). In C (make
        bench): every record is popped without a bytecode of ours."""
        return list(starmap(self._records.popleft, repeat((), len(self._records))))

    def drain(self) -> list[tuple[int, int, int, int, bool]]:
        """Every record so far (:meth:`take`), its error and HTTP facts logged: only a
        failed request's record (six fields) or an HTTP one (seven) is looked at."""
        records = self.take()
        if records and max(map(len, records)) > 5:
            record_error = self.errors.record
            for record in records:
                if len(record) > 5:
                    if record[5] is not None:
                        record_error(*record[5])
                    if len(record) > 6:
                        self.http.record(record[0], record[1], *record[6])
        return records


@dataclass
class IntervalStats:
    """What finished in one sampling interval."""

    operations: int = 0
    ok: int = 0
    injected: int = 0
    timeouts: int = 0
    disconnects: int = 0
    errors: int = 0
    checkout_wait_p99_ms: float | None = None

    @classmethod
    def merged(cls, parts: Sequence[IntervalStats]) -> IntervalStats:
        """Several processes' intervals: every count summed. The p99 cannot be merged from
        p99s; it is left None for the caller, who has the waits themselves."""
        return cls(
            **{
                f.name: sum(getattr(p, f.name) for p in parts)
                for f in fields(cls)
                if f.name != "checkout_wait_p99_ms"
            }
        )


class _GroupTotals:
    __slots__ = ("errors", "hold", "leaked", "ok", "operations", "wait")

    def __init__(self) -> None:
        self.operations = self.ok = self.errors = self.leaked = 0
        self.wait = LatencyHistogram()
        self.hold = LatencyHistogram()


class Aggregator:
    """The sampler-side: folds drained records into interval and whole-run figures.

    Values are counted first (``collections.Counter``, in C) and each distinct value is
    recorded once into the histograms: an order of magnitude cheaper than recording every
    request, which keeps the cost of measuring off the requests' interpreter time.
    """

    def __init__(self, group_names: list[tuple[str, str]]) -> None:
        self.names = group_names
        self.groups = [_GroupTotals() for _ in group_names]
        self.operations = 0
        self.ok = 0
        self.injected = 0
        # the last interval's holds, {micros: how many}: the metrics endpoint's use time
        self.interval_hold: Counter[int] = Counter()

    def absorb(
        self, records: list[tuple[int, int, int, int, bool]]
    ) -> tuple[IntervalStats, Counter[int]]:
        """Fold one interval's records in; its stats, and its checkout waits as
        ``{micros: how many}`` (exact, and mergeable across processes by adding)."""
        stats = IntervalStats()
        groups = self.groups
        self.interval_hold = Counter()
        if not records:
            return stats, Counter()
        # five fields (a failed request's sixth is its error, logged at drain); zip without
        # strict= is half the cost of with it
        _, outcome_col, wait_col, hold_col, leaked_col, *_ = zip(*records)  # noqa: B905
        if len(groups) == 1 and outcome_col.count(OK) == len(records):
            # the common case, all in C: one group, every request succeeded
            g = groups[0]
            n = len(records)
            g.operations += n
            g.ok += n
            g.leaked += sum(leaked_col)
            interval = Counter(wait_col)
            g.wait.record_counts(interval)
            self.interval_hold = hold_counts = Counter(hold_col)
            g.hold.record_counts(hold_counts)
            stats.operations = stats.ok = n
            stats.checkout_wait_p99_ms = percentile_of_counts(interval, 99)
            self.operations += n
            self.ok += n
            return stats, interval
        waits: list[list[int]] = [[] for _ in groups]
        holds: list[list[int]] = [[] for _ in groups]
        for group, outcome, wait_us, hold_us, leaked, *_ in records:
            g = groups[group]
            g.operations += 1
            waits[group].append(wait_us)
            if leaked:
                g.leaked += 1
            if outcome == OK:
                g.ok += 1
                stats.ok += 1
                holds[group].append(hold_us)
            elif outcome == INJECTED:
                stats.injected += 1
                holds[group].append(hold_us)
            else:
                g.errors += 1
                stats.errors += 1
                if outcome == TIMEOUT:
                    stats.timeouts += 1
                elif outcome == DISCONNECT:
                    stats.disconnects += 1
                if outcome != TIMEOUT and hold_us:
                    holds[group].append(hold_us)
        interval = Counter()
        for g, group_waits, group_holds in zip(groups, waits, holds, strict=True):
            if group_waits:
                counted = Counter(group_waits)
                g.wait.record_counts(counted)
                interval.update(counted)
            if group_holds:
                counted = Counter(group_holds)
                g.hold.record_counts(counted)
                self.interval_hold.update(counted)
        stats.operations = len(records)
        stats.checkout_wait_p99_ms = percentile_of_counts(interval, 99)
        self.operations += stats.operations
        self.ok += stats.ok
        self.injected += stats.injected
        return stats, interval
