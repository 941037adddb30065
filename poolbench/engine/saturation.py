"""Whether poolbench itself was the bottleneck: the load generator's CPU, and how much
longer holds took than the scenario asked for.

A hold in Python is an ``Event.wait``: when the process is short of CPU (1 000 threads on
2 cores, under one GIL), waking up takes longer than the hold, every request holds its
connection longer, and the pool's figures describe the client rather than the pool. The
configured hold is known, so the inflation is measured, not guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..result import ClientLoad, GroupSummary
from ..scenario.model import Scenario, WorkloadGroup

# a hold at least this long is compared (shorter ones are dominated by the query itself)
MIN_HOLD_S = 0.001
INFLATED = 1.5  # holds at the median took this many times what was asked, or more
BUSY_CORES = 0.8  # the process used this much of a core, or more (one GIL: one core)


def expected_median_s(group: WorkloadGroup) -> float | None:
    """The median hold the group asks for, when poolbench spends it in Python itself."""
    if group.task is not None or group.hold_in != "python":
        return None
    hold = group.hold
    median = hold.mean * math.log(2) if hold.kind == "exponential" else hold.mean
    return median if median >= MIN_HOLD_S else None


def client_load(
    scenario: Scenario, groups: Sequence[GroupSummary], cpu_s: float | None, elapsed_s: float
) -> ClientLoad:
    """The load generator's CPU (cores, this process) and the worst hold inflation."""
    cores = round(cpu_s / elapsed_s, 3) if cpu_s is not None and elapsed_s > 0 else None
    inflation = None
    for group, measured in zip(scenario.workload, groups, strict=False):
        asked = expected_median_s(group)
        if asked is None or measured.hold_ms.p50 is None:
            continue
        ratio = measured.hold_ms.p50 / 1000 / asked
        inflation = ratio if inflation is None else max(inflation, ratio)
    saturated = (
        cores is not None
        and inflation is not None
        and cores >= BUSY_CORES
        and inflation >= INFLATED
    )
    return ClientLoad(
        cpu_cores=cores,
        hold_inflation=None if inflation is None else round(inflation, 3),
        saturated=saturated,
    )
