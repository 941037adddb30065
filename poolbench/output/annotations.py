"""``--github-annotations``: what GitHub Actions shows inline on the job and the pull request.

GitHub reads workflow commands from a step's output: a line ``::error title=T::message``
becomes an annotation. One per breached threshold or expectation, one for the run's first
TimeoutError (the moment the pool ran dry, with SQLAlchemy's message), and a warning for
an interrupted run. A pure function of the result document, like every other output.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..result import RunResult
from .junit import measured


def _data(text: str) -> str:
    """A command's message: GitHub's escapes for %, CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """A command's property value: the message escapes, and : and , too."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _command(level: str, title: str, message: str, file: str | None) -> str:
    properties = f"title={_property(title)}"
    if file:
        properties = f"file={_property(file)},{properties}"
    return f"::{level} {properties}::{_data(message)}"


def github_annotations(runs: Sequence[RunResult], scenario_file: str | None = None) -> list[str]:
    """The workflow-command lines for ``runs`` (one run, or a comparison's variants)."""
    lines: list[str] = []
    for run in runs:
        label = run.label()
        title = f"poolbench {run.scenario.name}" + (f" [{label}]" if label else "")
        summary = run.summary
        for check in (*summary.thresholds, *summary.expectations):
            if check.ok:
                continue
            phrase = "not measured" if check.value is None else f"measured {measured(check.value)}"
            lines.append(
                _command(
                    "error",
                    f"{title}: {check.source} breached",
                    f"{check.metric} {check.condition}: {phrase}",
                    scenario_file,
                )
            )
        if summary.first_timeout_message:
            at = measured(summary.first_timeout_at_s)
            lines.append(
                _command(
                    "error",
                    f"{title}: first TimeoutError",
                    f"at {at}s: {summary.first_timeout_message}",
                    scenario_file,
                )
            )
        if run.interrupted:
            lines.append(
                _command("warning", title, "interrupted: the figures cover part of the run", None)
            )
    return lines
