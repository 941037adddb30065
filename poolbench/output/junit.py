"""Results as JUnit XML, so CI (GitLab, Jenkins, GitHub test reporters) lists every check.

One ``<testsuite>`` per run under one ``<testsuites>`` root. Each threshold and each
expectation is a ``<testcase classname="poolbench.<scenario>[.<variant>]"
name="<source>: <metric> <condition>">``; a breached one carries
``<failure message="measured <value>, expected <metric> <condition>">`` with the run's key
figures as its text (``not measured, expected …`` when the figure was null). An
interrupted run adds a ``run: completed`` testcase with an ``<error>``. The run's notes go
to the suite's ``<system-out>``. A run with no checks is an empty ``<testsuite tests="0">``.

Checks take no time of their own, so testcases have ``time="0"`` and the suite carries the
run's measured duration. Dots in a variant's label become ``_`` in the classname only
(Jenkins reads dots there as package separators); the suite name and the ``variant``
property keep the exact label.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .csvout import runs_of, variant_label

# XML 1.0 cannot carry most control characters, even escaped; drivers' messages may.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def measured(value: object) -> str:
    """A check's measured value as the terminal shows it: ``5.944``, ``20``, ``not measured``."""
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # milliseconds come with three decimals; ratios (error_rate) need significant digits
        if abs(value) >= 1:
            return f"{value:.3f}".rstrip("0").rstrip(".")
        return f"{value:.4g}"
    return str(value)


def _measured_phrase(value: object) -> str:
    return "not measured" if value is None else f"measured {measured(value)}"


def _classname(run: dict[str, Any]) -> str:
    name = f"poolbench.{(run.get('scenario') or {}).get('name') or 'scenario'}"
    label = variant_label(run)
    return f"{name}.{label.replace('.', '_')}" if label else name


def _timestamp(started_at: object) -> str | None:
    """JUnit's schema wants a timestamp without a zone; ours is UTC."""
    if not isinstance(started_at, str):
        return None
    try:
        moment = datetime.fromisoformat(started_at)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds")


def _seconds(value: object) -> str:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
    return f"{number:.3f}"


def _detail(run: dict[str, Any], check: dict[str, Any]) -> str:
    summary = run.get("summary") or {}
    pool = run.get("pool") or {}
    wait = summary.get("checkout_wait_ms") or {}
    lines = [
        f"{check.get('source')}: {check.get('metric')} {check.get('condition')}",
        f"measured: {measured(check.get('value'))}",
        f"run {run.get('run_id')} of scenario {(run.get('scenario') or {}).get('name')}"
        + (f" ({variant_label(run)})" if variant_label(run) else ""),
    ]
    if pool.get("create_engine"):
        lines.append(f"pool: {pool['create_engine']}")
    lines.append(
        f"requests {summary.get('operations')} · ok {summary.get('ok')} · "
        f"timeouts {summary.get('timeouts')} · leaked {summary.get('leaked')} · "
        f"max checked out {summary.get('max_checked_out')} · "
        f"max waiting {summary.get('max_waiting')} · "
        f"checkout wait p99 {measured(wait.get('p99'))} ms"
    )
    if summary.get("first_timeout_message"):
        lines.append(
            f"first timeout at {measured(summary.get('first_timeout_at_s'))} s: "
            f"{summary['first_timeout_message']}"
        )
    return _text("\n".join(lines))


def _suite(run: dict[str, Any]) -> tuple[ET.Element, int, int]:
    summary = run.get("summary") or {}
    classname = _classname(run)
    label = variant_label(run)
    name = (run.get("scenario") or {}).get("name") or "scenario"
    suite = ET.Element("testsuite", name=_text(f"{name} [{label}]" if label else name))
    stamp = _timestamp(run.get("started_at"))
    if stamp:
        suite.set("timestamp", stamp)

    props = ET.SubElement(suite, "properties")
    database = run.get("database") or {}
    for key, value in (
        ("run_id", run.get("run_id")),
        ("variant", label or None),
        ("database", database.get("url")),
        ("server_version", database.get("server_version")),
        ("create_engine", (run.get("pool") or {}).get("create_engine")),
    ):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=_text(value))

    checks = list(summary.get("thresholds") or []) + list(summary.get("expectations") or [])
    failures = 0
    for check in checks:
        metric, condition = check.get("metric"), check.get("condition")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_text(classname),
            name=_text(f"{check.get('source')}: {metric} {condition}"),
            time="0",
        )
        if not check.get("ok"):
            failures += 1
            failure = ET.SubElement(
                case,
                "failure",
                message=_text(
                    f"{_measured_phrase(check.get('value'))}, expected {metric} {condition}"
                ),
                type=_text(check.get("source") or "check"),
            )
            failure.text = _detail(run, check)

    errors = 0
    if run.get("interrupted"):
        errors = 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_text(classname),
            name="run: completed",
            time=_seconds(summary.get("duration_s")),
        )
        planned = (run.get("scenario") or {}).get("duration_s")
        ET.SubElement(
            case,
            "error",
            message=_text(
                f"interrupted after {measured(summary.get('duration_s'))} s"
                + (f" of {measured(planned)} s" if planned is not None else "")
                + "; the checks judge only what was measured until then"
            ),
            type="interrupted",
        )

    notes = run.get("notes") or []
    if notes:
        ET.SubElement(suite, "system-out").text = _text("\n".join(notes))

    suite.set("tests", str(len(checks) + errors))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", _seconds(summary.get("duration_s")))
    return suite, failures, errors


def junit_xml(document: dict[str, Any]) -> str:
    """The JUnit XML of a result document (one run or a comparison), with its declaration."""
    root = ET.Element("testsuites", name="poolbench")
    tests = failures = errors = 0
    total_time = 0.0
    for run in runs_of(document):
        suite, run_failures, run_errors = _suite(run)
        root.append(suite)
        tests += int(suite.get("tests", "0"))
        failures += run_failures
        errors += run_errors
        total_time += float(suite.get("time", "0"))
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_junit(document: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`junit_xml` to ``path`` (UTF-8), creating its directory; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(junit_xml(document), encoding="utf-8")
    return target


__all__ = ["junit_xml", "measured", "write_junit"]
