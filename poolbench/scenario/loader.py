"""Read a scenario file, apply --set overrides, validate, and explain what is wrong.

Every problem becomes one :class:`ScenarioError` naming the file, the line and the
key path (``scenarios/x.yaml:7: pool.pool_timeout: must be >= 0, got -1``), or
the ``--set`` flag that caused it.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .. import checks
from ..errors import ScenarioError, UsageError
from .model import (
    DatabaseSettings,
    EmbeddedSettings,
    Faults,
    Fleet,
    KeepAlive,
    Kill,
    Load,
    Phase,
    PoolSettings,
    Restart,
    Scenario,
    Variant,
    WorkloadGroup,
)

BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "scenarios"

_SECTIONS: dict[str, type[BaseModel]] = {
    "": Scenario,
    "pool": PoolSettings,
    "workload": WorkloadGroup,
    "load": Load,
    "phases": Phase,
    "database": DatabaseSettings,
    "faults": Faults,
    "kill": Kill,
    "restart": Restart,
    "variants": Variant,
    "keepalive": KeepAlive,
    "fleet": Fleet,
    "embedded": EmbeddedSettings,
}
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def resolve_path(name: str) -> Path:
    """The scenario file for ``name``: a path, or the name of a bundled scenario."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (BUNDLED_DIR / name, BUNDLED_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    hint = ""
    if BUNDLED_DIR.is_dir():
        names = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(path.stem, names, n=1)
        if close:
            hint = f"; did you mean {close[0]}?"
    raise ScenarioError(name, f"no such scenario file{hint}")


def load_scenario(
    name: str | Path,
    overrides: Sequence[str] = (),
    duration: float | None = None,
) -> Scenario:
    """Load, override and validate a scenario file."""
    path = resolve_path(str(name))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(name), f"cannot read: {exc.strerror or exc}") from None
    scenario = parse_scenario(text, str(name), overrides, base_dir=path.parent)
    if duration is not None:
        if duration <= 0:
            raise UsageError(f"--duration must be positive, got {duration:g}s")
        scenario = scenario.with_duration(duration)
    return scenario


def parse_scenario(
    text: str, source: str, overrides: Sequence[str] = (), base_dir: Path | None = None
) -> Scenario:
    """Validate scenario ``text``; ``source`` names it in error messages. Tasks
    (``module:function``) are imported from ``base_dir`` (the scenario's folder) first."""
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(
            source, f"invalid YAML: {problem}", line=mark.line + 1 if mark else None
        ) from None
    if raw is None:
        raise ScenarioError(source, "the file is empty")
    if not isinstance(raw, dict):
        raise ScenarioError(source, "the top level must be a mapping of keys (name:, pool:, ...)")

    overridden: dict[tuple[str | int, ...], str] = {}
    for item in overrides:
        path, value = _parse_override(item)
        _apply(raw, path, value, item)
        overridden[path] = item

    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, source, root, overridden) from None

    sections: list[tuple[tuple[str | int, ...], dict[str, str]]] = [
        (("thresholds",), scenario.thresholds),
        (("expect",), scenario.expect),
    ]
    sections += [(("variants", i, "expect"), v.expect) for i, v in enumerate(scenario.variants)]
    for prefix, conditions in sections:
        for metric, condition in conditions.items():
            try:
                checks.parse_condition(metric, condition)
            except ValueError as exc:
                message = str(exc)
                if metric not in checks.METRICS:
                    close = difflib.get_close_matches(metric, list(checks.METRICS), n=1)
                    message += f"; did you mean {close[0]}?" if close else "; see poolbench metrics"
                loc = (*prefix, metric)
                where = overridden.get(loc)
                raise ScenarioError(
                    f"--set {where}" if where else source,
                    message,
                    path="" if where else _format_loc(loc),
                    line=None if where else _line_of(root, loc, key=metric not in checks.METRICS),
                ) from None
    for index, group in enumerate(scenario.workload):
        if group.task is None:
            continue
        try:
            import_task(group.task, base_dir)
        except (ImportError, AttributeError, TypeError) as exc:
            loc = ("workload", index, "task")
            where = overridden.get(loc)
            raise ScenarioError(
                f"--set {where}" if where else source,
                str(exc),
                path="" if where else _format_loc(loc),
                line=None if where else _line_of(root, loc),
            ) from None
    return scenario


