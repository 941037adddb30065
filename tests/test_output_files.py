"""Result files are written without harming what the path names (issue: --json /dev/null
replaced the system's /dev/null with a regular file).

Special files are the test's own (mknod and mkfifo in a temporary directory), never the
system's /dev/null or /dev/stdout themselves."""

from __future__ import annotations

import os
import stat
import textwrap
import threading

import pytest
from click.testing import CliRunner

from poolbench.cli import main
from poolbench.errors import OutputFileError
from poolbench.output.files import check_path, write_text

NULL = os.makedev(1, 3)  # what /dev/null is
FULL = os.makedev(1, 7)  # what /dev/full is: every write fails with ENOSPC


@pytest.fixture
def device(tmp_path):
    def make(name: str, dev: int) -> str:
        path = tmp_path / name
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, dev)
        except PermissionError:
            pytest.skip("mknod needs root (CAP_MKNOD)")
        return str(path)

    return make


def test_a_missing_path_and_its_directories_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]  # no temporary left


def test_a_symlink_to_a_regular_file_stays_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_character_device_is_written_in_place_not_replaced(device):
    null = device("null", NULL)
    write_text(null, "x" * 10_000)
    mode = os.stat(null).st_mode
    assert stat.S_ISCHR(mode) and os.stat(null).st_rdev == NULL


def test_a_symlink_to_a_device_leaves_both_as_they_were(device, tmp_path):
    null = device("null", NULL)
    link = tmp_path / "stdout-like"
    link.symlink_to(null)
    write_text(link, "hello")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(null).st_mode)


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text(fifo, "through the pipe")
    reader.join(5)
    assert got == ["through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_full_device_is_one_error_naming_the_file(device):
    full = device("full", FULL)
    with pytest.raises(OutputFileError) as caught:
        write_text(full, "x" * 100_000)
    assert str(caught.value) == f"{full}: cannot write: No space left on device"


def test_a_directory_is_refused_before_and_when_writing(tmp_path):
    with pytest.raises(OutputFileError, match="is a directory"):
        check_path(tmp_path)
    with pytest.raises(OutputFileError, match="is a directory"):
        write_text(tmp_path, "x")


def test_a_path_below_a_regular_file_is_refused(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OutputFileError, match=r"(?i)not a directory"):
        check_path(plain / "sub" / "out.json")


SCENARIO = """\
name: files
pool: {pool_size: 2, max_overflow: 0, pool_timeout: 0.5s}
workload: {session: closed, hold: 5ms}
load: {workers: 2}
duration: 1s
interval: 250ms
"""


def _scenario(tmp_path) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SCENARIO))
    return str(path)


def invoke(*args):
    return CliRunner().invoke(main, list(args), env={"POOLBENCH_URL": ""})


@pytest.mark.parametrize("flag", ["--json", "--html", "--csv", "--junit"])
def test_a_bad_output_path_stops_the_run_before_anything_is_measured(flag, tmp_path):
    # the URL points nowhere: the path check must come first, so no connection is tried
    url = "postgresql+psycopg2://postgres@127.0.0.1:9/test"
    target = tmp_path if flag != "--csv" else tmp_path / "file" / "prefix"
    (tmp_path / "file").write_text("")
    result = invoke("run", _scenario(tmp_path), "--url", url, flag, str(target))
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("poolbench: error: ")
    assert str(target if flag != "--csv" else tmp_path / "file") in result.output


@pytest.mark.postgres
def test_one_output_that_fails_leaves_the_others_written(pg_url, tmp_path, device):
    full = device("full", FULL)
    null = device("null", NULL)
    html = tmp_path / "report.html"
    result = invoke(
        "run", _scenario(tmp_path), "--url", pg_url, "--progress", "none",
        "--json", full, "--html", str(html), "--junit", null, "--csv", str(tmp_path / "r"),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("poolbench: error")]
    assert errors == [f"poolbench: error: {full}: cannot write: No space left on device"]
    assert "<html" in html.read_text().lower()
    assert (tmp_path / "r_summary.csv").exists() and (tmp_path / "r_timeline.csv").exists()
    assert stat.S_ISCHR(os.stat(null).st_mode)
    assert "Traceback" not in result.output


@pytest.mark.postgres
def test_json_to_a_device_is_still_a_device_after_a_run(pg_url, tmp_path, device):
    null = device("null", NULL)
    xml = tmp_path / "out.xml"
    result = invoke(
        "run", _scenario(tmp_path), "--url", pg_url, "--progress", "none",
        "--json", null, "--junit", str(xml),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == NULL
    assert "<testsuite" in xml.read_text()
