"""poolbench: load-test SQLAlchemy connection pools against a real database.

Use it without the CLI::

    import poolbench
    result = poolbench.run("scenarios/leaky-sessions.yaml", url="postgresql://...")
    print(result.summary.timeouts, result.summary.first_timeout_message)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .db import open_target
from .engine.runner import Observer, RunOptions, run_scenario
from .errors import ExitStatus, PoolbenchError
from .result import RunResult
from .scenario import Scenario, load_scenario

__version__ = "0.1.0"


def run(
    scenario: Scenario | str | Path,
    *,
    url: str | None = None,
    options: RunOptions | None = None,
    observer: Observer | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunResult:
    """Run a scenario (a Scenario or a file) against ``url``, POOLBENCH_URL, the scenario's
    database.url, or else a throwaway embedded PostgreSQL."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    with open_target(
        url, scenario.database.url, environ, needs=scenario.database.requires
    ) as target:
        return run_scenario(scenario, target, options, observer)


__all__ = [
    "ExitStatus",
    "Observer",
    "PoolbenchError",
    "RunOptions",
    "RunResult",
    "Scenario",
    "__version__",
    "load_scenario",
    "run",
]
