"""This host's clock against the database server's: the offset, and sleeping until an instant.

Nodes agree on an instant of the server's clock; each one turns it into its own clock
with the offset it measured (the round trip with the smallest delay wins, as NTP
does), so clock skew between hosts does not move the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

ROUND_TRIPS = 7


@dataclass(frozen=True)
class ClockOffset:
    """server clock - local clock, in seconds, measured over a round trip of ``rtt_s``."""

    offset_s: float
    rtt_s: float

    def local(self, server_epoch: float) -> float:
        """The local wall-clock (time.time) instant of ``server_epoch``."""
        return server_epoch - self.offset_s

    def server_now(self, wall: Callable[[], float] = time.time) -> float:
        """The server's clock now, as estimated here."""
        return wall() + self.offset_s


def measure_offset(
    server_now: Callable[[], float],
    round_trips: int = ROUND_TRIPS,
    wall: Callable[[], float] = time.time,
) -> ClockOffset:
    """The offset from the round trip with the smallest delay (its midpoint is the best
    estimate of when the server read its clock)."""
    best: ClockOffset | None = None
    for _ in range(round_trips):
        sent = wall()
        server = server_now()
        received = wall()
        rtt = received - sent
        candidate = ClockOffset(server - (sent + received) / 2, rtt)
        if best is None or candidate.rtt_s < best.rtt_s:
            best = candidate
    assert best is not None
    return best


def sleep_until(
    local_epoch: float,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    spin_s: float = 0.002,
) -> float:
    """Sleep until ``wall()`` reaches ``local_epoch``; how late we woke, in seconds (>= 0).

    The last ``spin_s`` is spent in short sleeps so a coarse timer does not overshoot.
    """
    while True:
        left = local_epoch - wall()
        if left <= 0:
            return -left
        sleep(left - spin_s if left > 2 * spin_s else min(left, 0.0005))
