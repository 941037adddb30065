"""The CSV and JUnit renderers, on the recorded sample results (no database needed)."""

from __future__ import annotations

import copy
import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from poolbench.output.csvout import (
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
    timeline_table,
    write_csv,
)
from poolbench.output.junit import junit_xml, write_junit
from poolbench.result import RunResult
from poolbench.result.document import load_document as typed

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def comparison(*variants: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for variant in variants:
        run = load("bursts.json")
        run["variant"] = variant
        runs.append(run)
    return {"schema_version": 1, "runs": runs}


def check(metric: str, condition: str, value: Any, ok: bool, source: str = "threshold") -> dict:
    return {"metric": metric, "condition": condition, "value": value, "ok": ok, "source": source}


# --- CSV ---------------------------------------------------------------------------------


def test_one_run_writes_timeline_and_summary(tmp_path: Path) -> None:
    paths = write_csv(typed(load("rare-leak.json")), tmp_path / "out" / "nightly")

    assert paths == [tmp_path / "out/nightly_timeline.csv", tmp_path / "out/nightly_summary.csv"]
    header, rows = read_csv(paths[0])
    assert header == [
        *TIMELINE_COLUMNS,
        "server_total",
        "server_idle_in_transaction",
        "server_idle",
    ]
    assert len(rows) == 10
    assert rows[0] == {
        "t_s": "1.0",
        "phase": "steady",
        "checked_out": "4",
        "checked_in": "5",
        "overflow": "4",
        "waiting": "0",
        "operations": "100",
        "ok": "100",
        "timeouts": "0",
        "errors": "0",
        "checkout_wait_p99_ms": "14.607",
        "connects": "26",
        "invalidations": "0",
        "gc_returned": "0",
        "leaked_open": "4",
        "peak_checked_out": "",  # written before peaks were measured
        "peak_waiting": "",
        "peak_overflow": "",
        "server_total": "9",
        "server_idle": "5",
        "server_idle_in_transaction": "4",
    }

    header, rows = read_csv(paths[1])
    assert header == list(SUMMARY_COLUMNS)
    assert rows == [
        {
            "run_id": "8f8b6a5e",
            "scenario": "rare-leak",
            "variant": "",
            "operations": "406",
            "ok": "386",
            "throughput_ops_s": "40.6",
            "timeouts": "20",
            "first_timeout_at_s": "5.944",
            "errors_timeout": "20",
            "errors_disconnect": "0",
            "errors_too_many_connections": "0",
            "errors_other": "0",
            "errors_cancelled": "",  # written before cancellations were measured
            "checkout_wait_p50_ms": "0.158",
            "checkout_wait_p90_ms": "5.263",
            "checkout_wait_p99_ms": "2000.895",
            "checkout_wait_max_ms": "2001.919",
            "hold_p50_ms": "21.439",
            "hold_p99_ms": "27.439",
            "max_checked_out": "15",
            "max_overflow": "10",
            "max_waiting": "10",
            "max_connections_open": "",  # not measured then
            "max_server_connections": "15",
            "leaked": "15",
            "passed": "true",
        }
    ]


def test_null_is_an_empty_cell_and_an_uncounted_state_is_zero(tmp_path: Path) -> None:
    document = load("rare-leak.json")
    document["timeline"][0]["checkout_wait_p99_ms"] = None
    document["timeline"][1]["server_connections"] = None  # the server could not be asked
    document["timeline"][2]["server_connections"] = {"active": 2, "total": 2}

    timeline, summary = write_csv(typed(document), tmp_path / "r")

    header, rows = read_csv(timeline)
    assert header[-4:] == [
        "server_total",
        "server_active",
        "server_idle_in_transaction",
        "server_idle",
    ]
    assert rows[0]["checkout_wait_p99_ms"] == ""
    assert [rows[1][c] for c in header[-4:]] == ["", "", "", ""]
    assert [rows[2][c] for c in header[-4:]] == ["2", "2", "0", "0"]
    _, rows = read_csv(summary)
    assert rows[0]["first_timeout_at_s"] == "5.944"


def test_server_states_become_column_names(tmp_path: Path) -> None:
    document = load("rare-leak.json")
    document["timeline"][3]["server_connections"] = {
        "idle in transaction (aborted)": 1,
        "fastpath function call": 2,
        "total": 3,
    }

    header, rows = read_csv(write_csv(typed(document), tmp_path / "r")[0])

    assert header[-5:] == [
        "server_total",
        "server_idle_in_transaction",
        "server_idle",
        "server_fastpath_function_call",
        "server_idle_in_transaction_aborted",
    ]
    assert rows[3]["server_idle_in_transaction_aborted"] == "1"
    assert rows[3]["server_idle"] == "0"


def test_comparison_is_one_timeline_file_with_a_variant_column(tmp_path: Path) -> None:
    document = comparison({"pool_pre_ping": True, "pool_timeout": 0.5}, {"pool_pre_ping": False})
    document["runs"][1]["timeline"][0]["server_connections"] = {"active": 8, "total": 8}
    document["runs"][1]["summary"]["first_timeout_at_s"] = 1.5

    timeline, summary = write_csv(typed(document), tmp_path / "cmp")

    header, rows = read_csv(timeline)
    assert header[0] == "variant"
    assert header[1:] == [
        *TIMELINE_COLUMNS,
        "server_total",
        "server_active",
        "server_idle_in_transaction",
        "server_idle",
    ]
    assert len(rows) == 2 * 24
    assert {r["variant"] for r in rows[:24]} == {"pre_ping=True, timeout=0.5"}
    assert {r["variant"] for r in rows[24:]} == {"pre_ping=False"}
    assert rows[0]["server_active"] == "0"  # a state only the other run saw
    assert rows[24]["server_active"] == "8"

    _, rows = read_csv(summary)
    assert [r["variant"] for r in rows] == [
        "pre_ping=True, timeout=0.5",
        "pre_ping=False",
    ]
    assert [r["first_timeout_at_s"] for r in rows] == ["", "1.5"]


def test_a_variant_is_named_as_the_terminal_names_it() -> None:
    def variant_label(run: dict[str, Any]) -> str:
        return RunResult.from_dict(run).label()

    assert variant_label({"variant": None}) == ""
    # exactly the terminal's label (RunResult.label, as compare's table names a variant)
    assert variant_label({"variant": {"pool.pool_recycle": "1s", "pool_size": 10}}) == (
        "recycle=1s, pool_size=10"
    )
    named = {"variant": {"pool.pool_pre_ping": True}, "variant_name": "with pre-ping"}
    assert variant_label(named) == "with pre-ping"


def test_csv_tolerates_missing_keys(tmp_path: Path) -> None:
    document = {"schema_version": 1, "run_id": "abc", "timeline": [{"t_s": 1.0, "new_key": 3}]}

    timeline, summary = write_csv(typed(document), str(tmp_path / "deep" / "er" / "x"))

    _, rows = read_csv(timeline)
    assert rows[0]["t_s"] == "1.0"
    assert rows[0]["checked_out"] == "" and rows[0]["server_total"] == ""
    _, rows = read_csv(summary)
    assert rows[0]["run_id"] == "abc"
    assert all(rows[0][c] == "" for c in SUMMARY_COLUMNS if c != "run_id")


def test_csv_quotes_phase_names() -> None:
    document = load("bursts.json")
    document["timeline"][0]["phase"] = 'burst, "big"'

    header, rows = timeline_table(typed(document))
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    assert next(csv.DictReader(io.StringIO(out.getvalue())))["phase"] == 'burst, "big"'


# --- JUnit -------------------------------------------------------------------------------


def parse(xml: str) -> ET.Element:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(xml.encode("utf-8"))


def test_each_check_is_a_testcase() -> None:
    root = parse(junit_xml(typed(load("rare-leak.json"))))

    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "0", "0")
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "rare-leak"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "0", "0")
    assert suite.get("time") == "10.000"
    assert suite.get("timestamp") == "2026-11-22T02:10:51"
    cases = suite.findall("testcase")
    assert {c.get("classname") for c in cases} == {"poolbench.rare-leak"}
    assert [c.get("name") for c in cases] == [
        "expect: timeouts >= 1",
        "expect: leaked_at_first_timeout == 15",
        "expect: first_timeout_at_s > 2",
        "expect: max_checked_out == 15",
        "expect: server_connections_at_exit == 0",
    ]
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run_id"] == "8f8b6a5e"
    assert props["create_engine"] == "pool_size=5, max_overflow=10, pool_timeout=2"


