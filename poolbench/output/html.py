"""The HTML report: one self-contained page, charts included, that opens offline.

A pure function of the typed result document (poolbench/result/document.py): one run, or
the runs of ``--vary``, whose variants are shown side by side. The charting
library (uPlot, vendored in ``assets/``), the styles and the data are all inlined, and a
Content-Security-Policy lets the page run only its own scripts and fetch nothing, so the
file can be attached to a CI run and opened anywhere.

The page is assembled here; ``html_sections`` holds the markup helpers and the sections for
leak suspects, faults, stale connections and the table of variants.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Any

from ..result import (
    CheckResult,
    DistributionInfo,
    ErrorExample,
    ErrorKindStats,
    Percentiles,
    PhaseInfo,
    RunResult,
    Summary,
)
from ..result.document import ResultDocument
from ..units import format_duration
from . import html_sections as sections
from .html_sections import Doc, Html, dash, good_or_bad, kv, run_label, section, table
from .text import ms, secs, skipped_line

# Each chart kind: its title and caption here, its series in assets/report.js.
CHARTS = {
    "occupancy": (
        "Pool occupancy",
        "checked out, idle and overflow connections; callers waiting; dotted: the interval's "
        "exact peak, which catches a burst between two samples; stale: in the pool but "
        "already closed by the server",
    ),
    "wait": ("Checkout wait per interval", "how long the interval's requests waited to check out"),
    "requests": ("Requests per interval", "errors on the right axis; dots mark timeouts"),
    "server": ("Server connections by state", "the server's own count of this run's connections"),
}
KIND_NAMES = {"timeout": "TimeoutError", "too_many_connections": "too many connections"}
MARKER_COLOURS = {"timeout": "#cf222e", "disconnect": "#8250df", "too_many_connections": "#bf3989"}
TIMELINE_SERIES = (
    *("checked_out", "checked_in", "overflow", "waiting", "checkout_wait_p99_ms"),
    *("operations", "ok", "errors", "timeouts"),
)
OPTIONAL_SERIES = (  # not in every result
    *("checkout_wait_p50_ms", "disconnects", "stale"),
    *("peak_checked_out", "peak_waiting", "peak_overflow"),
)
DATABASE_KEYS = (
    *("url", "dialect", "driver", "server_version", "max_connections", "embedded"),
    "source",
)
GROUP_COLUMNS = (
    *("group", "share %", "session", "query or task", "hold", "think", "operations"),
    *("errors", "leaked", "wait p99 ms", "hold p99 ms"),
)


def render_html(document: ResultDocument) -> str:
    """The report for ``document`` (one run, or several compared) as one HTML page."""
    runs = document.runs
    names = ", ".join(dict.fromkeys(str(r.scenario.name or "?") for r in runs))
    if document.compared:
        passed = sum(1 for r in runs if r.summary.passed)
        title = f"{names}: {len(runs)} variants"
        note = Html(f'<span class="meta">{passed} of {len(runs)} variants passed</span>')
        body = [
            _header(
                runs[0] if runs else None, f"{names} — {len(runs)} variants compared", note, False
            )
        ]
        body += [sections.sizing(document), sections.comparison(runs)]
        body += [sections.leak_suspects(runs), _first_timeouts(runs)]
        body += [sections.faults(runs), _charts(runs)]
        body += [_details(run, i) for i, run in enumerate(runs)]
    else:
        (run,) = runs
        title = f"{names}: {_verdict(run)}"
        body = [_header(run, names, _badges(run), True), _cards(run)]
        body += [sections.nodes(run)]
        body += [sections.leak_suspects(runs), _first_timeouts(runs), sections.faults(runs)]
        body += [_charts(runs), *_run_sections(run)]
    data = {"runs": [chart_data(run) for run in runs]}
    return _page(title, "\n".join(b for b in body if b), data)


def chart_data(run: RunResult) -> Doc:
    """The timeline as columns for report.js, with its reference lines and markers."""
    samples = run.timeline
    pool = run.pool
    queue = pool.poolclass != "NullPool"
    timeout = pool.pool_timeout if queue else None
    series = {key: [getattr(s, key) for s in samples] for key in TIMELINE_SERIES}
    for key in OPTIONAL_SERIES:
        values = [getattr(s, key, None) for s in samples]
        if any(v is not None for v in values):
            series[key] = values
    counts = [s.server_connections for s in samples]
    states = run.server_states()
    errors = run.summary.errors
    markers = sections.fault_markers(run) + [
        {"t": errors[kind].first_at_s, "label": f"first {_kind(kind)}", "color": colour}
        for kind, colour in MARKER_COLOURS.items()
        if kind in errors and errors[kind].first_at_s is not None
    ]
    markers.sort(key=lambda m: m["t"])  # labels stack top to bottom in the order of events
    phases, start = [], 0.0
    for phase in run.load.phases:
        phases.append({"t": start, "name": str(phase.name or "")})
        start += phase.duration or 0.0
    return {
        "t": [s.t_s for s in samples],
        "series": series,
        "server": {state: [c.get(state, 0) if c else None for c in counts] for state in states},
        "server_states": states,
        "server_total": [c.get("total") if c else None for c in counts],
        "pool_size": pool.pool_size if queue else None,
        "capacity": pool.capacity,
        "pool_timeout_ms": timeout * 1000 if timeout else None,
        "markers": markers,
        "phases": phases if len(phases) > 1 else [],
    }


# ---- the sections of the page ------------------------------------------------------------


def _header(run: RunResult | None, heading: str, badges: str, single: bool) -> str:
    meta: list[Any] = []
    desc = None
    if run is not None:
        db = run.database
        meta = [db.url, db.server_version and f"server {db.server_version}"]
        if single:
            started = str(run.started_at or "").replace("T", " ").replace("+00:00", " UTC")
            measured = f"{secs(run.summary.duration_s)} measured"
            meta += [f"run {run.run_id}", f"started {started}", measured]
        desc = run.scenario.description
    spans = "".join(f"<span>{escape(str(m))}</span>" for m in meta if m)
    desc_html = f'<p class="desc">{escape(str(desc))}</p>' if desc else ""
    return (
        f'<header class="top"><div class="brand">poolbench report</div>'
        f'<h1>{escape(heading)} {badges}</h1><p class="meta">{spans}</p>{desc_html}</header>'
    )


def _badges(run: RunResult) -> Html:
    checks = _checks_of(run)
    held = sum(1 for c in checks if c.ok)
    verdict = _verdict(run)
    tone = "pass" if verdict == "passed" else "fail"
    html = f'<span class="badge {tone}">{verdict.upper()}</span>'
    html += f'<span class="meta">{held} of {len(checks)} checks held</span>'
    if run.interrupted:
        html += '<span class="badge warn">INTERRUPTED</span>'
    return Html(html)


def _cards(run: RunResult) -> str:
    s = run.summary
    wait, hold = s.latencies.checkout_wait_ms, s.latencies.hold_ms
    capacity = run.pool.capacity
    first, leaked_then = s.first_timeout_at_s, s.leaks.at_first_timeout
    others = [f"{e.count} {_kind(k)}" for k, e in _error_kinds(s) if k != "timeout"]
    at_exit = s.server.connections_at_exit
    server = f"most at once · {dash(at_exit)} at exit"
    out = f"{s.peaks.checked_out}" + (f" / {capacity}" if capacity is not None else "")
    rate = f"{s.throughput_ops_s or 0:g}/s · {s.ok} ok"
    busiest = f"overflow {s.peaks.overflow} · waiting {s.peaks.waiting}"
    timeouts = "none" if first is None else f"first at {secs(first)}"
    leaky = "warn" if s.leaks.sessions else ""
    cards = [  # (label, value, the line below it, tone)
        ("Operations", s.operations, rate, ""),
        ("Timeouts", s.timeouts, timeouts, "bad" if first is not None else "good"),
        ("Errors", _error_count(s), ", ".join([f"{s.timeouts} timeouts", *others]), ""),
        ("Checkout wait p99", f"{ms(wait.p99)} ms", _p50_max(wait), ""),
        ("Hold p99", f"{ms(hold.p99)} ms", _p50_max(hold), ""),
        ("Max checked out", out, busiest, ""),
        ("Leaked sessions", s.leaks.sessions, f"{dash(leaked_then)} at the first timeout", leaky),
        ("Server connections", s.peaks.server_connections, server, "bad" if at_exit else ""),
        *sections.newer_cards(s),
    ]
    html = "".join(
        f'<div class="card {tone}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(dash(value))}</div>'
        f'<div class="sub">{escape(sub)}</div></div>'
        for label, value, sub, tone in cards
    )
    return f'<div class="cards" id="summary">{html}</div>'


def _first_timeouts(runs: list[RunResult]) -> str:
    if len(runs) > 1 and all(r.summary.first_timeout_message is None for r in runs):
        none = "No TimeoutError in any variant: every checkout got a connection."
        return section(
            "First TimeoutError", Html(f'<p class="ok-text">{none}</p>'), "first-timeout"
        )
    parts = []
    for i, run in enumerate(runs):
        s = run.summary
        if len(runs) > 1:
            parts.append(f"<h3>{escape(run_label(run, i))}</h3>")
        if s.first_timeout_message is None:
            parts.append('<p class="ok-text">No TimeoutError: every checkout got a connection.</p>')
            continue
        leaked = s.leaks.at_first_timeout
        held = f", with {leaked} leaked sessions holding connections" if leaked else ""
        when = f"At {secs(s.first_timeout_at_s)} into the run{held}."
        message = escape(s.first_timeout_message)
        html = f'<p>{escape(when)}</p><pre class="error">{message}</pre>'
        holders = sections.holders(s)
        parts.append(
            f'<div class="grid2"><div>{html}</div><div>{holders}</div></div>' if holders else html
        )
    return section("First TimeoutError", Html("".join(parts)), "first-timeout")


def _charts(runs: list[RunResult]) -> str:
    if not any(run.timeline for run in runs):
        return section("Over time", Html('<p class="muted">No samples were taken.</p>'), "charts")
    if len(runs) == 1:
        figures = "".join(_figure(runs[0], 0, kind, *text) for kind, text in CHARTS.items())
        return section("Over time", Html(f'<div class="charts">{figures}</div>'), "charts")
    # Up to three variants share a row; more wrap, two or three to a row, so none is cut off.
    wrap = "" if len(runs) <= 3 else " cols-2" if len(runs) == 4 else " cols-3"
    rows = []
    for kind, (title, caption) in CHARTS.items():
        figures = "".join(
            _figure(run, i, kind, run_label(run, i), "") for i, run in enumerate(runs)
        )
        rows.append(f'<h3>{escape(title)}</h3><p class="muted">{escape(caption)}</p>')
        rows.append(f'<div class="chart-row{wrap}">{figures}</div>')
    return section("Over time, side by side", Html("".join(rows)), "charts")


def _figure(run: RunResult, index: int, kind: str, title: str, caption: str) -> str:
    note = f"<p>{escape(caption)}</p>" if caption else ""
    head = f"<figcaption><h3>{escape(title)}</h3>{note}</figcaption>"
    missing = ""
    if not run.timeline:
        missing = "No samples."
    elif kind == "server" and not any(s.server_connections for s in run.timeline):
        missing = "The server could not be asked for its connections during this run."
    if missing:
        return f'<figure>{head}<div class="chart-missing">{missing}</div></figure>'
    return f'<figure>{head}<div class="chart" data-run="{index}" data-kind="{kind}"></div></figure>'


def _details(run: RunResult, index: int) -> str:
    label = f"{run_label(run, index)} — {_verdict(run)}, run {run.run_id}"
    inner = "".join(_run_sections(run, f"-{index + 1}"))
    return f"<details><summary>{escape(label)}</summary><div>{inner}</div></details>"


def _run_sections(run: RunResult, suffix: str = "") -> list[str]:
    return [
        section("Thresholds and expectations", _checks(run), "checks" + suffix),
        section("Errors and pool events", _errors(run), "errors" + suffix),
        section("Effective settings", _settings(run), "settings" + suffix),
        section("Workload groups", _groups(run), "groups" + suffix),
        *([section("HTTP endpoints", _http(run), "http" + suffix)] if run.summary.http else []),
    ]


def _checks(run: RunResult) -> Html:
    rows = []
    for c in _checks_of(run):
        result = good_or_bad(c.ok, "held", "breached")
        rows.append([c.metric, c.condition, c.value, result, c.source])
    for c in run.summary.skipped_expectations:
        rows.append(
            [c.metric, c.condition, c.value, Html('<span class="muted">skipped</span>'), c.source]
        )
    if not rows:
        return Html('<p class="muted">No thresholds or expectations were set.</p>')
    html = table(["metric", "condition", "value", "result", "from"], rows)
    why = skipped_line(run.summary)
    if why:
        html += f'<p class="muted">{escape(why)}</p>'
    return Html(html)


def _errors(run: RunResult) -> Html:
    s = run.summary
    rows = [
        [_kind(kind), ex.code, ex.count, secs(ex.first_at_s), _message(ex)]
        for kind, e in s.errors.items()
        for ex in e.examples
    ]
    head = ["kind", "code", "count", "first at", "message"]
    html = table(head, rows) if rows else '<p class="ok-text">No errors.</p>'
    warnings = [[w.code, w.count, secs(w.first_at_s), _message(w)] for w in s.sqlalchemy_warnings]
    if warnings:
        html += "<h3>SQLAlchemy warnings</h3>" + table(head[1:], warnings)
    counts: list[tuple[str, Any]] = list(s.pool_events.to_dict().items())
    counts += [
        ("injected_errors", s.injected_errors),
        ("dropped_arrivals", s.dropped_arrivals),
        ("late_arrivals", s.late_arrivals),
        ("terminated_at_exit", s.server.terminated_at_exit),
    ]
    if s.measured_faults:  # older results lack these rather than measured none
        counts += [
            ("max_stale", s.peaks.stale),
            ("keepalive_pings", s.keepalive_pings),
            ("keepalive_errors", s.keepalive_errors),
        ]
    half = (len(counts) + 1) // 2
    html += '<h3>Pool events and other counts</h3><div class="grid2">'
    html += f"{kv(counts[:half])}{kv(counts[half:])}</div>"
    if run.notes:
        items = "".join(f"<li>{escape(str(n))}</li>" for n in run.notes)
        html += f'<h3>Notes</h3><ul class="notes">{items}</ul>'
    return Html(html)


def _settings(run: RunResult) -> Html:
    db, pool, load = run.database, run.pool, run.load
    pool_rows = [("create_engine", Html(f"<code>{escape(str(pool.create_engine))}</code>"))]
    for key, value in pool.to_dict().items():
        if key in ("pool_timeout", "pool_recycle") and isinstance(value, (int, float)):
            value = "-1 (never)" if value < 0 else format_duration(value)
        if key != "create_engine":
            pool_rows.append((key, value))
    load_rows: list[tuple[str, Any]] = [
        (k, getattr(load, k))
        for k in ("model", "workers", "max_concurrency")
        if getattr(load, k) is not None
    ]
    if load.rate is not None:
        load_rows.insert(1, ("rate", f"{load.rate:g}/s"))
    load_rows += [("interval", secs(run.interval_s)), ("variant", run.changed or None)]
    phases = [[p.name, format_duration(p.duration or 0.0), _phase_load(p)] for p in load.phases]
    return Html(
        f'<div class="grid2"><div><h3>Pool</h3>{kv(pool_rows)}</div>'
        f"<div><h3>Database</h3>{kv([(k, getattr(db, k)) for k in DATABASE_KEYS])}"
        f"<h3>Load</h3>{kv(load_rows)}</div></div>"
        + (f"<h3>Phases</h3>{table(['phase', 'duration', 'load'], phases)}" if phases else "")
    )


def _groups(run: RunResult) -> Html:
    configured = {g.name: g for g in run.load.workload}
    rows = []
    for g in run.summary.groups:
        c = configured.get(g.name)
        # a group running your own code (task) never runs its query
        run_what = (f"{c.task} (api: {c.api})" if c.task else c.query) if c else ""
        query = Html(f"<code>{escape(str(run_what))}</code>")
        setup = [g.name, c.share if c else None, g.session, query, _dist(c.hold if c else None)]
        results = [g.operations, g.errors, g.leaked, ms(g.checkout_wait_ms.p99)]
        rows.append([*setup, _dist(c.think if c else None), *results, ms(g.hold_ms.p99)])
    return Html(table(GROUP_COLUMNS, rows, numeric_from=6))


def _http(run: RunResult) -> Html:
    """Each endpoint's statuses, the 5xx the pool's TimeoutError caused (seen at the
    pool), its HTTP latency beside its checkout wait."""
    waits = {g.name: g.checkout_wait_ms for g in run.summary.groups}
    rows = []
    for e in run.summary.http:
        wait = waits.get(e.name)
        statuses = ", ".join(f"{status} ×{n}" for status, n in e.statuses.items())
        rows.append(
            [
                e.name,
                statuses,
                e.requests,
                e.pool_timeouts,
                ms(e.latency_ms.p50),
                ms(e.latency_ms.p99),
                ms(wait.p99) if wait is not None else None,
            ]
        )
    head = [
        "endpoint",
        "statuses",
        "requests",
        "pool TimeoutErrors",
        "latency p50 ms",
        "latency p99 ms",
        "checkout wait p99 ms",
    ]
    return Html(table(head, rows, numeric_from=2))


# ---- helpers ---------------------------------------------------------------------------


def _verdict(run: RunResult) -> str:
    return "passed" if run.summary.passed else "failed"


def _checks_of(run: RunResult) -> list[CheckResult]:
    return run.summary.thresholds + run.summary.expectations


def _error_kinds(summary: Summary) -> list[tuple[str, ErrorKindStats]]:
    """The kinds of error that happened, as (kind, stats)."""
    return [(k, e) for k, e in summary.errors.items() if e and e.count]


def _error_count(summary: Summary) -> int:
    return sum(e.count for _, e in _error_kinds(summary))


def _kind(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def _p50_max(p: Percentiles) -> str:
    return f"p50 {ms(p.p50)} · max {ms(p.max)} ms"


def _dist(dist: DistributionInfo | None) -> str:
    if not dist:
        return "–"
    if dist.kind == "uniform":
        return f"uniform {format_duration(dist.low)}..{format_duration(dist.high)}"
    mean = format_duration(dist.mean or 0.0)
    return f"exponential, mean {mean}" if dist.kind == "exponential" else mean


def _phase_load(phase: PhaseInfo) -> str:
    if phase.workers is not None:
        return f"{phase.workers} workers"
    return f"{phase.rate or 0:g}/s"


def _message(example: ErrorExample) -> Html:
    return Html(f'<div class="msg">{escape(str(example.message))}</div>')


# ---- the page --------------------------------------------------------------------------


@cache
def _asset(name: str) -> str:
    return resources.files("poolbench.output").joinpath("assets").joinpath(name).read_text("utf-8")


def _script_json(data: Doc) -> str:
    """JSON that cannot end its <script> element early: no raw <, > or & anywhere."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _page(title: str, body: str, data: Doc) -> str:
    # The licence travels with the library's code; the banner alone would not carry it.
    uplot = f"/*! uPlot — {_asset('uPlot.LICENSE')} */\n{_asset('uPlot.iife.min.js')}"
    report = _asset("report.js")
    style = _asset("uPlot.min.css") + "\n" + _asset("report.css")
    # Only these exact scripts and this style may run, and nothing may be fetched.
    csp = (
        f"default-src 'none'; script-src {_sha256(uplot)} {_sha256(report)}; "
        f"style-src {_sha256(style)}; img-src data:; base-uri 'none'; form-action 'none'"
    )
    return Template(_asset("report.html")).substitute(
        csp=csp,
        title=escape(title),
        style=style,
        body=body,
        data=_script_json(data),
        uplot=uplot,
        report=report,
    )
