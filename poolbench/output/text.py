"""Small formatting helpers shared by the terminal renderers."""

from __future__ import annotations

from ..result import RunHeader, Sample, Summary
from ..units import format_duration


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f}s"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def states_text(counts: dict[str, int] | None) -> str:
    """``15 (12 idle in transaction, 3 active)`` from a server count."""
    if counts is None:
        return "-"
    total = counts.get("total", 0)
    parts = [f"{n} {state}" for state, n in counts.items() if state != "total" and n]
    return f"{total} ({', '.join(parts)})" if parts else str(total)


def short_server(counts: dict[str, int] | None) -> str:
    """``15 a3 i10 t2``: total, active, idle, idle in transaction, for narrow columns."""
    if counts is None:
        return "-"
    letters = {"active": "a", "idle": "i", "idle in transaction": "t"}
    parts = [str(counts.get("total", 0))]
    for state, letter in letters.items():
        if counts.get(state):
            parts.append(f"{letter}{counts[state]}")
    other = sum(n for s, n in counts.items() if s not in letters and s != "total")
    if other:
        parts.append(f"o{other}")
    return " ".join(parts)


def load_line(header: RunHeader) -> str:
    """``closed loop, 10 workers over 2 processes; 97% well-behaved, 3% leaky; 30s``."""
    load = header.load
    groups = load.workload
    total = sum(g.share for g in groups)
    if len(groups) > 1:
        mix = ", ".join(f"{g.share / total:.0%} {g.label}" for g in groups)
    else:
        mix = groups[0].label + (" sessions" if not groups[0].task else "")
    if load.open_loop:
        model = f"open loop, {load.rate or 0:g}/s, at most {header.concurrency} concurrent"
    else:
        model = f"closed loop, {load.workers} workers"
    fleet = f" over {header.processes} processes" if header.processes > 1 else ""
    phases = f", {len(load.phases)} phases" if header.phased else ""
    return f"{model}{fleet}{phases}; {mix}; {format_duration(header.duration_s)}"


def capacity_text(capacity: int | None) -> str:
    return "unlimited" if capacity is None else str(capacity)


def plain_progress_line(sample: Sample, capacity: int | None) -> str:
    """One line per interval, as ``pgbench -P`` prints, for logs and non-terminals."""
    cap = "" if capacity is None else f"/{capacity}"
    p99 = ms(sample.checkout_wait_p99_ms)
    stale = f", stale {sample.stale}" if sample.stale else ""
    return (
        f"progress: {sample.t_s:.1f} s, checked_out {sample.checked_out}{cap}, "
        f"idle {sample.checked_in}, overflow {sample.overflow}, waiting {sample.waiting}, "
        f"{sample.operations} ops, {sample.timeouts} timeouts, {sample.errors} errors, "
        f"wait p99 {p99} ms, server {states_text(sample.server_connections)}{stale}"
    )


def skipped_line(summary: Summary) -> str | None:
    """Why the scenario's expectations were not checked, when they were not."""
    if not summary.skipped_expectations:
        return None
    n = len(summary.skipped_expectations)
    because = summary.expectations_skipped_because
    plural = "s" if n != 1 else ""
    verb = "does" if n == 1 else "do"
    return (
        f"{n} expectation{plural} not checked: {because}, and the scenario's expectations "
        f"describe it as written ({n} {verb} not hold on the changed one)"
    )
