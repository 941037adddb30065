"""The end-of-run chart of checked_out and waiting, rendered to a recording console."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console

from poolbench.output.termchart import column_maxima, pool_markers, timeline_chart
from poolbench.result import PoolInfo
from poolbench.result.document import load_document

DATA = Path(__file__).parent / "data"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BRAILLE = re.compile("[\u2801-\u28ff]")


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def chart(document: dict[str, Any], **size: int) -> Any:
    """The chart of a saved document, read as ``poolbench report`` reads it."""
    return timeline_chart(load_document(document), **size)


def render(renderable: Any, width: int = 100) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def with_timeline(samples: list[dict[str, Any]], pool: dict[str, Any] | None = None) -> dict:
    document = load("rare-leak.json")
    document["timeline"] = samples
    if pool is not None:
        document["pool"] = pool
    return document


def sample(t_s: float, checked_out: int = 0, waiting: int = 0) -> dict[str, Any]:
    return {"t_s": t_s, "phase": "steady", "checked_out": checked_out, "waiting": waiting}


def plot_rows(text: str) -> list[str]:
    """The rows between the ``count`` title and the x axis, after the y axis."""
    lines = text.splitlines()
    top = lines.index(next(line for line in lines if line.strip() == "count"))
    bottom = next(i for i, line in enumerate(lines) if "└" in line)
    return [re.split("[┤│]", line, maxsplit=1)[1] for line in lines[top + 1 : bottom]]


def test_a_run_shows_series_limits_and_axes() -> None:
    text = render(chart(load("rare-leak.json")))
    lines = text.splitlines()

    assert "█ checked out (max 15)" in text
    assert "⠤⠤ waiting (max 10)" in text
    assert "┄┄ pool_size 5" in text
    assert "━━ pool_size + max_overflow = 15" in text
    assert lines[0].strip() == "count"  # the y axis' title
    assert lines[1].startswith("15 ┤")  # the top of the y axis, and the limit
    assert any(line.startswith(" 5 ┤") for line in lines)
    assert any(line.startswith(" 0 └") for line in lines)
    x_labels = next(line for line in lines if "0s" in line).split()
    assert x_labels[0] == "0s" and x_labels[-1] == "10s"
    assert "━" in lines[1] and "┄" in text  # the limit lines are drawn
    assert BRAILLE.search(text)  # somebody waited
    assert all(cell_len(line) <= 72 for line in lines)


def test_the_chart_has_the_height_it_was_given() -> None:
    assert len(plot_rows(render(chart(load("bursts.json"), height=5)))) == 5
    assert len(plot_rows(render(chart(load("bursts.json"))))) == 8


def test_a_spike_in_a_long_run_is_not_lost() -> None:
    samples = [sample(0.5 * (i + 1), checked_out=2) for i in range(600)]
    samples[299]["waiting"] = 37
    samples[450]["checked_out"] = 12
    text = render(chart(with_timeline(samples, {"poolclass": "NullPool"})))

    assert "waiting (max 37)" in text and "checked out (max 12)" in text
    rows = plot_rows(text)
    assert text.splitlines()[1].startswith("37 ┤")
    axis = next(line for line in text.splitlines() if "└" in line)
    width = len(axis.split("└")[1])
    waiting_cols = [m.start() for m in BRAILLE.finditer(rows[0])]
    assert len(waiting_cols) == 1
    assert 0.4 < waiting_cols[0] / width < 0.6
    # the checked_out spike is the only column reaching above the baseline's row
    raised = {i for row in rows[:-1] for i, ch in enumerate(row) if ch in "▁▂▃▄▅▆▇█"}
    assert len(raised) == 1
    assert 0.7 < raised.pop() / width < 0.8
    x_labels = next(line for line in text.splitlines() if "0s" in line).split()
    assert x_labels[0] == "0s" and x_labels[-1] == "300s"


def test_one_sample() -> None:
    text = render(chart(with_timeline([sample(1.0, checked_out=3, waiting=1)])))

    assert "checked out (max 3)" in text and "waiting (max 1)" in text
    assert any(line.startswith(" 0 └") for line in text.splitlines())
    assert "█" in text


def test_all_zeros_without_a_pool_limit() -> None:
    samples = [sample(float(i + 1)) for i in range(20)]
    text = render(chart(with_timeline(samples, {"poolclass": "NullPool"})))

    assert "checked out (max 0)" in text and "waiting (max 0)" in text
    assert "pool_size" not in text
    rows = plot_rows(text)
    assert all(not row.strip() for row in rows)
    assert text.splitlines()[1].startswith("1 ┤")


def test_no_samples() -> None:
    assert "no samples to chart" in render(chart(with_timeline([])))


def markers_of(pool: dict[str, Any]) -> list[Any]:
    return pool_markers(PoolInfo.from_dict(pool))


def test_markers_follow_the_pool_settings() -> None:
    assert [m.value for m in markers_of({"poolclass": "QueuePool", "pool_size": 5})] == [5]
    assert [m.value for m in markers_of({"pool_size": 5, "max_overflow": 10})] == [5, 15]
    assert [m.value for m in markers_of({"pool_size": 5, "max_overflow": -1})] == [5]
    [only] = markers_of({"pool_size": 5, "max_overflow": 0})
    assert (only.value, only.label) == (5, "pool_size 5 (no overflow)")
    assert markers_of({"poolclass": "QueuePool", "pool_size": 0, "max_overflow": 10}) == []
    assert markers_of({"poolclass": "NullPool", "pool_size": 5}) == []
    assert pool_markers(None) == []


def test_column_maxima_keep_spikes_and_stretch_short_timelines() -> None:
    times = [float(i + 1) for i in range(100)]
    values = [0] * 100
    values[57] = 9
    folded = column_maxima(times, values, 10)
    assert folded == [0, 0, 0, 0, 0, 9, 0, 0, 0, 0]
    assert column_maxima([1.0, 2.0], [3, 7], 4) == [3, 3, 7, 7]
    assert column_maxima([2.0], [4], 3) == [4, 4, 4]


def test_colours_do_not_change_the_width() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system="truecolor")
    console.print(chart(load("rare-leak.json")))

    assert "\x1b[" in out.getvalue()
    lines = ANSI.sub("", out.getvalue()).splitlines()
    assert all(cell_len(line) <= 72 for line in lines)
    assert len(lines) == 1 + 8 + 2 + 2  # title, rows, axis and its labels, legend


def test_a_narrow_console_narrows_the_chart() -> None:
    text = render(chart(load("rare-leak.json")), width=40)

    assert all(cell_len(line) <= 40 for line in text.splitlines())
    assert "pool_size + max_overflow = 15" in text  # the legend wraps by entry


def test_a_comparison_charts_every_run_under_its_variant() -> None:
    document = {"schema_version": 1, "runs": [load("bursts.json"), load("bursts.json")]}
    document["runs"][0]["variant"] = {"pool_pre_ping": True}
    document["runs"][1]["variant"] = {"pool_pre_ping": False}
    before = copy.deepcopy(document)

    text = render(chart(document, height=4))

    assert "pre_ping=True" in text and "pre_ping=False" in text
    assert text.count("waiting (max 25)") == 2
    assert document == before


def test_a_burst_between_samples_is_drawn_from_the_peaks() -> None:
    # the 12-worker burst: every sample finds 0 checked out, the first interval peaked at 12
    samples = [sample(1.0), sample(2.0), sample(3.0)]
    samples[0].update(peak_checked_out=12, peak_waiting=3)
    for s in samples[1:]:
        s.update(peak_checked_out=0, peak_waiting=0)
    text = render(chart(with_timeline(samples)))

    assert "checked out at a sample (max 0)" in text
    assert "peak between samples (max 12)" in text and "waiting, peak (max 3)" in text
    rows = plot_rows(text)
    filled = {i for row in rows for i, ch in enumerate(row) if ch in "▁▂▃▄▅▆▇█"}
    axis = next(line for line in text.splitlines() if "└" in line)
    width = len(axis.split("└")[1])
    assert filled and max(filled) / width < 0.4  # the first third only
    assert BRAILLE.search("".join(rows))  # the waiting peak is traced too
