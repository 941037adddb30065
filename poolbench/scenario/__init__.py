"""Scenario files: the typed model and the loader that validates them."""

from .loader import (
    BUNDLED_DIR,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    resolve_path,
)
from .model import Distribution, Load, Phase, PoolSettings, Scenario, WorkloadGroup

__all__ = [
    "BUNDLED_DIR",
    "Distribution",
    "Load",
    "Phase",
    "PoolSettings",
    "Scenario",
    "WorkloadGroup",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
    "resolve_path",
]
