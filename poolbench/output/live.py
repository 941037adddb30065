"""While a run goes on: a rich live view in a terminal, one plain line per interval elsewhere.

Both are :class:`~poolbench.engine.runner.Observer` implementations; they only keep the
plain data the runner hands them (samples, progress), never engine objects.
"""

from __future__ import annotations

import threading

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..result import FaultEvent, Progress, RunHeader, Sample, settings_label
from ..result.observer import Observer
from ..units import format_duration
from .text import capacity_text, load_line, ms, plain_progress_line, secs, states_text

_SPARK = "▁▂▃▄▅▆▇█"


def fault_line(event: FaultEvent) -> str:
    if event.error:
        return f"fault at {event.t_s:.1f} s: {event.kind} {event.detail} failed: {event.error}"
    if event.kind == "kill":
        return f"fault at {event.t_s:.1f} s: killed {event.ended} {event.detail} on the server"
    return f"fault at {event.t_s:.1f} s: restarted the {event.detail}"


def limits_line(header: RunHeader) -> str:
    """The most connections this run may open, against what the server had free."""
    db = header.database
    if header.capacity is None and header.processes == 1:
        return ""
    if header.capacity is None:
        worst = "an unlimited number of connections"
    elif header.processes > 1:
        per = header.capacity // header.processes
        worst = f"{header.processes} × {per} = {header.capacity} connections"
    else:
        worst = f"{header.capacity} connections"
    text = f"this run may open up to {worst}"
    available = db.available_connections
    if available is not None:
        notes = []
        if db.reserved_connections and not db.superuser:
            notes.append(f"{db.reserved_connections} reserved for superusers")
        if db.connections_in_use is not None:
            notes.append(f"{db.connections_in_use} in use at start")
        detail = f" (max_connections {db.max_connections}: {', '.join(notes)})" if notes else ""
        colour = "bold red" if header.capacity is None or header.capacity > available else "green"
        text += f"; the server had [{colour}]{available} free[/]{escape(detail)}"
    return text


def header_lines(header: RunHeader) -> list[str]:
    db = header.database
    lines = [
        f"[bold]poolbench[/] · [bold cyan]{escape(header.scenario)}[/] · run {header.run_id}",
        f"database  {escape(db.url)} · {escape(db.dialect)} {escape(db.server_version)}"
        + f" · driver {escape(db.driver)}"
        + (" (AsyncEngine)" if db.engine == "async" else "")
        + (f" · max_connections {db.max_connections}" if db.max_connections else ""),
        f"pool      {escape(header.pool.create_engine)}"
        + (f" [dim]in each of {header.processes} processes[/]" if header.processes > 1 else ""),
        f"load      {escape(load_line(header))}",
    ]
    limits = limits_line(header)
    if limits:
        lines.append(f"limits    {limits}")
    if header.variant is not None:
        shown = settings_label(header.variant) or "as written"
        name = header.label(shown)
        detail = f" ({escape(shown)})" if name != shown else ""
        lines.append(f"variant   [bold]{escape(name)}[/]{detail}")
    return lines


