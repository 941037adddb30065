"""The HTML report: one self-contained page, charts included, that opens offline.

A pure function of the document ``--json`` writes (docs/results.md): one run, or
``{"runs": [...]}`` from ``--vary``, whose variants are shown side by side. The charting
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

from ..scenario.model import settings_label
from ..units import format_duration
from . import html_sections as sections
from .html_sections import Doc, Html, dash, good_or_bad, kv, run_label, section, summary_of, table
from .text import ms, secs

# Each chart kind: its title and caption here, its series in assets/report.js.
CHARTS = {
    "occupancy": (
        "Pool occupancy",
        "checked out, idle and overflow connections; callers waiting; stale: in the pool but "
        "already closed by the server",
    ),
    "wait": ("Checkout wait per interval", "how long the interval's requests waited to check out"),
    "requests": ("Requests per interval", "errors on the right axis; dots mark timeouts"),
    "server": ("Server connections by state", "the server's own count of this run's connections"),
}
SERVER_STATE_ORDER = ("active", "idle in transaction", "idle")
KIND_NAMES = {"timeout": "TimeoutError", "too_many_connections": "too many connections"}
MARKER_COLOURS = {"timeout": "#cf222e", "disconnect": "#8250df", "too_many_connections": "#bf3989"}
TIMELINE_SERIES = ("checked_out", "checked_in", "overflow", "waiting", "checkout_wait_p99_ms")
TIMELINE_SERIES += ("operations", "ok", "errors", "timeouts")
OPTIONAL_SERIES = ("checkout_wait_p50_ms", "disconnects", "stale")  # not in every result
DATABASE_KEYS = ("url", "dialect", "driver", "server_version", "max_connections", "embedded")
DATABASE_KEYS += ("source",)
GROUP_COLUMNS = ("group", "share %", "session", "query or task", "hold", "think", "operations")
GROUP_COLUMNS += ("errors", "leaked", "wait p99 ms", "hold p99 ms")


def render_html(document: Doc) -> str:
    """The report for ``document`` (one run, or ``{"runs": [...]}``) as one HTML page."""
    runs: list[Doc] = list(document["runs"]) if "runs" in document else [document]
    names = ", ".join(dict.fromkeys(str(_get(r, "scenario", "name") or "?") for r in runs))
    if "runs" in document:
        passed = sum(1 for r in runs if summary_of(r).get("passed"))
        title = f"{names}: {len(runs)} variants"
        note = Html(f'<span class="meta">{passed} of {len(runs)} variants passed</span>')
        body = [
            _header(
                runs[0] if runs else {}, f"{names} — {len(runs)} variants compared", note, False
            )
        ]
        body += [sections.sizing(document), sections.comparison(runs)]
        body += [sections.leak_suspects(runs), _first_timeouts(runs)]
        body += [sections.faults(runs), _charts(runs)]
        body += [_details(run, i) for i, run in enumerate(runs)]
    else:
        title = f"{names}: {_verdict(document)}"
        body = [_header(document, names, _badges(document), True), _cards(document)]
        body += [sections.leak_suspects(runs), _first_timeouts(runs), sections.faults(runs)]
        body += [_charts(runs), *_run_sections(document)]
    data = {"runs": [chart_data(run) for run in runs]}
    return _page(title, "\n".join(b for b in body if b), data)


def chart_data(run: Doc) -> Doc:
    """The timeline as columns for report.js, with its reference lines and markers."""
    samples = run.get("timeline") or []
    pool = run.get("pool") or {}
    queue = pool.get("poolclass", "QueuePool") != "NullPool"
    timeout = pool.get("pool_timeout") if queue else None
    series = {key: [s.get(key) for s in samples] for key in TIMELINE_SERIES}
    for key in OPTIONAL_SERIES:
        if any(s.get(key) is not None for s in samples):
            series[key] = [s.get(key) for s in samples]
    counts = [s.get("server_connections") for s in samples]
    seen = {state for c in counts if c for state in c if state != "total"}
    states = [s for s in SERVER_STATE_ORDER if s in seen] + sorted(seen - set(SERVER_STATE_ORDER))
    errors = summary_of(run).get("errors") or {}
    markers = sections.fault_markers(run) + [
        {"t": errors[kind]["first_at_s"], "label": f"first {_kind(kind)}", "color": colour}
        for kind, colour in MARKER_COLOURS.items()
        if (errors.get(kind) or {}).get("first_at_s") is not None
    ]
    markers.sort(key=lambda m: m["t"])  # labels stack top to bottom in the order of events
    phases, start = [], 0.0
    for phase in _get(run, "load", "phases") or []:
        phases.append({"t": start, "name": str(phase.get("name") or "")})
        start += phase.get("duration") or 0.0
    return {
        "t": [s.get("t_s") for s in samples],
        "series": series,
        "server": {state: [c.get(state, 0) if c else None for c in counts] for state in states},
        "server_states": states,
        "server_total": [c.get("total") if c else None for c in counts],
        "pool_size": pool.get("pool_size") if queue else None,
        "capacity": _capacity(pool),
        "pool_timeout_ms": timeout * 1000 if timeout else None,
        "markers": markers,
        "phases": phases if len(phases) > 1 else [],
    }


# ---- the sections of the page ------------------------------------------------------------


def _header(run: Doc, heading: str, badges: str, single: bool) -> str:
    db = run.get("database") or {}
    meta = [db.get("url"), db.get("server_version") and f"server {db['server_version']}"]
    if single:
        started = str(run.get("started_at") or "").replace("T", " ").replace("+00:00", " UTC")
        measured = f"{secs(summary_of(run).get('duration_s'))} measured"
        meta += [f"run {run.get('run_id')}", f"started {started}", measured]
    spans = "".join(f"<span>{escape(str(m))}</span>" for m in meta if m)
    desc = _get(run, "scenario", "description")
    desc_html = f'<p class="desc">{escape(str(desc))}</p>' if desc else ""
    return (
        f'<header class="top"><div class="brand">poolbench report</div>'
        f'<h1>{escape(heading)} {badges}</h1><p class="meta">{spans}</p>{desc_html}</header>'
    )


def _badges(run: Doc) -> Html:
    checks = _checks_of(run)
    held = sum(1 for c in checks if c.get("ok"))
    verdict = _verdict(run)
    tone = "pass" if verdict == "passed" else "fail"
    html = f'<span class="badge {tone}">{verdict.upper()}</span>'
    html += f'<span class="meta">{held} of {len(checks)} checks held</span>'
    if run.get("interrupted"):
        html += '<span class="badge warn">INTERRUPTED</span>'
    return Html(html)


def _cards(run: Doc) -> str:
    s = summary_of(run)
    wait, hold = s.get("checkout_wait_ms") or {}, s.get("hold_ms") or {}
    capacity = _capacity(run.get("pool") or {})
    first, leaked_then = s.get("first_timeout_at_s"), s.get("leaked_at_first_timeout")
    others = [f"{e['count']} {_kind(k)}" for k, e in _error_kinds(s) if k != "timeout"]
    at_exit = s.get("server_connections_at_exit")
    server = f"most at once · {dash(at_exit)} at exit"
    out = f"{s.get('max_checked_out')}" + (f" / {capacity}" if capacity is not None else "")
    rate = f"{s.get('throughput_ops_s', 0):g}/s · {s.get('ok')} ok"
    busiest = f"overflow {s.get('max_overflow')} · waiting {s.get('max_waiting')}"
    timeouts = "none" if first is None else f"first at {secs(first)}"
    leaky = "warn" if s.get("leaked") else ""
    cards = [  # (label, value, the line below it, tone)
        ("Operations", s.get("operations"), rate, ""),
        ("Timeouts", s.get("timeouts"), timeouts, "bad" if first is not None else "good"),
        ("Errors", _error_count(s), ", ".join([f"{s.get('timeouts')} timeouts", *others]), ""),
        ("Checkout wait p99", f"{ms(wait.get('p99'))} ms", _p50_max(wait), ""),
        ("Hold p99", f"{ms(hold.get('p99'))} ms", _p50_max(hold), ""),
        ("Max checked out", out, busiest, ""),
        ("Leaked sessions", s.get("leaked"), f"{dash(leaked_then)} at the first timeout", leaky),
        ("Server connections", s.get("max_server_connections"), server, "bad" if at_exit else ""),
        *sections.newer_cards(s),
    ]
    html = "".join(
        f'<div class="card {tone}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(dash(value))}</div>'
        f'<div class="sub">{escape(sub)}</div></div>'
        for label, value, sub, tone in cards
    )
    return f'<div class="cards" id="summary">{html}</div>'


def _first_timeouts(runs: list[Doc]) -> str:
    if len(runs) > 1 and all(summary_of(r).get("first_timeout_message") is None for r in runs):
        none = "No TimeoutError in any variant: every checkout got a connection."
        return section(
            "First TimeoutError", Html(f'<p class="ok-text">{none}</p>'), "first-timeout"
        )
    parts = []
    for i, run in enumerate(runs):
        s = summary_of(run)
        if len(runs) > 1:
            parts.append(f"<h3>{escape(run_label(run, i))}</h3>")
        if s.get("first_timeout_message") is None:
            parts.append('<p class="ok-text">No TimeoutError: every checkout got a connection.</p>')
            continue
        leaked = s.get("leaked_at_first_timeout")
        held = f", with {leaked} leaked sessions holding connections" if leaked else ""
        when = f"At {secs(s.get('first_timeout_at_s'))} into the run{held}."
        message = escape(s["first_timeout_message"])
        html = f'<p>{escape(when)}</p><pre class="error">{message}</pre>'
        holders = sections.holders(s)
        parts.append(
            f'<div class="grid2"><div>{html}</div><div>{holders}</div></div>' if holders else html
        )
    return section("First TimeoutError", Html("".join(parts)), "first-timeout")


def _charts(runs: list[Doc]) -> str:
    if not any(run.get("timeline") for run in runs):
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


def _figure(run: Doc, index: int, kind: str, title: str, caption: str) -> str:
    note = f"<p>{escape(caption)}</p>" if caption else ""
    head = f"<figcaption><h3>{escape(title)}</h3>{note}</figcaption>"
    missing = ""
    if not run.get("timeline"):
        missing = "No samples."
    elif kind == "server" and not any(s.get("server_connections") for s in run["timeline"]):
        missing = "The server could not be asked for its connections during this run."
    if missing:
        return f'<figure>{head}<div class="chart-missing">{missing}</div></figure>'
    return f'<figure>{head}<div class="chart" data-run="{index}" data-kind="{kind}"></div></figure>'


def _details(run: Doc, index: int) -> str:
    label = f"{run_label(run, index)} — {_verdict(run)}, run {run.get('run_id')}"
    inner = "".join(_run_sections(run, f"-{index + 1}"))
    return f"<details><summary>{escape(label)}</summary><div>{inner}</div></details>"


def _run_sections(run: Doc, suffix: str = "") -> list[str]:
    return [
        section("Thresholds and expectations", _checks(run), "checks" + suffix),
        section("Errors and pool events", _errors(run), "errors" + suffix),
        section("Effective settings", _settings(run), "settings" + suffix),
        section("Workload groups", _groups(run), "groups" + suffix),
    ]


def _checks(run: Doc) -> Html:
    rows = []
    for c in _checks_of(run):
        result = good_or_bad(c.get("ok"), "held", "breached")
        rows.append([c.get("metric"), c.get("condition"), c.get("value"), result, c.get("source")])
    if not rows:
        return Html('<p class="muted">No thresholds or expectations were set.</p>')
    return Html(table(["metric", "condition", "value", "result", "from"], rows))


def _errors(run: Doc) -> Html:
    s = summary_of(run)
    rows = [
        [_kind(kind), ex.get("code"), ex.get("count"), secs(ex.get("first_at_s")), _message(ex)]
        for kind, e in (s.get("errors") or {}).items()
        for ex in e.get("examples") or []
    ]
    head = ["kind", "code", "count", "first at", "message"]
    html = table(head, rows) if rows else '<p class="ok-text">No errors.</p>'
    warnings = [
        [w.get("code"), w.get("count"), secs(w.get("first_at_s")), _message(w)]
        for w in s.get("sqlalchemy_warnings") or []
    ]
    if warnings:
        html += "<h3>SQLAlchemy warnings</h3>" + table(head[1:], warnings)
    counts = list((s.get("pool_events") or {}).items())
    counts += [(k, s.get(k)) for k in ("injected_errors", "dropped_arrivals", "late_arrivals")]
    counts += [("terminated_at_exit", s.get("terminated_at_exit"))]
    # keys older results lack stay out rather than show as not measured
    counts += [(k, s[k]) for k in ("max_stale", "keepalive_pings", "keepalive_errors") if k in s]
    half = (len(counts) + 1) // 2
    html += '<h3>Pool events and other counts</h3><div class="grid2">'
    html += f"{kv(counts[:half])}{kv(counts[half:])}</div>"
    if run.get("notes"):
        items = "".join(f"<li>{escape(str(n))}</li>" for n in run["notes"])
        html += f'<h3>Notes</h3><ul class="notes">{items}</ul>'
    return Html(html)


def _settings(run: Doc) -> Html:
    db, pool, load = (run.get(k) or {} for k in ("database", "pool", "load"))
    pool_rows = [("create_engine", Html(f"<code>{escape(str(pool.get('create_engine')))}</code>"))]
    for key, value in pool.items():
        if key in ("pool_timeout", "pool_recycle") and isinstance(value, (int, float)):
            value = "-1 (never)" if value < 0 else format_duration(value)
        if key != "create_engine":
            pool_rows.append((key, value))
    load_rows = [
        (k, load[k]) for k in ("model", "workers", "max_concurrency") if load.get(k) is not None
    ]
    if load.get("rate") is not None:
        load_rows.insert(1, ("rate", f"{load['rate']:g}/s"))
    variant = settings_label(run["variant"]) if run.get("variant") else None
    load_rows += [("interval", secs(run.get("interval_s"))), ("variant", variant)]
    phases = [
        [p.get("name"), format_duration(p.get("duration") or 0.0), _phase_load(p)]
        for p in load.get("phases") or []
    ]
    return Html(
        f'<div class="grid2"><div><h3>Pool</h3>{kv(pool_rows)}</div>'
        f"<div><h3>Database</h3>{kv([(k, db.get(k)) for k in DATABASE_KEYS])}"
        f"<h3>Load</h3>{kv(load_rows)}</div></div>"
        + (f"<h3>Phases</h3>{table(['phase', 'duration', 'load'], phases)}" if phases else "")
    )


def _groups(run: Doc) -> Html:
    configured = {g.get("name"): g for g in _get(run, "load", "workload") or []}
    rows = []
    for g in summary_of(run).get("groups") or []:
        c = configured.get(g.get("name")) or {}
        wait, hold = g.get("checkout_wait_ms") or {}, g.get("hold_ms") or {}
        # a group running your own code (task) never runs its query
        run_what = f"{c['task']} (api: {c.get('api')})" if c.get("task") else c.get("query", "")
        query = Html(f"<code>{escape(str(run_what))}</code>")
        setup = [g.get("name"), c.get("share"), g.get("session"), query, _dist(c.get("hold"))]
        results = [g.get("operations"), g.get("errors"), g.get("leaked"), ms(wait.get("p99"))]
        rows.append([*setup, _dist(c.get("think")), *results, ms(hold.get("p99"))])
    return Html(table(GROUP_COLUMNS, rows, numeric_from=6))


# ---- helpers ---------------------------------------------------------------------------


def _get(run: Doc, part: str, key: str) -> Any:
    return (run.get(part) or {}).get(key)


def _verdict(run: Doc) -> str:
    return "passed" if summary_of(run).get("passed") else "failed"


def _checks_of(run: Doc) -> list[Doc]:
    summary = summary_of(run)
    return list(summary.get("thresholds") or []) + list(summary.get("expectations") or [])


def _error_kinds(summary: Doc) -> list[tuple[str, Doc]]:
    """The kinds of error that happened, as (kind, stats)."""
    return [(k, e) for k, e in (summary.get("errors") or {}).items() if e and e.get("count")]


def _error_count(summary: Doc) -> int:
    return sum(e["count"] for _, e in _error_kinds(summary))


def _kind(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def _capacity(pool: Doc) -> int | None:
    """pool_size + max_overflow, the most connections a QueuePool holds; None if unbounded."""
    size, overflow = pool.get("pool_size"), pool.get("max_overflow")
    if pool.get("poolclass", "QueuePool") == "NullPool" or not size or overflow is None:
        return None
    return size + overflow if overflow >= 0 else None


def _p50_max(p: Doc) -> str:
    return f"p50 {ms(p.get('p50'))} · max {ms(p.get('max'))} ms"


def _dist(dist: Doc | None) -> str:
    if not dist:
        return "–"
    if dist.get("kind") == "uniform":
        return f"uniform {format_duration(dist['low'])}..{format_duration(dist['high'])}"
    mean = format_duration(dist.get("mean") or 0.0)
    return f"exponential, mean {mean}" if dist.get("kind") == "exponential" else mean


def _phase_load(phase: Doc) -> str:
    if phase.get("workers") is not None:
        return f"{phase['workers']} workers"
    return f"{phase.get('rate') or 0:g}/s"


def _message(example: Doc) -> Html:
    return Html(f'<div class="msg">{escape(str(example.get("message")))}</div>')


# ---- the page --------------------------------------------------------------------------


@cache
def _asset(name: str) -> str:
    return resources.files("poolbench.output").joinpath("assets", name).read_text("utf-8")


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
