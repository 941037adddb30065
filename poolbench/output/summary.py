"""The end of a run in a terminal: the timeline table, the summary, the checks, the verdict.

Pure functions of a :class:`RunResult`; ``render_result`` prints them to a console.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import checks
from ..result import ERROR_KINDS, CheckResult, Percentiles, RunResult
from .diagnosis import diagnose
from .text import ms, secs, short_server, skipped_line, states_text

MAX_TIMELINE_ROWS = 30
# what each timeline column means; the legend names only the columns a table shows
TIMELINE_MEANINGS = {
    "out": "checked out",
    "idle": "checked in",
    "ovf": "overflow",
    "wait": "callers blocked in checkout",
    "ops": "requests done",
    "tmo": "timeouts",
    "err": "other errors",
    "conn": "connects",
    "inval": "connections invalidated",
    "gc": "returned by the garbage collector",
    "stale": "held by the pool, already closed by the server",
    "ping": "pre-ping recoveries",
    "recyc": "recycles",
    "server a/i/t": "server: total, a active, i idle, t idle in transaction",
}


def legend(names: list[str], meanings: dict[str, str]) -> str:
    """``name meaning · ...`` for the columns shown, in their order."""
    return " · ".join(
        meanings[n] if n.startswith("server") else f"{n} {meanings[n]}"
        for n in names
        if n in meanings
    )


def timeline_table(result: RunResult) -> Table:
    rows = result.timeline_rows(MAX_TIMELINE_ROWS)
    show_gc = any(r.gc_returned for r in rows)
    show_stale = any(r.stale for r in rows)
    show_ping = any(r.pre_ping_recoveries for r in rows)
    show_recycle = any(r.recycles for r in rows)
    folded = rows and rows[0].samples > 1
    title = "timeline"
    if folded:
        title += (
            f" (each row folds {rows[0].samples} samples: gauges at their max, counts summed;"
            " the JSON has every sample)"
        )
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=None,
        pad_edge=False,
        caption_justify="left",
    )
    names = [
        "t",
        "out",
        "idle",
        "ovf",
        "wait",
        "ops",
        "tmo",
        "err",
        "p99 wait ms",
        "conn",
        "inval",
        "server a/i/t",
    ]
    if show_gc:
        names.insert(-1, "gc")
    if show_stale:
        names.insert(-1, "stale")
    if show_ping:
        names.insert(-1, "ping")
    if show_recycle:
        names.insert(-1, "recyc")
    table.caption = legend(names, TIMELINE_MEANINGS).replace(
        "callers blocked in checkout",
        "callers blocked in checkout (↑ the exact peak between the samples, when higher)",
    )
    for name in names:
        table.add_column(name, justify="right" if name != "server a/i/t" else "left")
    for r in rows:
        gc_cell = [str(r.gc_returned)] if show_gc else []
        if show_stale:
            gc_cell.append(f"[yellow]{r.stale}[/]" if r.stale else "0" if r.stale == 0 else "-")
        if show_ping:
            gc_cell.append(str(r.pre_ping_recoveries))
        if show_recycle:
            gc_cell.append(str(r.recycles))
        table.add_row(
            f"{r.t_s:.1f}",
            _with_peak(r.checked_out, r.peak_checked_out),
            str(r.checked_in),
            _with_peak(r.overflow, r.peak_overflow),
            _with_peak(r.waiting, r.peak_waiting, "red"),
            str(r.operations),
            f"[red]{r.timeouts}[/]" if r.timeouts else "0",
            f"[red]{r.errors}[/]" if r.errors else "0",
            ms(r.checkout_wait_p99_ms),
            str(r.connects),
            str(r.invalidations),
            *gc_cell,
            short_server(r.server_connections),
        )
    return table


def _with_peak(instant: int, peak: int, style: str = "") -> str:
    """``instant``, and ``↑peak`` when the interval went higher between the samples."""
    text = str(instant) + (f" [dim]↑{peak}[/]" if peak > instant else "")
    return f"[{style}]{text}[/]" if style and (instant or peak) else text


def _pct(p: Percentiles) -> str:
    if not p.count:
        return "-"
    return f"p50 {ms(p.p50)} · p90 {ms(p.p90)} · p99 {ms(p.p99)} · max {ms(p.max)} ms"


def summary_table(result: RunResult) -> Table:
    s = result.summary
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", min_width=16)
    table.add_column()
    table.add_row(
        "requests",
        f"{s.operations} in {s.duration_s:.1f}s ({s.throughput_ops_s:.1f}/s) · {s.ok} ok · "
        f"{s.error_count} errors"
        + (f" · {s.injected_errors} injected" if s.injected_errors else ""),
    )
    lat = s.latencies
    queued = (
        f" · {lat.wait_probability:.1%} blocked in the queue"
        if lat.wait_probability is not None and lat.checkout_wait_ms.count
        else ""
    )
    table.add_row("checkout wait", _pct(lat.checkout_wait_ms) + queued)
    table.add_row("hold", _pct(s.latencies.hold_ms))
    if s.client is not None and s.client.saturated:
        table.add_row(
            "[red]client[/]",
            f"[red]saturated[/]: {s.client.cpu_cores:.2f} cores busy, holds "
            f"{s.client.hold_inflation:.1f}× the scenario's (try --processes)",
        )
    if s.timeouts:
        table.add_row(
            "[red]timeouts[/]",
            f"[red]{s.timeouts}[/], the first at {secs(s.first_timeout_at_s)}:\n"
            f"[red]{escape(s.first_timeout_message or '')}[/]",
        )
    else:
        table.add_row("timeouts", "0")
    for kind in ERROR_KINDS:
        stats = s.kind(kind)
        if kind == "timeout" or not stats.count:
            continue
        lines = [
            f"{e.code + ' ' if e.code else ''}{escape(e.message)} ×{e.count}"
            for e in stats.examples
        ]
        table.add_row(f"[red]{kind}[/]", f"{stats.count}: " + "\n".join(lines))
    capacity = result.capacity
    table.add_row(
        "pool",
        f"max checked out {s.peaks.checked_out}"
        + (f" / {capacity}" if capacity else "")
        + f" · max overflow {s.peaks.overflow} · max waiting {s.peaks.waiting}"
        + (f" · [yellow]max stale {s.peaks.stale}[/]" if s.peaks.stale else ""),
    )
    ev = s.pool_events
    events = [f"{ev.connects} connects"]
    if lat.connect_ms is not None and lat.connect_ms.count:
        events[0] += f" (p50 {ms(lat.connect_ms.p50)} · max {ms(lat.connect_ms.max)} ms each)"
    for name, value in (
        ("invalidations", ev.invalidations),
        ("recycles", ev.recycles),
        ("pre-ping recoveries", ev.pre_ping_recoveries),
        ("returned by the garbage collector", ev.gc_returned),
    ):
        if value:
            events.append(f"{value} {name}")
    table.add_row("pool events", " · ".join(events))
    if s.leaks.sessions:
        at = (
            f" ({s.leaks.at_first_timeout} before the first timeout)"
            if s.leaks.at_first_timeout is not None
            else ""
        )
        table.add_row("[yellow]leaks[/]", f"{s.leaks.sessions} sessions never closed{at}")
    server = f"max {s.peaks.server_connections}" if s.peaks.server_connections is not None else "-"
    if s.server.headroom is not None and s.server.worst_case is not None:
        colour = "red" if s.server.headroom < 0 else "green"
        server += f" · worst case {s.server.worst_case}, [{colour}]headroom {s.server.headroom}[/]"
    if result.database.max_connections:
        server += f" of max_connections {result.database.max_connections}"
    if s.server.connections_at_exit is not None:
        server += f" · at exit {s.server.connections_at_exit}"
        if s.server.terminated_at_exit:
            server += f" ({s.server.terminated_at_exit} ended server-side)"
    table.add_row("server", server)
    for f in result.faults:
        what = f"{f.kind} {f.detail}"
        outcome = (
            f"error: {f.error}"
            if f.error
            else (f"{f.ended} ended" if f.ended is not None else "done")
        )
        table.add_row("[magenta]fault[/]", f"at {f.t_s:.1f}s: {escape(what)} ({escape(outcome)})")
    if s.dropped_arrivals or s.late_arrivals:
        table.add_row("arrivals", f"{s.dropped_arrivals} dropped · {s.late_arrivals} late")
    for site in s.leaks.sites or []:
        still = f", {site.held_at_end} still out at the end" if site.held_at_end else ""
        text = (
            f"{escape(site.site)}: {site.count} checkouts held past leak_detection, "
            f"longest {site.longest_hold_s:.1f}s{still}"
        )
        if site.below:
            text += f"\n  via {escape(site.below[-1])}"
        if site.created and site.created != site.site:
            text += f"\n  session created at {escape(site.created)}"
        table.add_row("[yellow]leak suspect[/]", text)
    if s.leaks.holders_at_first_timeout:
        lines = [
            f"{escape(h.site)} ×{h.count} (oldest {h.oldest_s:.1f}s)"
            for h in s.leaks.holders_at_first_timeout[:5]
        ]
        table.add_row("holders at the\nfirst timeout", "\n".join(lines))
    if s.keepalive_pings:
        table.add_row("keep-alive", f"{s.keepalive_pings} pings, {s.keepalive_errors} failed")
    for w in s.sqlalchemy_warnings:
        table.add_row("[dim]sqlalchemy said[/]", f"[dim]{escape(w.message)} ×{w.count}[/]")
    return table


def processes_table(result: RunResult) -> Table | None:
    """A fleet's processes one by one: each had its own pool."""
    if len(result.processes) < 2:
        return None
    table = Table(
        title="processes (each with its own pool)",
        title_justify="left",
        box=None,
        header_style="bold",
    )
    for name in (
        "#",
        "pid",
        "requests",
        "ok",
        "timeouts",
        "refused",
        "max out",
        "max wait",
        "connects",
        "wait p99 ms",
    ):
        table.add_column(name, justify="right")
    for p in result.processes:
        table.add_row(
            str(p.index),
            str(p.pid),
            str(p.operations),
            str(p.ok),
            str(p.timeouts),
            str(p.too_many_connections),
            str(p.max_checked_out),
            str(p.max_waiting),
            str(p.connects),
            ms(p.checkout_wait_p99_ms),
        )
    return table


