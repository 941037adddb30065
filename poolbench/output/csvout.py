"""Results as CSV, like Locust's ``--csv`` stats history: one file of samples, one of totals.

``write_csv(document, "out/run")`` writes two files (docs/results.md describes the keys):

``out/run_timeline.csv``
    One row per timeline sample. For a comparison (``{"runs": [...]}``) every run goes into
    the same file, after a leading ``variant`` column (:func:`variant_label`, e.g.
    ``pool_pre_ping=True, pool_size=10``), so one ``groupby("variant")`` or pivot compares
    them; a single run has no such column.
    Columns: ``[variant,] t_s, phase, checked_out, checked_in, overflow, waiting,
    operations, ok, timeouts, errors, checkout_wait_p99_ms, connects, invalidations,
    gc_returned, leaked_open, server_total``, then one ``server_<state>`` per server state
    seen anywhere in the document (``idle in transaction`` -> ``server_idle_in_transaction``;
    ``active``, ``idle``, ``idle in transaction`` first, the rest alphabetically).

``out/run_summary.csv``
    One row per run: the :data:`SUMMARY_COLUMNS`.

A figure that was not measured (``null`` in the JSON, or a key an older or newer schema
lacks) is an empty cell. A server state missing from a sample that has a server count is
``0``: the server counted none in that state. Booleans are ``true``/``false`` as in JSON.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import text

TIMELINE_COLUMNS = (
    "t_s",
    "phase",
    "checked_out",
    "checked_in",
    "overflow",
    "waiting",
    "operations",
    "ok",
    "timeouts",
    "errors",
    "checkout_wait_p99_ms",
    "connects",
    "invalidations",
    "gc_returned",
    "leaked_open",
)

ERROR_KINDS = ("timeout", "disconnect", "too_many_connections", "other")

SUMMARY_COLUMNS = (
    "run_id",
    "scenario",
    "variant",
    "operations",
    "ok",
    "throughput_ops_s",
    "timeouts",
    "first_timeout_at_s",
    *(f"errors_{kind}" for kind in ERROR_KINDS),
    "checkout_wait_p50_ms",
    "checkout_wait_p90_ms",
    "checkout_wait_p99_ms",
    "checkout_wait_max_ms",
    "hold_p50_ms",
    "hold_p99_ms",
    "max_checked_out",
    "max_overflow",
    "max_waiting",
    "max_server_connections",
    "leaked",
    "passed",
)

# The states PostgreSQL reports most, in the order a reader scans them; others follow sorted.
_KNOWN_STATES = ("active", "idle", "idle in transaction")


def runs_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a result document: itself for one run, ``runs`` for a comparison."""
    if "runs" in document:
        return list(document.get("runs") or [])
    return [document]


def variant_label(run: dict[str, Any]) -> str:
    """How the terminal names a run of a comparison (``""`` for a run that is no variant)."""
    return text.variant_label(run.get("variant_name"), run.get("variant"))


def state_column(state: str) -> str:
    """``idle in transaction (aborted)`` -> ``server_idle_in_transaction_aborted``."""
    return "server_" + (re.sub(r"[^0-9a-z]+", "_", state.lower()).strip("_") or "unknown")


def server_states(runs: Iterable[dict[str, Any]]) -> list[str]:
    """Every server state any sample of ``runs`` counted, known ones first."""
    seen: set[str] = set()
    for run in runs:
        for sample in run.get("timeline") or []:
            seen.update(k for k in (sample.get("server_connections") or {}) if k != "total")
    known = [s for s in _KNOWN_STATES if s in seen]
    return known + sorted(seen.difference(_KNOWN_STATES))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def timeline_rows(document: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of the timeline file."""
    runs = runs_of(document)
    comparison = "runs" in document
    states = server_states(runs)
    columns: dict[str, str] = {}
    for state in states:
        # two spellings of one state (e.g. "Idle" and "idle") share a column
        columns.setdefault(state_column(state), state)
    header = [
        *(["variant"] if comparison else []),
        *TIMELINE_COLUMNS,
        "server_total",
        *columns,
    ]
    rows = []
    for run in runs:
        label = variant_label(run)
        for sample in run.get("timeline") or []:
            server = sample.get("server_connections")
            if server is None:
                server_cells: list[Any] = [None] * (1 + len(columns))
            else:
                by_column: dict[str, int] = {}
                for state, count in server.items():
                    if state != "total":
                        key = state_column(state)
                        by_column[key] = by_column.get(key, 0) + (count or 0)
                server_cells = [server.get("total"), *(by_column.get(c, 0) for c in columns)]
            row = [sample.get(name) for name in TIMELINE_COLUMNS] + server_cells
            rows.append([_cell(v) for v in ([label] if comparison else []) + row])
    return header, rows


def summary_row(run: dict[str, Any]) -> list[Any]:
    """One run's line of the summary file, in :data:`SUMMARY_COLUMNS` order."""
    summary = run.get("summary") or {}
    errors = summary.get("errors") or {}
    wait = summary.get("checkout_wait_ms") or {}
    hold = summary.get("hold_ms") or {}
    values = {
        "run_id": run.get("run_id"),
        "scenario": (run.get("scenario") or {}).get("name"),
        "variant": variant_label(run),
        **{f"errors_{kind}": (errors.get(kind) or {}).get("count") for kind in ERROR_KINDS},
        **{f"checkout_wait_{p}_ms": wait.get(p) for p in ("p50", "p90", "p99", "max")},
        "hold_p50_ms": hold.get("p50"),
        "hold_p99_ms": hold.get("p99"),
    }
    return [_cell(values[c] if c in values else summary.get(c)) for c in SUMMARY_COLUMNS]


def _write(path: Path, header: list[str] | tuple[str, ...], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_csv(document: dict[str, Any], prefix: str | os.PathLike[str]) -> list[Path]:
    """Write ``<prefix>_timeline.csv`` and ``<prefix>_summary.csv``; return their paths.

    ``prefix`` may name a directory that does not exist yet (``results/nightly``).
    """
    base = os.fspath(prefix)
    timeline_path = Path(f"{base}_timeline.csv")
    summary_path = Path(f"{base}_summary.csv")
    header, rows = timeline_rows(document)
    _write(timeline_path, header, rows)
    _write(summary_path, SUMMARY_COLUMNS, [summary_row(run) for run in runs_of(document)])
    return [timeline_path, summary_path]


__all__ = ["SUMMARY_COLUMNS", "TIMELINE_COLUMNS", "runs_of", "variant_label", "write_csv"]