class PlainProgress(Observer):
    """One line per sample, for CI logs (like ``pgbench -P``)."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._capacity: int | None = None

    def started(self, header: RunHeader) -> None:
        self._capacity = header.capacity
        for line in header_lines(header):
            self.console.print(line, highlight=False)

    def sampled(self, sample: Sample, progress: Progress) -> None:
        self.console.print(
            plain_progress_line(sample, self._capacity),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        if self.verbose and sample.pool_status:
            self.console.print(
                f"  pool.status(): {sample.pool_status}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def first_timeout(self, t_s: float, message: str) -> None:
        self.console.print(
            f"first TimeoutError at {t_s:.2f} s: {message}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def stopping(self, reason: str) -> None:
        self.console.print(f"stopping: {reason}", markup=False, highlight=False)

    def fault(self, event: FaultEvent) -> None:
        self.console.print(fault_line(event), markup=False, highlight=False, soft_wrap=True)


class LiveView(Observer):
    """A live panel: elapsed time, the pool right now, the server's count, the first timeout."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._lock = threading.Lock()
        self._header: RunHeader | None = None
        self._sample: Sample | None = None
        self._progress: Progress | None = None
        self._history: list[int] = []
        self._first_timeout: tuple[float, str] | None = None
        self._faults: list[str] = []
        self._status = ""
        self._live: Live | None = None

    def started(self, header: RunHeader) -> None:
        # one view may serve several runs (variants): start each from a clean slate
        self._header = header
        self._sample = self._progress = None
        self._history = []
        self._first_timeout = None
        self._faults = []
        self._status = ""
        for line in header_lines(header):
            self.console.print(line, highlight=False)
        self._live = Live(self._render(), console=self.console, auto_refresh=False, transient=True)
        self._live.start()

    def sampled(self, sample: Sample, progress: Progress) -> None:
        with self._lock:
            self._sample, self._progress = sample, progress
            self._history.append(sample.checked_out)
            if self.verbose and sample.pool_status:
                self.console.print(
                    f"[dim]{sample.t_s:7.1f}s pool.status(): {escape(sample.pool_status)}[/]"
                )
        self._refresh()

    def first_timeout(self, t_s: float, message: str) -> None:
        with self._lock:
            self._first_timeout = (t_s, message)
        self._refresh()

    def stopping(self, reason: str) -> None:
        with self._lock:
            self._status = reason
        self._refresh()

    def fault(self, event: FaultEvent) -> None:
        with self._lock:
            self._faults.append(fault_line(event))
        self._refresh()

    def finished(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _refresh(self) -> None:
        live = self._live
        if live is not None:
            live.update(self._render(), refresh=True)

    def _render(self) -> Group:
        with self._lock:
            return self._compose()

    def _compose(self) -> Group:
        header, sample, progress = self._header, self._sample, self._progress
        assert header is not None
        duration = header.duration_s
        elapsed = progress.elapsed_s if progress else 0.0
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=duration, completed=min(elapsed, duration), width=40),
            f"{elapsed:5.1f}s / {format_duration(duration)}",
            f"[dim]{escape(progress.phase) if progress else 'starting'}[/]",
        )
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="bold", min_width=12)
        rows.add_column()
        if sample is None:
            rows.add_row("pool", "[dim]waiting for the first sample…[/]")
        else:
            capacity = header.capacity
            limit = capacity if capacity is not None else max([*self._history, 1])
            gauge = ProgressBar(
                total=limit,
                completed=min(sample.checked_out, limit),
                width=30,
                complete_style="red" if capacity and sample.checked_out >= capacity else "green",
            )
            out = Table.grid(padding=(0, 1))
            out.add_row(
                gauge,
                f"{sample.checked_out} / {capacity_text(capacity)} checked out",
                f"[dim]{_spark(self._history[-30:], limit)}[/]",
            )
            rows.add_row("pool", out)
            waiting = f"[bold red]{sample.waiting}[/]" if sample.waiting else "0"
            stale = f" · [yellow]stale {sample.stale}[/]" if sample.stale else ""
            rows.add_row(
                "",
                f"idle {sample.checked_in} · overflow {sample.overflow} · "
                f"waiting {waiting} · connects {sample.connects} this interval{stale}",
            )
            rows.add_row(
                "server",
                escape(states_text(sample.server_connections)) + " [dim]connections of this run[/]",
            )
        if progress is not None:
            timeouts = f"[bold red]{progress.timeouts}[/]" if progress.timeouts else "0"
            rows.add_row(
                "requests",
                f"{progress.operations} done · {progress.ok} ok · {timeouts} timeouts · "
                f"{progress.errors - progress.timeouts} errors besides timeouts · "
                f"{progress.throughput_ops_s:.1f}/s",
            )
            if sample is not None:
                rows.add_row(
                    "", f"checkout wait p99 {ms(sample.checkout_wait_p99_ms)} ms this interval"
                )
            if progress.leaked:
                rows.add_row(
                    "leaks",
                    f"[yellow]{progress.leaked} sessions never closed[/], "
                    f"{progress.leaked_open} still holding a connection",
                )
        parts: list = [bar, rows]
        if self._first_timeout is not None:
            t_s, message = self._first_timeout
            parts.append(
                Text.assemble(
                    ("✖ first TimeoutError at ", "bold red"),
                    (secs(t_s), "bold red"),
                    ":\n  ",
                    (message, "red"),
                )
            )
        for line in self._faults[-3:]:
            parts.append(Text(line, style="magenta"))
        if self._status:
            parts.append(Text(self._status, style="dim"))
        return Group(*parts)


def _spark(values: list[int], top: int) -> str:
    if not values or top <= 0:
        return ""
    return "".join(_SPARK[min(len(_SPARK) - 1, int(v / top * (len(_SPARK) - 1)))] for v in values)