def groups_table(result: RunResult) -> Table | None:
    groups = result.summary.groups
    if len(groups) < 2:
        return None
    table = Table(title="workload groups", title_justify="left", box=None, header_style="bold")
    for name in (
        "group",
        "session",
        "requests",
        "ok",
        "errors",
        "leaked",
        "wait p99 ms",
        "hold p50 ms",
    ):
        table.add_column(name, justify="left" if name in ("group", "session") else "right")
    all_failed = set(checks.failed_groups(result.summary))
    for g in groups:
        table.add_row(
            escape(g.name),
            g.session,
            str(g.operations),
            str(g.ok),
            f"[bold red]{g.errors} (all failed)[/]" if g.name in all_failed else str(g.errors),
            str(g.leaked),
            ms(g.checkout_wait_ms.p99),
            ms(g.hold_ms.p50),
        )
    return table


def http_table(result: RunResult) -> Table | None:
    """App mode over HTTP: each endpoint's responses, the 5xx the pool's TimeoutError
    caused (seen at the pool), its HTTP latency beside its checkout wait at the pool."""
    endpoints = result.summary.http
    if not endpoints:
        return None
    table = Table(title="HTTP endpoints", title_justify="left", box=None, header_style="bold")
    for name in (
        "endpoint",
        "requests",
        "statuses",
        "pool TimeoutErrors",
        "latency p50 ms",
        "latency p99 ms",
        "checkout wait p99 ms",
    ):
        table.add_column(name, justify="left" if name in ("endpoint", "statuses") else "right")
    waits = {g.name: g.checkout_wait_ms for g in result.summary.groups}
    for e in endpoints:
        wait = waits.get(e.name)
        table.add_row(
            escape(e.name),
            str(e.requests),
            escape(", ".join(f"{status} ×{n}" for status, n in e.statuses.items())),
            f"[bold red]{e.pool_timeouts}[/]" if e.pool_timeouts else "0",
            ms(e.latency_ms.p50),
            ms(e.latency_ms.p99),
            ms(wait.p99) if wait is not None else "-",
        )
    return table


