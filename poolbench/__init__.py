"""poolbench: load-test SQLAlchemy connection pools against a real database.

Use it without the CLI::

    import poolbench
    result = poolbench.run("scenarios/leaky-sessions.yaml", url="postgresql://...")
    print(result.summary.timeouts, result.summary.first_timeout_message)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.runner import RunOptions
    from .errors import ExitStatus, PoolbenchError
    from .result import RunResult
    from .result.observer import Observer
    from .scenario import Scenario, load_scenario
    from .scenario.variants import PlannedRun

__version__ = "0.1.0"

# Imported on first use: pytest loads poolbench's plugin (poolbench.pytest_plugin) in every
# test run of a project that has poolbench installed, and must not pay for the engine.
_LAZY = {
    "ExitStatus": ".errors",
    "PoolbenchError": ".errors",
    "Observer": ".result.observer",
    "RunOptions": ".engine.runner",
    "RunResult": ".result",
    "Scenario": ".scenario",
    "load_scenario": ".scenario",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'poolbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def database_for(
    scenario: Scenario, url: str | None = None, environ: Mapping[str, str] | None = None
):
    """The scenario's database as a context manager: ``url``, POOLBENCH_URL, the scenario's
    database.url, or an embedded PostgreSQL (configured as the scenario says) that is
    stopped and removed on exit."""
    from .db import open_target

    if scenario.app is not None:
        from .app import app_target

        return app_target(scenario, url)
    return open_target(
        url,
        scenario.database.url,
        environ,
        needs=scenario.database.requires,
        max_connections=scenario.database.embedded.max_connections,
        driver=scenario.database.driver,
    )


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
    from .engine.runner import run_scenario
    from .scenario import Scenario, load_scenario

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    with database_for(scenario, url, environ) as target:
        return run_scenario(scenario, target, options, observer)


def run_all(
    scenario: Scenario | str | Path,
    *,
    url: str | None = None,
    vary: Sequence[str] = (),
    options: RunOptions | None = None,
    observer: Observer | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[RunResult]:
    """Run every variant of a scenario (its ``variants``, or ``vary`` flags such as
    ``"pool_pre_ping=false,true"``) one after another on the same database."""
    from .scenario import Scenario, load_scenario
    from .scenario.variants import plan

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    planned = plan(scenario, vary)
    with database_for(scenario, url, environ) as target:
        return run_planned(planned, target, options, observer)


def run_planned(
    planned: Sequence[PlannedRun],
    target,
    options: RunOptions | None = None,
    observer: Observer | None = None,
) -> list[RunResult]:
    """Run planned variants in order on ``target``; stops after an interrupted one."""
    from .engine.runner import RunOptions, run_scenario

    results: list[RunResult] = []
    for run in planned:
        opts = replace(options or RunOptions())
        if run.label or len(planned) > 1:
            opts = replace(opts, variant=run.settings, variant_name=run.label)
        try:
            result = run_scenario(run.scenario, target, opts, observer)
        except KeyboardInterrupt:
            if not results:
                raise
            # Ctrl-C between two variants: keep the finished ones, run no more
            results[-1].interrupted = True
            results[-1].notes.append("interrupted before the next variant started")
            break
        results.append(result)
        if result.interrupted:
            break
    return results


__all__ = [
    "ExitStatus",
    "Observer",
    "PoolbenchError",
    "RunOptions",
    "RunResult",
    "Scenario",
    "__version__",
    "database_for",
    "load_scenario",
    "run",
    "run_all",
]