def test_a_breached_check_is_a_failure() -> None:
    document = load("rare-leak.json")
    document["summary"]["thresholds"] = [
        check("timeouts", "== 0", 20, False),
        check("checkout_wait_p99_ms", "< 50", 2000.895, False),
        check("first_timeout_at_s", "> 100", None, False),
        check("leaked", "<= 20", 15, True),
    ]
    document["summary"]["passed"] = False

    root = parse(junit_xml(typed(document)))

    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("9", "3", "0")
    assert root.get("failures") == "3"
    failures = {
        c.get("name"): c.find("failure")
        for c in suite.findall("testcase")
        if c.find("failure") is not None
    }
    assert list(failures) == [
        "threshold: timeouts == 0",
        "threshold: checkout_wait_p99_ms < 50",
        "threshold: first_timeout_at_s > 100",
    ]
    messages = [f.get("message") for f in failures.values()]
    assert messages == [
        "measured 20, expected timeouts == 0",
        "measured 2000.895, expected checkout_wait_p99_ms < 50",
        "not measured, expected first_timeout_at_s > 100",
    ]
    assert {f.get("type") for f in failures.values()} == {"threshold"}
    detail = failures["threshold: timeouts == 0"].text or ""
    assert "run 8f8b6a5e of scenario rare-leak" in detail
    assert "first timeout at 5.944 s: QueuePool limit of size 5 overflow 10 reached" in detail