def checks_table(
    checks: list[CheckResult], skipped: list[CheckResult] | None = None
) -> Table | None:
    """The checks and how each went; ``skipped`` expectations (measured, not checked)
    are listed after them, marked ``skipped``."""
    skipped = skipped or []
    if not checks and not skipped:
        return None
    table = Table(box=None, header_style="bold", title="checks", title_justify="left")
    for name in ("", "kind", "figure", "condition", "measured"):
        table.add_column(name)
    rows = [(c, "[green]✔[/]" if c.ok else "[bold red]✘[/]", c.source) for c in checks]
    rows += [(c, "[dim]–[/]", "skipped") for c in skipped]
    for c, mark, kind in rows:
        value = (
            "not measured"
            if c.value is None
            else (f"{c.value:g}" if isinstance(c.value, float) else str(c.value))
        )
        if len(value) > 48:
            value = value[:47] + "…"
        table.add_row(mark, kind, c.metric, escape(c.condition), escape(value))
    return table


def verdict(result: RunResult) -> str:
    s = result.summary
    failed = [c for c in s.thresholds + s.expectations if not c.ok]
    prefix = "[yellow]interrupted[/] · " if result.interrupted else ""
    skipped = skipped_line(s)
    after = f"\n[dim]{escape(skipped)}[/]" if skipped else ""
    if failed:
        names = ", ".join(f"{c.metric} {c.condition}" for c in failed)
        line = f"{prefix}[bold red]FAILED[/]: {len(failed)} check(s) breached: {escape(names)}"
        work = checks.failure_line(s)
        return (f"{line}\n{escape(work)}" if work else line) + after
    if s.thresholds or s.expectations:
        return (
            f"{prefix}[bold green]PASSED[/]: all {len(s.thresholds) + len(s.expectations)} "
            "checks held" + after
        )
    return f"{prefix}done (no thresholds set)" + after


def render_result(console: Console, result: RunResult, show_timeline: bool = True) -> None:
    if show_timeline:
        console.print(timeline_table(result))
        console.print()
    console.print(summary_table(result))
    for extra in (groups_table(result), http_table(result), processes_table(result)):
        if extra is not None:
            console.print()
            console.print(extra)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    hints = diagnose(result)
    if hints:
        console.print()
        for hint in hints:
            console.print(f"[bold]→[/] {escape(hint)}")
    table = checks_table(
        result.summary.thresholds + result.summary.expectations,
        result.summary.skipped_expectations,
    )
    if table is not None:
        console.print()
        console.print(table)
    console.print()
    console.print(verdict(result))


__all__ = ["render_result", "states_text"]
