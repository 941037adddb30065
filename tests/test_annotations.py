"""--github-annotations: the ::error lines GitHub Actions shows inline, from a real run
that breaches a threshold and times out, and GitHub's escaping rules."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from poolbench.output.annotations import github_annotations
from poolbench.result import RunResult

from .test_cli import invoke

LEAKY = """
name: drains
pool: {pool_size: 1, max_overflow: 0, pool_timeout: 0.3s}
load: {workers: 2}
workload: {session: leaky, hold: 5ms}
duration: 1200ms
interval: 200ms
thresholds:
  timeouts: "== 0"
  leaked: ">= 0"
"""


@pytest.mark.postgres
def test_a_breached_threshold_and_the_first_timeout_on_github(tmp_path, pg_url) -> None:
    scenario = tmp_path / "drains.yaml"
    scenario.write_text(textwrap.dedent(LEAKY))
    result = invoke(
        "run",
        str(scenario),
        "--progress",
        "none",
        env={"POOLBENCH_URL": pg_url, "GITHUB_ACTIONS": "true"},
    )
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("::")]
    file = str(scenario).replace(":", "%3A").replace(",", "%2C")
    assert lines[0].startswith(
        f"::error file={file},title=poolbench drains%3A threshold breached::timeouts == 0: "
        "measured "
    )
    assert int(lines[0].rsplit(" ", 1)[1]) > 0
    assert lines[1].startswith(
        f"::error file={file},title=poolbench drains%3A first TimeoutError::at "
    )
    assert "s: QueuePool limit of size 1 overflow 0 reached" in lines[1]
    assert len(lines) == 2  # the threshold that held says nothing

    quiet = invoke(
        "run",
        str(scenario),
        "--progress",
        "none",
        "--no-github-annotations",
        env={"POOLBENCH_URL": pg_url, "GITHUB_ACTIONS": "true"},
    )
    assert quiet.exit_code == 1 and "::error" not in quiet.output


def test_messages_and_properties_are_escaped_as_github_reads_them() -> None:
    data = json.loads((Path(__file__).parent / "data" / "rare-leak.json").read_text())
    data["scenario"]["name"] = "a,b:c"
    data["interrupted"] = True
    summary = data["summary"]
    summary["thresholds"] = [
        {
            "metric": "error_rate",
            "condition": "< 1%",
            "value": 0.5,
            "ok": False,
            "source": "threshold",
        },
        {"metric": "timeouts", "condition": "< 100", "value": 3, "ok": True, "source": "threshold"},
    ]
    summary["expectations"] = []
    summary["first_timeout_message"] = "line one\nline two"
    summary["first_timeout_at_s"] = 3.5
    run = RunResult.from_dict(data)
    assert github_annotations([run]) == [
        "::error title=poolbench a%2Cb%3Ac%3A threshold breached::error_rate < 1%25: measured 0.5",
        "::error title=poolbench a%2Cb%3Ac%3A first TimeoutError::at 3.5s: line one%0Aline two",
        "::warning title=poolbench a%2Cb%3Ac::interrupted: the figures cover part of the run",
    ]
