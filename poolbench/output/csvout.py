"""Results as CSV, like Locust's ``--csv`` stats history: one file of samples, one of totals.

``write_csv(document, "out/run")`` writes two files (docs/results.md describes the keys):

``out/run_timeline.csv``
    One row per timeline sample. For a comparison (``{"runs": [...]}``) every run goes into
    the same file, after a leading ``variant`` column (``RunResult.label()``, e.g.
    ``pre_ping=True, pool_size=10``), so one ``groupby("variant")`` or pivot compares
    them; a single run has no such column.
    Columns: ``[variant,] t_s, phase, checked_out, checked_in, overflow, waiting,
    operations, ok, timeouts, errors, checkout_wait_p99_ms, connects, invalidations,
    gc_returned, leaked_open, peak_checked_out, peak_waiting, peak_overflow,
    server_total``, then one ``server_<state>`` per server state seen anywhere in the
    document (``idle in transaction`` -> ``server_idle_in_transaction``;
    ``active``, ``idle in transaction``, ``idle`` first, as every output orders them, the
    rest alphabetically).

``out/run_summary.csv``
    One row per run: the :data:`SUMMARY_COLUMNS`.

A figure that was not measured (``null`` in the JSON, or a key an older or newer schema
lacks) is an empty cell. A server state missing from a sample that has a server count is
``0``: the server counted none in that state. Booleans are ``true``/``false`` as in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from ..result import ERROR_KINDS, ErrorKindStats, RunResult
from ..result.document import ResultDocument
from ..result.timeline import server_state_order
from .files import write_text

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
    "peak_checked_out",
    "peak_waiting",
    "peak_overflow",
)

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
    "max_connections_open",
    "max_server_connections",
    "leaked",
    "passed",
)


def state_column(state: str) -> str:
    """``idle in transaction (aborted)`` -> ``server_idle_in_transaction_aborted``."""
    return "server_" + (re.sub(r"[^0-9a-z]+", "_", state.lower()).strip("_") or "unknown")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def timeline_table(document: ResultDocument) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of the timeline file."""
    runs = document.runs
    comparison = document.compared
    # every state any run's server reported, in the order every output uses
    states = server_state_order(state for run in runs for state in run.server_states())
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
        label = run.label()
        for sample in run.timeline:
            server = sample.server_connections
            if server is None:
                server_cells: list[Any] = [None] * (1 + len(columns))
            else:
                by_column: dict[str, int] = {}
                for state, count in server.items():
                    if state != "total":
                        key = state_column(state)
                        by_column[key] = by_column.get(key, 0) + (count or 0)
                server_cells = [server.get("total"), *(by_column.get(c, 0) for c in columns)]
            row = [getattr(sample, name) for name in TIMELINE_COLUMNS] + server_cells
            rows.append([_cell(v) for v in ([label] if comparison else []) + row])
    return header, rows


def summary_row(run: RunResult) -> list[Any]:
    """One run's line of the summary file, in :data:`SUMMARY_COLUMNS` order."""
    s = run.summary
    wait, hold = s.latencies.checkout_wait_ms, s.latencies.hold_ms
    values = {
        "run_id": run.run_id,
        "scenario": run.scenario.name,
        "variant": run.label(),
        **{f"errors_{kind}": _count(s.errors.get(kind)) for kind in ERROR_KINDS},
        **{f"checkout_wait_{p}_ms": getattr(wait, p) for p in ("p50", "p90", "p99", "max")},
        "hold_p50_ms": hold.p50,
        "hold_p99_ms": hold.p99,
        # a document that measured nothing (no summary) has no verdict either
        "passed": s.passed if s.operations is not None else None,
    }
    flat = s.to_dict()  # the other columns are the summary's own JSON keys
    return [_cell(values[c] if c in values else flat.get(c)) for c in SUMMARY_COLUMNS]


def _count(kind: ErrorKindStats | None) -> int | None:
    return None if kind is None else kind.count


def _write(path: Path, header: list[str] | tuple[str, ...], rows: list[list[Any]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def csv_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The two files ``write_csv`` writes for ``prefix``: the timeline and the summary."""
    base = os.fspath(prefix)
    return Path(f"{base}_timeline.csv"), Path(f"{base}_summary.csv")


def write_csv(document: ResultDocument, prefix: str | os.PathLike[str]) -> list[Path]:
    """Write ``<prefix>_timeline.csv`` and ``<prefix>_summary.csv``; return their paths.

    ``prefix`` may name a directory that does not exist yet (``results/nightly``).
    """
    timeline_path, summary_path = csv_paths(prefix)
    header, rows = timeline_table(document)
    _write(timeline_path, header, rows)
    _write(summary_path, SUMMARY_COLUMNS, [summary_row(run) for run in document.runs])
    return [timeline_path, summary_path]


__all__ = ["SUMMARY_COLUMNS", "TIMELINE_COLUMNS", "csv_paths", "write_csv"]
