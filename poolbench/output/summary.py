"""The end of a run in a terminal: the timeline table, the summary, the checks, the verdict.

Pure functions of a :class:`RunResult`; ``render_result`` prints them to a console.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..result import ERROR_KINDS, CheckResult, Percentiles, RunResult, Sample
from .diagnosis import diagnose
from .text import ms, secs, server_states, short_server

MAX_TIMELINE_ROWS = 30
TIMELINE_LEGEND = (
    "out checked out · ovf overflow · wait callers blocked in checkout · tmo timeouts · "
    "conn connects · gc returned by the garbage collector · stale held by the pool, "
    "already closed by the server · ping pre-ping recoveries · recyc recycles · "
    "server: total, a active, i idle, t idle in transaction"
)


@dataclass
class TimelineRow:
    """One or more consecutive samples folded together: gauges at their maximum,
    counters summed, so a long run still fits on a screen without hiding a spike."""

    t_s: float
    checked_out: int
    checked_in: int
    overflow: int
    waiting: int
    operations: int
    timeouts: int
    errors: int
    checkout_wait_p99_ms: float | None
    connects: int
    invalidations: int
    gc_returned: int
    stale: int | None
    recycles: int
    pre_ping_recoveries: int
    server_connections: dict[str, int] | None
    samples: int


def timeline_rows(timeline: list[Sample], max_rows: int = MAX_TIMELINE_ROWS) -> list[TimelineRow]:
    if not timeline:
        return []
    size = -(-len(timeline) // max_rows)
    rows = []
    for start in range(0, len(timeline), size):
        chunk = timeline[start : start + size]
        p99s = [s.checkout_wait_p99_ms for s in chunk if s.checkout_wait_p99_ms is not None]
        servers = [s.server_connections for s in chunk if s.server_connections is not None]
        rows.append(
            TimelineRow(
                t_s=chunk[-1].t_s,
                checked_out=max(s.checked_out for s in chunk),
                checked_in=max(s.checked_in for s in chunk),
                overflow=max(s.overflow for s in chunk),
                waiting=max(s.waiting for s in chunk),
                operations=sum(s.operations for s in chunk),
                timeouts=sum(s.timeouts for s in chunk),
                errors=sum(s.errors for s in chunk),
                checkout_wait_p99_ms=max(p99s) if p99s else None,
                connects=sum(s.connects for s in chunk),
                invalidations=sum(s.invalidations for s in chunk),
                gc_returned=sum(s.gc_returned for s in chunk),
                stale=max((s.stale for s in chunk if s.stale is not None), default=None),
                recycles=sum(s.recycles or 0 for s in chunk),
                pre_ping_recoveries=sum(s.pre_ping_recoveries or 0 for s in chunk),
                server_connections=max(servers, key=lambda c: c.get("total", 0))
                if servers
                else None,
                samples=len(chunk),
            )
        )
    return rows


def timeline_table(result: RunResult) -> Table:
    rows = timeline_rows(result.timeline)
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
        caption=TIMELINE_LEGEND,
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
            str(r.checked_out),
            str(r.checked_in),
            str(r.overflow),
            f"[red]{r.waiting}[/]" if r.waiting else "0",
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
    table.add_row("checkout wait", _pct(s.checkout_wait_ms))
    table.add_row("hold", _pct(s.hold_ms))
    if s.timeouts:
        table.add_row(
            "[red]timeouts[/]",
            f"[red]{s.timeouts}[/], the first at {secs(s.first_timeout_at_s)}:\n"
            f"[red]{escape(s.first_timeout_message or '')}[/]",
        )
    else:
        table.add_row("timeouts", "0")
    for kind in ERROR_KINDS:
        stats = s.errors[kind]
        if kind == "timeout" or not stats.count:
            continue
        lines = [
            f"{e.code + ' ' if e.code else ''}{escape(e.message)} ×{e.count}"
            for e in stats.examples
        ]
        table.add_row(f"[red]{kind}[/]", f"{stats.count}: " + "\n".join(lines))
    capacity = s.worst_case_connections
    if capacity is None and result.pool.get("poolclass") == "QueuePool":  # older results
        size, overflow = result.pool.get("pool_size", 0), result.pool.get("max_overflow", 0)
        capacity = size + overflow if size and overflow >= 0 else None
    table.add_row(
        "pool",
        f"max checked out {s.max_checked_out}"
        + (f" / {capacity}" if capacity else "")
        + f" · max overflow {s.max_overflow} · max waiting {s.max_waiting}"
        + (f" · [yellow]max stale {s.max_stale}[/]" if s.max_stale else ""),
    )
    ev = s.pool_events
    events = [f"{ev.connects} connects"]
    for name, value in (
        ("invalidations", ev.invalidations),
        ("recycles", ev.recycles),
        ("pre-ping recoveries", ev.pre_ping_recoveries),
        ("returned by the garbage collector", ev.gc_returned),
    ):
        if value:
            events.append(f"{value} {name}")
    table.add_row("pool events", " · ".join(events))
    if s.leaked:
        at = (
            f" ({s.leaked_at_first_timeout} before the first timeout)"
            if s.leaked_at_first_timeout is not None
            else ""
        )
        table.add_row("[yellow]leaks[/]", f"{s.leaked} sessions never closed{at}")
    server = f"max {s.max_server_connections}" if s.max_server_connections is not None else "-"
    if s.connection_headroom is not None and s.worst_case_connections is not None:
        colour = "red" if s.connection_headroom < 0 else "green"
        server += (
            f" · worst case {s.worst_case_connections}, "
            f"[{colour}]headroom {s.connection_headroom}[/]"
        )
    if result.database.max_connections:
        server += f" of max_connections {result.database.max_connections}"
    if s.server_connections_at_exit is not None:
        server += f" · at exit {s.server_connections_at_exit}"
        if s.terminated_at_exit:
            server += f" ({s.terminated_at_exit} ended server-side)"
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
    for site in s.leak_sites or []:
        still = f", {site.held_at_end} still out at the end" if site.held_at_end else ""
        table.add_row(
            "[yellow]leak suspect[/]",
            f"{escape(site.site)}: {site.count} checkouts held past leak_detection, "
            f"longest {site.longest_hold_s:.1f}s{still}",
        )
    if s.holders_at_first_timeout:
        lines = [
            f"{escape(h.site)} ×{h.count} (oldest {h.oldest_s:.1f}s)"
            for h in s.holders_at_first_timeout[:5]
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
            str(p.get("index")),
            str(p.get("pid")),
            str(p.get("operations")),
            str(p.get("ok")),
            str(p.get("timeouts")),
            str(p.get("too_many_connections")),
            str(p.get("max_checked_out")),
            str(p.get("max_waiting")),
            str(p.get("connects")),
            ms(p.get("checkout_wait_p99_ms")),
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
    for g in groups:
        table.add_row(
            escape(g.name),
            g.session,
            str(g.operations),
            str(g.ok),
            str(g.errors),
            str(g.leaked),
            ms(g.checkout_wait_ms.p99),
            ms(g.hold_ms.p50),
        )
    return table


def checks_table(checks: list[CheckResult]) -> Table | None:
    if not checks:
        return None
    table = Table(box=None, header_style="bold", title="checks", title_justify="left")
    for name in ("", "kind", "figure", "condition", "measured"):
        table.add_column(name)
    for c in checks:
        mark = "[green]✔[/]" if c.ok else "[bold red]✘[/]"
        value = (
            "not measured"
            if c.value is None
            else (f"{c.value:g}" if isinstance(c.value, float) else str(c.value))
        )
        if len(value) > 48:
            value = value[:47] + "…"
        table.add_row(mark, c.source, c.metric, escape(c.condition), escape(value))
    return table


def verdict(result: RunResult) -> str:
    s = result.summary
    failed = [c for c in s.thresholds + s.expectations if not c.ok]
    prefix = "[yellow]interrupted[/] · " if result.interrupted else ""
    if failed:
        names = ", ".join(f"{c.metric} {c.condition}" for c in failed)
        return f"{prefix}[bold red]FAILED[/]: {len(failed)} check(s) breached: {escape(names)}"
    if s.thresholds or s.expectations:
        return (
            f"{prefix}[bold green]PASSED[/]: all {len(s.thresholds) + len(s.expectations)} "
            "checks held"
        )
    return f"{prefix}done (no thresholds set)"


def render_result(console: Console, result: RunResult, show_timeline: bool = True) -> None:
    if show_timeline:
        console.print(timeline_table(result))
        console.print()
    console.print(summary_table(result))
    for extra in (groups_table(result), processes_table(result)):
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
    table = checks_table(result.summary.thresholds + result.summary.expectations)
    if table is not None:
        console.print()
        console.print(table)
    console.print()
    console.print(verdict(result))


__all__ = ["render_result", "server_states", "timeline_rows"]