def test_special_characters_are_escaped() -> None:
    document = load("rare-leak.json")
    message = "QueuePool <limit> & \"quoted\" 'single'\x1b[31m\x00 naïve → done"
    condition = "contains '<a & \"b\">'"
    document["scenario"]["name"] = "a<b&c"
    document["summary"]["first_timeout_message"] = message
    document["summary"]["thresholds"] = [
        check("first_timeout_message", condition, message, False),
    ]
    document["notes"] = ["requests <still> running & ended"]

    xml = junit_xml(typed(document))
    root = parse(xml)

    assert "\x00" not in xml and "\x1b" not in xml
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.get("classname") == "poolbench.a<b&c"
    assert case.get("name") == f"threshold: first_timeout_message {condition}"
    failure = case.find("failure")
    assert failure is not None
    shown = "QueuePool <limit> & \"quoted\" 'single'\ufffd[31m\ufffd naïve → done"
    assert failure.get("message") == f"measured {shown}, expected first_timeout_message {condition}"
    assert shown in (failure.text or "")
    assert root.findtext("testsuite/system-out") == "requests <still> running & ended"


def test_an_interrupted_run_adds_an_error() -> None:
    document = load("rare-leak.json")
    document["interrupted"] = True
    document["summary"]["duration_s"] = 4.2

    root = parse(junit_xml(typed(document)))

    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "0", "1")
    assert root.get("errors") == "1"
    [case] = [c for c in suite.findall("testcase") if c.find("error") is not None]
    assert case.get("name") == "run: completed"
    error = case.find("error")
    assert error is not None
    assert error.get("message", "").startswith("interrupted after 4.2 s of 10 s")


def test_a_run_without_checks_is_an_empty_suite() -> None:
    document = load("bursts.json")
    document["summary"]["expectations"] = []
    del document["summary"]["thresholds"]  # a key a future schema might leave out

    root = parse(junit_xml(typed(document)))

    [suite] = root.findall("testsuite")
    assert suite.get("tests") == "0"
    assert suite.findall("testcase") == []
    assert root.get("tests") == "0"


def test_a_comparison_is_one_suite_per_run(tmp_path: Path) -> None:
    document = comparison({"pool_pre_ping": True, "pool_timeout": 0.5}, {"pool_pre_ping": False})
    document["runs"][1]["summary"]["expectations"][0]["ok"] = False

    path = write_junit(typed(document), tmp_path / "reports" / "junit.xml")

    root = ET.parse(path).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "bursts [pre_ping=True, timeout=0.5]",
        "bursts [pre_ping=False]",
    ]
    assert [s.get("failures") for s in suites] == ["0", "1"]
    assert (root.get("tests"), root.get("failures")) == ("8", "1")
    # a dot in a classname is a package separator to Jenkins
    assert {c.get("classname") for c in suites[0].iter("testcase")} == {
        "poolbench.bursts.pre_ping=True, timeout=0_5"
    }
    assert {c.get("classname") for c in suites[1].iter("testcase")} == {
        "poolbench.bursts.pre_ping=False"
    }


@pytest.mark.parametrize("name", ["rare-leak.json", "bursts.json"])
def test_samples_render_without_change(name: str, tmp_path: Path) -> None:
    document = load(name)
    before = copy.deepcopy(document)
    write_csv(typed(document), tmp_path / "x")
    junit_xml(typed(document))
    assert document == before
