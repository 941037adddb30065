"""Small formatting helpers shared by the terminal renderers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..result import Sample
from ..scenario.model import settings_label


def variant_label(name: str | None, settings: Mapping[str, Any] | None, otherwise: str = "") -> str:
    """How every output names a run of a comparison: the variant's name, else its settings
    (``pre_ping=True, recycle=1s``), else ``otherwise``."""
    if name:
        return str(name)
    if settings:
        return settings_label(dict(settings))
    return otherwise


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


def server_states(counts: dict[str, int] | None) -> str:
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
        f"wait p99 {p99} ms, server {server_states(sample.server_connections)}{stale}"
    )
