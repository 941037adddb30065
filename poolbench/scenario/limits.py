"""Limits a valid scenario must also fit: the threads this machine lets poolbench start.

A closed loop runs one thread per worker and an open loop one per concurrent request
(``max_concurrency``), in each fleet process. ``workers: 100000`` is a valid number
but not a runnable one: the thread that cannot start ends the run half-way. The bound
is half the smallest of what the kernel allows this user (``ulimit -u``,
``kernel.threads-max``, ``kernel.pid_max``), leaving the other half to the rest of
the machine; a scenario beyond it is refused before anything runs.
"""

from __future__ import annotations

import math
import resource
from pathlib import Path

from .model import Scenario

_KERNEL_FILES = ("/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max")
FALLBACK_THREADS = 4096  # where the kernel does not say (not Linux)


def machine_threads() -> int:
    """Threads the kernel lets this user run at once: the smallest of RLIMIT_NPROC and
    the kernel's threads-max and pid_max."""
    limits = []
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY and soft > 0:
        limits.append(soft)
    for name in _KERNEL_FILES:
        try:
            limits.append(int(Path(name).read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return min(limits) if limits else FALLBACK_THREADS


def max_threads() -> int:
    """The most load threads one process of a run may start (half the machine's)."""
    return max(1, machine_threads() // 2)


def threads_needed(scenario: Scenario) -> tuple[int, tuple[str | int, ...]]:
    """The most load threads any process of ``scenario`` starts, and the key that asks."""
    processes = scenario.fleet.processes
    load = scenario.load
    asked: list[tuple[int, tuple[str | int, ...]]] = []
    if load.open_loop:
        name = "max_concurrency" if load.max_concurrency is not None else "rate"
        asked.append((load.concurrency, ("load", name)))
    else:
        asked.append((load.workers or 0, ("load", "workers")))
        for index, phase in enumerate(scenario.phases):
            if phase.workers is not None:
                asked.append((phase.workers, ("phases", index, "workers")))
    count, loc = max(asked, key=lambda item: item[0])
    return math.ceil(count / processes), loc
