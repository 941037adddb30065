"""A small chart of checked_out and waiting over time, for the end of a run in a terminal.

Drawn with our own characters rather than plotext: plotext keeps its figure in module
state and hands back ANSI text that rich would have to parse again, while this chart is a
plain rich renderable that fits the console it is printed to. ``checked_out`` is an area
(block characters, eight steps per row), ``waiting`` a braille line over it, and the pool's
limits are dashed lines. Each is drawn twice: the value at the sample, and (dimmer, behind
it) the interval's exact peak, so a burst that lived between two samples still shows. A
column stands for a slice of time and shows the maximum of the samples in it, so a
one-sample spike in a long run still reaches its full height.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.text import Text

from ..result import PoolInfo, RunResult
from ..result.document import ResultDocument

AREA_STYLE = "cyan"
PEAK_AREA_STYLE = "blue"
WAITING_STYLE = "bold bright_red"
PEAK_WAITING_STYLE = "red"
POOL_SIZE_STYLE = "yellow"
LIMIT_STYLE = "bold yellow"
AXIS_STYLE = "dim"

_BLOCKS = " ▁▂▃▄▅▆▇█"
_BRAILLE = 0x2800
# braille dot bits by (sub-column, sub-row counted from the top of the cell)
_DOTS = {
    (0, 0): 0x01,
    (0, 1): 0x02,
    (0, 2): 0x04,
    (0, 3): 0x40,
    (1, 0): 0x08,
    (1, 1): 0x10,
    (1, 2): 0x20,
    (1, 3): 0x80,
}
_MIN_PLOT_WIDTH = 8


@dataclass(frozen=True)
class Marker:
    """A horizontal line at a pool limit."""

    value: int
    label: str
    glyph: str
    style: str


def pool_markers(pool: PoolInfo | None) -> list[Marker]:
    """Lines at pool_size and at the pool's capacity; none where they mean nothing
    (NullPool, ``pool_size=0`` which QueuePool treats as unlimited, ``max_overflow=-1``)."""
    if pool is None or not pool.queued or not pool.pool_size or pool.pool_size <= 0:
        return []
    size = pool.pool_size
    if pool.max_overflow == 0:
        return [Marker(size, f"pool_size {size} (no overflow)", "━", LIMIT_STYLE)]
    markers = [Marker(size, f"pool_size {size}", "┄", POOL_SIZE_STYLE)]
    limit = pool.capacity
    if limit is not None and limit > size:
        markers.append(Marker(limit, f"pool_size + max_overflow = {limit}", "━", LIMIT_STYLE))
    return markers


def column_maxima(times: list[float], values: list[int], columns: int) -> list[int]:
    """``values`` (sampled at ``times``) folded into ``columns`` equal slices of time, each
    the maximum of its samples. A slice with no sample of its own shows the next sample,
    whose interval covers it, so a short timeline is stretched as steps."""
    end = max(times[-1], 1e-9)
    out = []
    for c in range(columns):
        low = 0 if c == 0 else bisect_right(times, c * end / columns)
        high = len(times) if c == columns - 1 else bisect_right(times, (c + 1) * end / columns)
        chunk = values[low:high] or [values[min(low, len(values) - 1)]]
        out.append(max(chunk))
    return out


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _seconds(t: float) -> str:
    return f"{round(t, 1):g}s"


class TimelineChart:
    """One run's chart; a rich renderable that narrows to the console if it must."""

    def __init__(self, run: RunResult, width: int = 72, height: int = 8) -> None:
        timeline = sorted(run.timeline, key=lambda s: s.t_s or 0.0)
        self.times = [float(s.t_s or 0.0) for s in timeline]
        self.checked_out = [int(s.checked_out or 0) for s in timeline]
        self.waiting = [int(s.waiting or 0) for s in timeline]
        # the interval's exact peaks (the instant value for results that lack them)
        self.peak_checked_out = [s.peak("checked_out") for s in timeline]
        self.peak_waiting = [s.peak("waiting") for s in timeline]
        self.markers = pool_markers(run.pool)
        self.width = width
        self.height = max(2, height)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(self.width, options.max_width), self.width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        yield from self.lines(min(self.width, options.max_width))

    def lines(self, width: int) -> list[Text]:
        if not self.times:
            return [Text("no samples to chart", style=AXIS_STYLE)]
        peak = max(
            max(self.peak_checked_out),
            max(self.peak_waiting),
            *(m.value for m in self.markers),
            1,
        )
        label_width = len(str(peak))
        plot_width = max(_MIN_PLOT_WIDTH, width - label_width - 2)
        return [
            Text(f"{'count':>{label_width}}", style=AXIS_STYLE, no_wrap=True),
            *self._plot(peak, label_width, plot_width),
            *self._x_axis(label_width, plot_width),
            *self._legend(width),
        ]

    def _height(self, value: int, peak: int) -> float:
        """Rows above the axis for ``value``: the peak reaches the middle of the top row,
        where its label and a limit line equal to it are drawn, so they line up."""
        return value / peak * (self.height - 0.5)

    def _plot(self, peak: int, label_width: int, plot_width: int) -> list[Text]:
        height = self.height
        area = self._area(self.checked_out, peak, plot_width)
        peak_area = self._area(self.peak_checked_out, peak, plot_width)
        dots = self._waiting_dots(self.waiting, peak, plot_width)
        peak_dots = self._waiting_dots(self.peak_waiting, peak, plot_width)
        marker_rows = {min(height - 1, int(self._height(m.value, peak))): m for m in self.markers}
        labels = {height - 1: str(peak)}
        for row, marker in marker_rows.items():
            labels.setdefault(row, str(marker.value))
        rows = []
        for row in range(height - 1, -1, -1):
            line = Text(no_wrap=True, overflow="crop")
            label = labels.get(row, "")
            line.append(f"{label:>{label_width}} {'┤' if label else '│'}", style=AXIS_STYLE)
            limit = marker_rows.get(row)
            for col in range(plot_width):
                fill = min(8, max(0, area[col] - row * 8))
                peak_fill = min(8, max(0, peak_area[col] - row * 8))
                bits = dots[row][col] or peak_dots[row][col]
                if bits:
                    wstyle = WAITING_STYLE if dots[row][col] else PEAK_WAITING_STYLE
                    style = f"{wstyle} on {AREA_STYLE}" if fill == 8 else wstyle
                    line.append(chr(_BRAILLE + bits), style=style)
                elif fill == 8 and limit is not None:
                    # the area passed the limit: keep the line visible through it
                    line.append(limit.glyph, style=f"{limit.style} on {AREA_STYLE}")
                elif fill:
                    line.append(_BLOCKS[fill], style=AREA_STYLE)
                elif peak_fill:
                    line.append(_BLOCKS[peak_fill], style=PEAK_AREA_STYLE)
                elif limit is not None:
                    line.append(limit.glyph, style=limit.style)
                else:
                    line.append(" ")
            rows.append(line)
        return rows

    def _area(self, values: list[int], peak: int, plot_width: int) -> list[int]:
        """Eighths of a row filled in each column."""
        return [
            max(1, round(self._height(v, peak) * 8)) if v else 0
            for v in column_maxima(self.times, values, plot_width)
        ]

    def _waiting_dots(self, values: list[int], peak: int, plot_width: int) -> list[list[int]]:
        """Braille bits per cell (row 0 at the bottom) tracing ``values`` as a line;
        nothing where nobody waits, with a drop or rise to the axis at either end."""
        height = self.height
        levels = [
            min(height * 4, max(1, int(self._height(v, peak) * 4) + 1)) if v else 0
            for v in column_maxima(self.times, values, plot_width)
        ]
        grid = [[0] * plot_width for _ in range(height)]

        def dot(col: int, side: int, level: int) -> None:
            sub = level - 1  # the dot for level 1 is the lowest of the bottom row
            grid[sub // 4][col] |= _DOTS[(side, 3 - sub % 4)]

        for col, level in enumerate(levels):
            if level:
                dot(col, 0, level)
                dot(col, 1, level)
            before = levels[col - 1] if col else 0
            if level > before:
                for lv in range(max(before, 1), level):
                    dot(col, 0, lv)
            elif before > level:
                for lv in range(max(level, 1), before):
                    dot(col - 1, 1, lv)
        return grid

    def _x_axis(self, label_width: int, plot_width: int) -> list[Text]:
        """The time axis: ``0s``, round steps, and the last sample's time at the right."""
        end = self.times[-1]
        ticks = [0.0]
        if end > 0:
            step = _nice_step(end, max(1, plot_width // 10))
            ticks += [i * step for i in range(1, math.ceil(end / step)) if i * step < end]
            ticks.append(end)
        axis = ["─"] * plot_width
        text = [" "] * plot_width
        spans: list[tuple[int, int]] = []
        # the two ends first, so the round ticks give way to them
        for t in [ticks[0], ticks[-1], *ticks[1:-1]]:
            label = _seconds(t)
            pos = round(t / end * (plot_width - 1)) if end > 0 else 0
            start = min(max(0, pos - len(label) // 2), plot_width - len(label))
            stop = start + len(label)
            if any(start <= b and a <= stop for a, b in spans):
                continue
            spans.append((start, stop))
            axis[pos] = "┬"
            text[start:stop] = label
        pad = " " * (label_width + 1)
        return [
            Text(f"{0:>{label_width}} └{''.join(axis)}", style=AXIS_STYLE, no_wrap=True),
            Text(f"{pad} {''.join(text)}", style=AXIS_STYLE, no_wrap=True, overflow="crop"),
        ]

    def _legend(self, width: int) -> list[Text]:
        """Series first, then the limits, packed into lines no wider than ``width``."""
        bursts = self.peak_checked_out != self.checked_out or self.peak_waiting != self.waiting
        at = " at a sample" if bursts else ""
        entries = [
            ("█", AREA_STYLE, f"checked out{at} (max {max(self.checked_out)})"),
            ("⠤⠤", WAITING_STYLE, f"waiting{at} (max {max(self.waiting)})"),
        ]
        if bursts:  # only when something happened between the samples
            entries += [
                ("█", PEAK_AREA_STYLE, f"peak between samples (max {max(self.peak_checked_out)})"),
                ("⠤⠤", PEAK_WAITING_STYLE, f"waiting, peak (max {max(self.peak_waiting)})"),
            ]
        series = len(entries)
        entries += [(m.glyph * 2, m.style, m.label) for m in self.markers]
        lines: list[Text] = []
        for i, (glyph, style, label) in enumerate(entries):
            entry = Text.assemble((glyph, style), f" {label}")
            # the limits start a line of their own
            fits = lines and lines[-1].cell_len + 3 + entry.cell_len <= width
            if i == series or not fits:
                lines.append(Text(no_wrap=True, overflow="fold"))
            else:
                lines[-1].append("   ")
            lines[-1].append_text(entry)
        return lines


def timeline_chart(
    document_or_run: ResultDocument | RunResult, width: int = 72, height: int = 8
) -> RenderableType:
    """The chart of one run, or of every run of a comparison one under another, each
    headed by its variant. ``width`` counts every column, axis labels included."""
    if isinstance(document_or_run, RunResult):
        return TimelineChart(document_or_run, width, height)
    runs = document_or_run.runs
    if not document_or_run.compared and len(runs) == 1:
        return TimelineChart(runs[0], width, height)
    parts: list[RenderableType] = []
    for run in runs:
        label = run.label(str(run.run_id or ""))
        if parts:
            parts.append(Text())
        parts.append(Text(label, style="bold", no_wrap=True, overflow="ellipsis"))
        parts.append(TimelineChart(run, width, height))
    return Group(*parts)


__all__ = ["TimelineChart", "column_maxima", "pool_markers", "timeline_chart"]
