"""Bad input on the command line is one line, never a traceback: URLs, flags, saved
results, task modules, and scenario text that would drive the terminal."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from poolbench.cli import main
from poolbench.printable import one_line, printable

BASE = "name: x\nworkload: {session: closed}\nload: {workers: 1}\nduration: 1s\n"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={"POOLBENCH_URL": ""})


def one_error_line(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("poolbench: error: ")
    return result.output


def _file(tmp_path, content: str, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_control_characters_are_written_as_escapes():
    assert printable("a\x1b[31mb\tc\nd\x9be\x7f") == "a\\x1b[31mb\tc\nd\\x9be\\x7f"
    assert one_line("a\nb\tc") == "a\\nb\\tc"


def test_terminal_escapes_in_a_scenario_are_shown_escaped(tmp_path):
    content = BASE.replace("name: x", 'name: "x\\e[31mRED\\e]0;title\\a"')
    content += 'description: "\\e[2J wiped"\n'
    result = invoke("validate", _file(tmp_path, content))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "x\\x1b[31mRED" in result.output


def test_a_task_module_that_exits_does_not_end_validate(tmp_path):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(5)\n")
    content = BASE.replace("{session: closed}", "{session: closed, task: 'exits_on_import:t'}")
    output = one_error_line(invoke("validate", _file(tmp_path, content)))
    assert "SystemExit: 5" in output and "workload[0].task" in output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "--url is empty"),
        ("sqlite://", "cannot measure 'sqlite'"),
        ("oracle://u@h/db", "cannot measure 'oracle'"),
        ("postgresql+psycopg2://u:pw@h:abc/t", "the port is not a number"),
        ("postgresql+psycopg2://u@[::1/t", "not a database URL"),
    ],
)
def test_bad_urls_give_one_line(tmp_path, url, expected):
    result = invoke("run", _file(tmp_path, BASE), "--url", url)
    assert expected in one_error_line(result, result.exit_code)
    assert result.exit_code in (2, 3) and "pw" not in result.output


@pytest.mark.parametrize("flag", ["--calibration", "--trial"])
def test_size_refuses_a_zero_duration(flag):
    output = one_error_line(invoke("size", "sizing", flag, "0", "--slo", "timeouts=0"))
    assert f"{flag} must be a positive duration" in output


@pytest.mark.parametrize(
    "content",
    ["junk", "[]", '{"summary": 5}', '{"runs": [{"summary": {"operations": "x"}}]}'],
)
def test_report_on_junk_or_wrong_types_gives_one_line(tmp_path, content):
    one_error_line(invoke("report", _file(tmp_path, content, "r.json")))