def import_task(spec: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """The callable named ``module:function``; the scenario's folder is searched first."""
    module_name, _, attr = spec.partition(":")
    if base_dir is not None:
        folder = str(Path(base_dir).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself raised while importing
        failure = f"{type(exc).__name__}: {exc}"
        raise ImportError(f"importing {module_name!r} failed: {failure}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise AttributeError(f"{module_name!r} has no {attr!r}")
    if not callable(fn):
        raise TypeError(f"{spec} is not callable")
    return fn


def _parse_override(item: str) -> tuple[tuple[str | int, ...], Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {item}: expected KEY=VALUE, e.g. --set pool.pool_size=20")
    path: list[str | int] = []
    for match in _SEGMENT.finditer(key.strip()):
        name, index = match.groups()
        if index is not None:
            path.append(int(index))
        elif name.isdigit():
            path.append(int(name))
        else:
            path.append(name)
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return tuple(path), parsed


def _apply(raw: dict[str, Any], path: tuple[str | int, ...], value: Any, item: str) -> None:
    node: Any = raw
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(step, int):
            if isinstance(node, dict) and step == 0:
                if last:
                    raise UsageError(f"--set {item}: cannot replace a whole group")
                continue  # a single group written as a mapping is group 0
            if not isinstance(node, list) or step >= len(node):
                raise UsageError(
                    f"--set {item}: there is no item {step} at {_format_loc(path[:i])}"
                )
            if last:
                node[step] = value
            else:
                node = node[step]
            continue
        if not isinstance(node, dict):
            raise UsageError(f"--set {item}: {_format_loc(path[:i])} is not a mapping")
        if last:
            node[step] = value
        else:
            if node.get(step) is None:
                node[step] = {}
            node = node[step]


def _explain(
    exc: ValidationError,
    source: str,
    root: yaml.Node | None,
    overridden: dict[tuple[str | int, ...], str],
) -> ScenarioError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    kind = error["type"]
    message = _message(error, loc)
    more = exc.error_count() - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    for path, item in overridden.items():
        if loc[: len(path)] == path:
            return ScenarioError(f"--set {item}", message)
    line = _line_of(root, loc, key=kind == "extra_forbidden")
    if line is None and kind == "missing":
        line = _line_of(root, loc[:-1], key=True)
    return ScenarioError(source, message, path=_format_loc(loc), line=line)


def _message(error: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _show(error.get("input"))
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(allowed)}"
        return f"unknown key{hint}"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        options = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(str(error.get("input")), options, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"expected one of {expected}, got {got}{hint}"
    if kind == "value_error":
        return str(ctx.get("error") or error["msg"]).removeprefix("Value error, ")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {got}"
    if kind in ("string_type",):
        if isinstance(error.get("input"), bool):
            return f"expected text, got {got} (quote it: YAML reads on/off/yes/no as true/false)"
        return f"expected text, got {got}"
    if kind in ("list_type",):
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of keys, got {got}"
    if kind == "too_short":
        return "must not be empty"
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {_show(limit)}, got {got}"
    return f"{error['msg']}, got {got}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    names = [str(step) for step in loc if not isinstance(step, int)]
    model = _SECTIONS.get(names[-1] if names else "")
    return list(model.model_fields) if model else []


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
    return out


def _line_of(root: yaml.Node | None, loc: Sequence[Any], key: bool = False) -> int | None:
    """1-based line of the value at ``loc`` (or of its key when ``key``); None if absent."""
    node = root
    line = None
    for i, step in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            if isinstance(step, int):
                continue  # a single workload group written as a mapping
            for key_node, value_node in node.value:
                if key_node.value == step:
                    last = i == len(loc) - 1
                    line = (key_node if (key and last) else value_node).start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                return line
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line
