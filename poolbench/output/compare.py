"""Variants side by side: what each fix prevented, and what it cost.

``comparison_rows`` is the data (the HTML report and tests use it too); ``comparison_table``
draws it for the terminal. Costs are read against the first variant, the baseline:
pre-ping's extra round trip shows as a higher mean checkout wait, recycling's as extra
connects.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from ..result import RunResult
from .text import ms


def comparison_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    rows = []
    base = results[0].summary if results else None
    for result in results:
        s = result.summary
        ev = s.pool_events
        wait_mean, wait_p50 = s.latencies.checkout_wait_ms.mean, s.latencies.checkout_wait_ms.p50
        delta = delta_p50 = None
        if (
            base is not None
            and wait_mean is not None
            and base.latencies.checkout_wait_ms.mean is not None
        ):
            delta = round(wait_mean - base.latencies.checkout_wait_ms.mean, 3)
        if (
            base is not None
            and wait_p50 is not None
            and base.latencies.checkout_wait_ms.p50 is not None
        ):
            # a per-checkout cost such as pre-ping's round trip shifts the median
            delta_p50 = round(wait_p50 - base.latencies.checkout_wait_ms.p50, 3)
        per_k = round(ev.connects * 1000 / s.operations, 1) if s.operations else None
        rows.append(
            {
                "variant": result.label("as written"),
                "operations": s.operations,
                "throughput_ops_s": s.throughput_ops_s,
                "timeouts": s.timeouts,
                "disconnects": s.errors["disconnect"].count,
                "too_many_connections": s.errors["too_many_connections"].count,
                "other_errors": s.errors["other"].count,
                "pre_ping_recoveries": ev.pre_ping_recoveries,
                "reconnects": ev.reconnects,
                "recycles": ev.recycles,
                "max_stale": s.peaks.stale,
                "checkout_wait_p50_ms": s.latencies.checkout_wait_ms.p50,
                "checkout_wait_p99_ms": s.latencies.checkout_wait_ms.p99,
                "checkout_wait_mean_ms": wait_mean,
                "checkout_wait_mean_delta_ms": delta,
                "checkout_wait_p50_delta_ms": delta_p50,
                "connects": ev.connects,
                "connects_per_1000": per_k,
                "passed": s.passed,
                "interrupted": result.interrupted,
            }
        )
    return rows


# what each column means; the legend names only the columns the table shows
MEANINGS = {
    "tmo": "timeouts",
    "disc": "disconnects",
    "refused": "too many connections",
    "other": "other errors",
    "ping": "pre-ping recoveries",
    "reconn": "reconnects",
    "recycle": "recycles",
    "stale": "most connections the server had closed under the pool",
    "Δp50": "checkout wait median against the first variant (pre-ping's round trip)",
    "conn/1k": "connects per 1000 requests (recycling's cost)",
}


def comparison_table(results: list[RunResult]) -> Table:
    table = Table(
        title="variants side by side",
        title_justify="left",
        header_style="bold",
        box=None,
        caption_justify="left",
    )
    rows = comparison_rows(results)
    # error kinds nobody hit would only widen the table
    kinds = [
        ("timeouts", "tmo"),
        ("disconnects", "disc"),
        ("too_many_connections", "refused"),
        ("other_errors", "other"),
    ]
    shown = [
        (key, name)
        for key, name in kinds
        if key in ("timeouts", "disconnects") or any(r[key] for r in rows)
    ]
    table.add_column("variant", overflow="fold", min_width=12, max_width=30)
    columns = [
        "req/s",
        *(n for _, n in shown),
        "ping",
        "reconn",
        "recycle",
        "stale",
        "p50 ms",
        "p99 ms",
        "Δp50",
        "conn/1k",
    ]
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.caption = " · ".join(f"{n} {MEANINGS[n]}" for n in columns if n in MEANINGS)
    table.add_column("checks", no_wrap=True)
    for row in rows:
        cells = [f"[red]{row[k]}[/]" if row[k] else "0" for k, _ in shown]
        delta = row["checkout_wait_p50_delta_ms"]
        verdict = "[green]✔[/]" if row["passed"] else "[bold red]✘[/]"
        if row["interrupted"]:
            verdict += " [yellow]interrupted[/]"
        table.add_row(
            escape(row["variant"]),
            f"{row['throughput_ops_s']:.0f}",
            *cells,
            str(row["pre_ping_recoveries"]),
            str(row["reconnects"]),
            str(row["recycles"]),
            "-" if row["max_stale"] is None else str(row["max_stale"]),
            ms(row["checkout_wait_p50_ms"]),
            ms(row["checkout_wait_p99_ms"]),
            "-" if delta is None else f"{delta:+.2f}",
            "-" if row["connects_per_1000"] is None else f"{row['connects_per_1000']:g}",
            verdict,
        )
    return table
