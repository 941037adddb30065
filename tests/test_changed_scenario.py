"""A scenario's ``expect`` describes it as written: when the user changes it (--set,
--duration, --vary), an expectation that no longer holds is measured and shown but not
checked, with the reason; one that holds is reported as held; thresholds always gate."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from poolbench.cli import main
from poolbench.scenario import load_scenario
from poolbench.scenario.variants import plan

SCENARIO = """\
name: changed
pool: {pool_size: 2, max_overflow: 0, pool_timeout: 0.5s}
workload: {session: leaky}
load: {workers: 2}
duration: 1500ms
interval: 250ms
expect:
  timeouts: ">= 1"
THRESHOLDS
"""


def _file(tmp_path, thresholds: str = "") -> str:
    path = tmp_path / "changed.yaml"
    path.write_text(textwrap.dedent(SCENARIO).replace("THRESHOLDS", thresholds))
    return str(path)


def test_the_loader_records_each_change(tmp_path):
    path = _file(tmp_path)
    assert load_scenario(path).changed_by == ()
    changed = load_scenario(path, ["workload[0].session=closed"], duration=2.0)
    assert changed.changed_by == ("--set workload[0].session=closed", "--duration 2s")
    as_written = load_scenario(path)
    assert [r.scenario.changed_by for r in plan(as_written, ["pool.pool_size=1,2"])] == [
        ("--vary pool_size=1",),
        ("--vary pool_size=2",),
    ]


def _run(tmp_path, pg_url, *args: str):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["run", *args, "--url", pg_url, "--progress", "none", "--json", str(out),
         "--junit", str(tmp_path / "r.xml")],
        env={"POOLBENCH_URL": ""},
    )  # fmt: skip
    return result, json.loads(out.read_text())


@pytest.mark.postgres
def test_an_override_skips_the_expectations_it_makes_meaningless(tmp_path, pg_url):
    # closed sessions never time out: as written the expectation holds, changed it would not
    result, doc = _run(tmp_path, pg_url, _file(tmp_path), "--set", "workload[0].session=closed")
    assert result.exit_code == 0, result.output
    s = doc["summary"]
    assert s["expectations"] == [] and s["passed"] is True
    assert [c["metric"] for c in s["skipped_expectations"]] == ["timeouts"]
    assert s["skipped_expectations"][0]["value"] == 0
    assert s["expectations_skipped_because"] == (
        "the scenario was changed: --set workload[0].session=closed"
    )
    assert "1 expectation not checked: the scenario was changed: --set" in result.output
    assert 'skipped="1"' in (tmp_path / "r.xml").read_text()


@pytest.mark.postgres
def test_thresholds_still_gate_a_changed_scenario(tmp_path, pg_url):
    path = _file(tmp_path, 'thresholds:\n  timeouts: "== 0"')
    result, doc = _run(tmp_path, pg_url, path, "--duration", "1s")
    assert result.exit_code == 1, result.output  # leaky: timeouts, and the threshold gates
    s = doc["summary"]
    assert not s["passed"] and [c["metric"] for c in s["thresholds"]] == ["timeouts"]
    # the expectation still holds on the changed scenario: it is reported as held
    assert [(c["metric"], c["ok"]) for c in s["expectations"]] == [("timeouts", True)]
    assert s["skipped_expectations"] == [] and s["expectations_skipped_because"] is None


@pytest.mark.postgres
def test_as_written_the_expectations_are_checked(tmp_path, pg_url):
    result, doc = _run(tmp_path, pg_url, _file(tmp_path))
    assert result.exit_code == 0, result.output
    assert [c["metric"] for c in doc["summary"]["expectations"]] == ["timeouts"]
    assert doc["summary"]["skipped_expectations"] == []
