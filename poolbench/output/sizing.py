"""The end of ``poolbench size`` in a terminal: predictions beside measurements, the
recommendation, and a create_engine() line to paste."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..result.sizing import SizingResult
from .text import ms


def _tiny(value: float | None) -> str:
    if value is None:
        return "-"
    return "< 1e-9" if value < 1e-9 else f"{value:.1e}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def sizing_table(result: SizingResult) -> Table:
    """Every candidate size: the model's prediction, and the measurement where one ran."""
    measured = {t.pool_size: t for t in result.trials if t.role == "steady"}
    table = Table(
        title=f"pool sizes at {result.declared_rate_per_s:g}/s"
        + (f" over {result.processes} processes (per process)" if result.processes > 1 else ""),
        title_justify="left",
        header_style="bold",
        box=None,
        caption="predicted: Erlang C (M/M/c) from the measured rate and mean hold · measured: "
        "a trial at that size · P(wait): share of checkouts that waited (> 1 ms measured)",
        caption_justify="left",
    )
    for name in (
        "c",
        "utilisation",
        "P(wait) pred",
        "p99 pred",
        "P(timeout) pred",
        "P(wait) meas",
        "p99 meas",
        "timeouts",
        "SLO",
    ):
        table.add_column(name, justify="right")
    for p in result.predictions:
        c = p.c
        t = measured.get(c)
        p99 = p.wait_p99_ms
        cells = ["", "", "", ""]
        verdict = "[green]model ✔[/]" if p.meets_slo else "[dim]model ✘[/]"
        if t is not None:
            m = t.measured
            cells = [_pct(m.wait_probability), ms(m.checkout_wait_p99_ms), str(m.timeouts)]
            verdict = "[bold green]✔ measured[/]" if t.slo_met else "[red]✘ measured[/]"
            cells.append(verdict)
        else:
            cells = ["", "", "", verdict]
        table.add_row(
            str(c),
            f"{p.utilisation:.0%}",
            _pct(p.wait_probability),
            "∞" if p99 is None else ms(p99),
            _tiny(p.timeout_probability),
            *cells,
        )
    return table


def render_sizing(console: Console, result: SizingResult) -> None:
    console.print()
    console.print(
        f"load: measured [bold]{result.rate_per_s:.1f}/s[/] "
        f"(asked {result.declared_rate_per_s:g}/s), "
        f"mean hold [bold]{result.mean_hold_ms:.2f} ms[/] (p99 {ms(result.hold_p99_ms)} ms): "
        f"offered load a = rate × hold = [bold]{result.offered_load:.2f}[/] connections"
        + (" per process" if result.processes > 1 else "")
    )
    console.print("SLO: " + ", ".join(f"{k} <= {v:g}" for k, v in result.slo.items()))
    console.print()
    console.print(sizing_table(result))
    for t in result.trials:
        if t.role == "peak":
            verdict = (
                "[green]meets the SLO[/]"
                if t.slo_met
                else ("[red]misses: " + escape("; ".join(t.failed)) + "[/]")
            )
            console.print(
                f"\npeak {t.rate_per_s:g}/s with pool_size={t.pool_size}, "
                f"max_overflow={t.max_overflow}: p99 {ms(t.measured.checkout_wait_p99_ms)} ms, "
                f"{t.measured.timeouts} timeouts, {t.measured.connects} connects — {verdict}"
            )
    r = result.recommendation
    console.print()
    if r is None:
        reason = result.no_recommendation or "nothing tried met the SLO"
        console.print(f"[bold red]no recommendation[/]: {escape(reason)}")
        return
    console.print(
        f"[bold]recommended[/]: pool_size={r.pool_size}, max_overflow={r.max_overflow}, "
        f"pool_timeout={r.pool_timeout_s:g}"
        + (f" in each of {r.processes} processes" if r.processes > 1 else "")
        + f" [dim](smallest meeting the SLO: {r.measured_minimum} measured, "
        f"{r.model_minimum} by the model)[/]"
    )
    if r.available_connections is not None:
        colour = "green" if r.fits_server else "red"
        console.print(
            f"fleet: {r.processes} × {r.capacity} = {r.fleet_connections} "
            f"connections at most; the server had [{colour}]{r.available_connections} free[/]"
        )
    for note in r.notes:
        console.print(f"[dim]→ {escape(note)}[/]")
    console.print()
    console.print(f"  [bold cyan]{escape(r.create_engine)}[/]")
