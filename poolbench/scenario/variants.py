"""Variants: the same load run several times with different settings, to compare fixes.

A scenario may declare ``variants`` (each a ``set`` of overrides and its own ``expect``);
``--vary pool_pre_ping=false,true --vary pool_recycle=-1,1s`` replaces them with every
combination of the listed values. Every variant is validated before anything runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ScenarioError, UsageError
from .loader import _apply, _format_loc, _message, _parse_override
from .model import Faults, Load, PoolSettings, Scenario, Variant
from .yamlsafe import load_value


@dataclass(frozen=True)
class PlannedRun:
    """One variant, ready to run."""

    label: str
    settings: dict[str, Any]  # the overrides, as written (for the result's ``variant``)
    scenario: Scenario


def _full_key(key: str) -> str:
    """``pool_pre_ping`` -> ``pool.pool_pre_ping``; paths with a dot stay as they are."""
    if "." in key or "[" in key:
        return key
    for section, model in (("pool", PoolSettings), ("load", Load), ("faults", Faults)):
        if key in model.model_fields:
            return f"{section}.{key}"
    if key in Scenario.model_fields:
        return key
    raise UsageError(
        f"--vary {key}: not a setting; use a pool setting (pool_size, pool_pre_ping, ...) "
        "or a full path such as workload[0].session"
    )


def parse_vary(flags: Sequence[str]) -> list[Variant]:
    """Every combination of ``KEY=V1,V2`` flags, as variants named by their settings."""
    axes: list[list[tuple[str, Any]]] = []
    for flag in flags:
        key, sep, values = flag.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UsageError(f"--vary {flag}: expected KEY=V1,V2,... e.g. pool_pre_ping=false,true")
        full = _full_key(key.strip())
        parsed = []
        for text in values.split(","):
            try:
                parsed.append((full, load_value(text.strip())))
            except yaml.YAMLError:
                parsed.append((full, text.strip()))
        axes.append(parsed)
    return [Variant(set=dict(combo)) for combo in itertools.product(*axes)]


def plan(scenario: Scenario, vary: Sequence[str] = ()) -> list[PlannedRun]:
    """The runs to make: one per variant (``--vary`` replaces the scenario's), else one."""
    variants = parse_vary(vary) if vary else list(scenario.variants)
    if not variants:
        return [PlannedRun("", {}, scenario)]
    runs = []
    for index, variant in enumerate(variants):
        source = "--vary" if vary else f"variants[{index}]"
        applied = _apply_variant(scenario, variant, source).changed(*scenario.changed_by)
        if vary:  # variants the user made up, not the file's own
            applied = applied.changed(f"--vary {variant.label}")
        runs.append(PlannedRun(variant.label, dict(variant.set), applied))
    return runs


def _apply_variant(scenario: Scenario, variant: Variant, source: str) -> Scenario:
    # only what was written: an app's pool keeps the settings the scenario does not name
    raw = scenario.model_dump(mode="json", exclude={"variants"}, exclude_unset=True)
    for key, value in variant.set.items():
        path, _ = _parse_override(f"{key}=")
        _apply(raw, path, value, f"{key}={value}")
    raw["expect"] = {**scenario.expect, **variant.expect}
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        where = f"{source} ({variant.label})"
        raise ScenarioError(where, _message(error, loc), path=_format_loc(loc)) from None
