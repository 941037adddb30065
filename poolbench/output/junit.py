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

from ..result import CheckResult, RunResult
from ..result.document import ResultDocument
from .files import write_text

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


def _classname(run: RunResult) -> str:
    name = f"poolbench.{run.scenario.name or 'scenario'}"
    label = run.label()
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


def _detail(run: RunResult, check: CheckResult) -> str:
    summary = run.summary
    label = run.label()
    lines = [
        f"{check.source}: {check.metric} {check.condition}",
        f"measured: {measured(check.value)}",
        f"run {run.run_id} of scenario {run.scenario.name}" + (f" ({label})" if label else ""),
    ]
    if run.pool.create_engine:
        lines.append(f"pool: {run.pool.create_engine}")
    lines.append(
        f"requests {summary.operations} · ok {summary.ok} · "
        f"timeouts {summary.timeouts} · leaked {summary.leaks.sessions} · "
        f"max checked out {summary.peaks.checked_out} · "
        f"max waiting {summary.peaks.waiting} · "
        f"checkout wait p99 {measured(summary.latencies.checkout_wait_ms.p99)} ms"
    )
    if summary.first_timeout_message:
        lines.append(
            f"first timeout at {measured(summary.first_timeout_at_s)} s: "
            f"{summary.first_timeout_message}"
        )
    return _text("\n".join(lines))


def _suite(run: RunResult) -> tuple[ET.Element, int, int]:
    summary = run.summary
    classname = _classname(run)
    label = run.label()
    name = run.scenario.name or "scenario"
    suite = ET.Element("testsuite", name=_text(f"{name} [{label}]" if label else name))
    stamp = _timestamp(run.started_at)
    if stamp:
        suite.set("timestamp", stamp)

    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("run_id", run.run_id),
        ("variant", label or None),
        ("database", run.database.url),
        ("server_version", run.database.server_version),
        ("create_engine", run.pool.create_engine or None),
    ):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=_text(value))

    checks = summary.thresholds + summary.expectations
    failures = 0
    for check in checks:
        metric, condition = check.metric, check.condition
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_text(classname),
            name=_text(f"{check.source}: {metric} {condition}"),
            time="0",
        )
        if not check.ok:
            failures += 1
            failure = ET.SubElement(
                case,
                "failure",
                message=_text(f"{_measured_phrase(check.value)}, expected {metric} {condition}"),
                type=_text(check.source or "check"),
            )
            failure.text = _detail(run, check)

    for check in summary.skipped_expectations:  # measured; not checked on a changed scenario
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_text(classname),
            name=_text(f"expect: {check.metric} {check.condition}"),
            time="0",
        )
        ET.SubElement(
            case,
            "skipped",
            message=_text(
                f"{summary.expectations_skipped_because}; {_measured_phrase(check.value)}"
            ),
        )
    skipped = len(summary.skipped_expectations)

    errors = 0
    if run.interrupted:
        errors = 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_text(classname),
            name="run: completed",
            time=_seconds(summary.duration_s),
        )
        planned = run.scenario.duration_s
        ET.SubElement(
            case,
            "error",
            message=_text(
                f"interrupted after {measured(summary.duration_s)} s"
                + (f" of {measured(planned)} s" if planned is not None else "")
                + "; the checks judge only what was measured until then"
            ),
            type="interrupted",
        )

    if run.notes:
        ET.SubElement(suite, "system-out").text = _text("\n".join(run.notes))

    suite.set("tests", str(len(checks) + skipped + errors))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", _seconds(summary.duration_s))
    return suite, failures, errors


def junit_xml(document: ResultDocument) -> str:
    """The JUnit XML of a result document (one run or a comparison), with its declaration."""
    root = ET.Element("testsuites", name="poolbench")
    tests = failures = errors = 0
    total_time = 0.0
    for run in document.runs:
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


def write_junit(document: ResultDocument, path: str | os.PathLike[str]) -> Path:
    """Write :func:`junit_xml` to ``path`` (UTF-8), creating its directory; return the path."""
    target = Path(path)
    write_text(target, junit_xml(document))
    return target


__all__ = ["junit_xml", "measured", "write_junit"]
