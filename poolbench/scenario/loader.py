"""Read a scenario file, apply --set overrides, validate, and explain what is wrong.

Every problem becomes one :class:`ScenarioError` naming the file, the line and the
key path (``scenarios/x.yaml:7: pool.pool_timeout: must be >= 0, got -1``), or
the ``--set`` flag that caused it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.resources
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .. import checks
from ..errors import ScenarioError, UsageError
from .limits import max_threads, threads_needed
from .model import (
    AppSettings,
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
from .yamlsafe import compose_and_load, load_value


def _bundled_dir() -> Path:
    """Where the bundled scenarios are: package data (``poolbench/scenarios``), so a wheel
    finds them as a checkout does (there it is a link to the top-level ``scenarios/``)."""
    return Path(str(importlib.resources.files("poolbench") / "scenarios")).resolve()


BUNDLED_DIR = _bundled_dir()

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
    "app": AppSettings,
}
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


FOLDER_SCENARIO = "scenario.yaml"  # a scenario that is a folder: its file, beside its code


def bundled_scenarios() -> dict[str, Path]:
    """Every bundled scenario by name: ``NAME.yaml``, or a folder ``NAME/`` holding
    ``scenario.yaml`` and the code it runs (an app)."""
    if not BUNDLED_DIR.is_dir():
        return {}
    found = {p.stem: p for p in BUNDLED_DIR.glob("*.yaml")}
    found.update({p.parent.name: p for p in BUNDLED_DIR.glob(f"*/{FOLDER_SCENARIO}")})
    return dict(sorted(found.items()))


def resolve_path(name: str) -> Path:
    """The scenario file for ``name``: a path (a folder means its ``scenario.yaml``), or
    the name of a bundled scenario."""
    path = Path(name)
    if path.is_dir() and (path / FOLDER_SCENARIO).is_file():
        return path / FOLDER_SCENARIO
    if path.exists():
        return path
    bundled = bundled_scenarios()
    found = bundled.get(name) or bundled.get(name.removesuffix(".yaml"))
    if found is not None:
        return found
    hint = ""
    if bundled:
        names = list(bundled)
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
    if path.name == FOLDER_SCENARIO and Path(name).is_dir():
        name = path  # errors name the file in the folder, with its line
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(name), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ScenarioError(
            str(name), f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})", line=line
        ) from None
    scenario = parse_scenario(text, str(name), overrides, base_dir=path.parent)
    if overrides:
        scenario = scenario.changed(*(f"--set {item}" for item in overrides))
    if duration is not None:
        if duration <= 0:
            raise UsageError(f"--duration must be positive, got {duration:g}s")
        scenario = scenario.with_duration(duration).changed(f"--duration {duration:g}s")
    return scenario


def parse_scenario(
    text: str, source: str, overrides: Sequence[str] = (), base_dir: Path | None = None
) -> Scenario:
    """Validate scenario ``text``; ``source`` names it in error messages. Tasks
    (``module:function``) are imported from ``base_dir`` (the scenario's folder) first."""
    try:
        raw, root = compose_and_load(text)
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
    _check_threads(scenario, source, root, overridden)
    if scenario.app is not None:
        _check_app(scenario, source, root, base_dir)
    for index, group in enumerate(scenario.workload):
        if group.task is None:
            continue
        try:
            import_task(group.task, base_dir, allow_async=scenario.engine != "sync")
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


def _check_app(
    scenario: Scenario, source: str, root: yaml.Node | None, base_dir: Path | None
) -> None:
    """ScenarioError when the app's engine, setup or teardown cannot be found (importing
    the app's module runs its import-time code, as the service's own start would)."""
    from ..app import find_engine, import_object

    app = scenario.app
    assert app is not None
    if scenario.fleet.processes > 1:
        raise ScenarioError(
            source,
            "app.engine runs in poolbench's own process; fleet.processes must be 1",
            path="fleet.processes",
            line=_line_of(root, ("fleet", "processes")),
        )
    for key in ("engine", "setup", "teardown"):
        spec = getattr(app, key)
        if spec is None:
            continue
        try:
            found = (
                find_engine(spec, base_dir) if key == "engine" else import_object(spec, base_dir)
            )
        except (ImportError, AttributeError, TypeError) as exc:
            loc = ("app", key)
            raise ScenarioError(
                source, str(exc), path=_format_loc(loc), line=_line_of(root, loc)
            ) from None
        if key == "engine" and app.served and found.async_engine is not None:
            # the app's process would have to close the async pool on the server's own
            # event loop; until it does, say so rather than measure something else
            loc = ("app", "asgi" if app.asgi else "wsgi")
            raise ScenarioError(
                source,
                "serving an app whose engine is an AsyncEngine over HTTP is not supported "
                "yet; measure its engine with app.engine and an async task (docs/app.md)",
                path=_format_loc(loc),
                line=_line_of(root, loc),
            )


def _check_threads(
    scenario: Scenario,
    source: str,
    root: yaml.Node | None,
    overridden: dict[tuple[str | int, ...], str],
) -> None:
    """ScenarioError when a process of the run would start more load threads than this
    machine allows (scenario/limits.py), before a thread is started."""
    needed, loc = threads_needed(scenario)
    allowed = max_threads()
    if needed <= allowed:
        return
    processes = scenario.fleet.processes
    per = f" per process ({processes} processes)" if processes > 1 else ""
    where = overridden.get(loc)
    raise ScenarioError(
        f"--set {where}" if where else source,
        f"{needed} load threads{per}, but this machine lets poolbench start at most "
        f"{allowed} (half the least of ulimit -u, kernel.threads-max and kernel.pid_max); "
        "use fewer, or spread them over fleet.processes",
        path="" if where else _format_loc(loc),
        line=None if where else _line_of(root, loc),
    )


def is_async_task(fn: Callable[..., Any]) -> bool:
    """An ``async def`` (or an async generator, a FastAPI-style dependency)."""
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def import_task(
    spec: str, base_dir: Path | None = None, allow_async: bool = True
) -> Callable[..., Any]:
    """The callable named ``module:function``; the scenario's folder is searched first.
    ``allow_async``: an ``async def`` is fine (an async engine awaits it)."""
    module_name, _, attr = spec.partition(":")
    if base_dir is not None:
        folder = str(Path(base_dir).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the module itself raised, or exited, on import
        failure = f"{type(exc).__name__}: {exc}"
        raise ImportError(f"importing {module_name!r} failed: {failure}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise AttributeError(f"{module_name!r} has no {attr!r}")
    if not callable(fn):
        raise TypeError(f"{spec} is not callable")
    if not allow_async and is_async_task(fn):
        # Called, it would return a coroutine nobody awaits: requests "succeed" unrun.
        raise TypeError(
            f"async tasks need an async engine: {spec} is an async def, and the scenario "
            "says engine: sync; write it as a plain def or use engine: async"
        )
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
        parsed = load_value(value) if value.strip() else ""
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
    message += _also(exc.errors()[1:], root)
    for path, item in overridden.items():
        if loc[: len(path)] == path:
            return ScenarioError(f"--set {item}", message)
    line = _line_of(root, loc, key=kind == "extra_forbidden")
    if line is None and kind == "missing":
        line = _line_of(root, loc[:-1], key=True)
    return ScenarioError(source, message, path=_format_loc(loc), line=line)


def _also(rest: Sequence[Mapping[str, Any]], root: yaml.Node | None) -> str:
    """The next problem named (key path, line and message), and how many more there are."""
    if not rest:
        return ""
    loc = tuple(rest[0]["loc"])
    line = _line_of(root, loc, key=rest[0]["type"] == "extra_forbidden")
    where = f"{_format_loc(loc)}{f' (line {line})' if line else ''}"
    others = len(rest) - 1
    tail = f"; and {others} more problem{'s' if others > 1 else ''}" if others else ""
    return f"; also {where}: {_message(rest[0], loc)}{tail}"


def _message(error: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
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
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15:
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


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
