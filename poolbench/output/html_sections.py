"""Parts of the HTML report: the markup every section is built from, and the sections for
leak suspects, faults, stale connections and the table of variants.

``html.py`` assembles the page from these and its own sections. Everything here is a pure
function of the typed result (poolbench/result/) and escapes every string it is given:
only :class:`Html` passes through as markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from ..result import FaultEvent, LeakSite, RunResult, Summary
from ..result.document import ResultDocument
from .compare import comparison_rows
from .text import ms, secs

Doc = dict[str, Any]

FAULT_COLOURS = {"kill": "#bc4c00", "restart": "#0550ae"}


class Html(str):
    """Markup assembled here from escaped parts; any other string is escaped on output."""


# ---- the result ---------------------------------------------------------------------------


def run_label(run: RunResult, index: int) -> str:
    """What the terminal calls a variant: its name, else its settings, else its scenario."""
    return run.label(str(run.scenario.name or f"run {index + 1}"))


def fault_label(fault: FaultEvent) -> str:
    """``kill: 8 ended``, ``restart``, ``kill failed``: a fault's marker on the charts."""
    kind = str(fault.kind or "fault")
    if fault.error:
        return f"{kind} failed"
    return f"{kind}: {fault.ended} ended" if fault.ended is not None else kind


def fault_markers(run: RunResult) -> list[Doc]:
    """A vertical line on every chart where a fault struck, solid, unlike the first errors."""
    return [
        {
            "t": f.t_s,
            "label": fault_label(f),
            "color": FAULT_COLOURS.get(f.kind, "#57606a"),
            "line": "solid",
        }
        for f in run.faults
        if f.t_s is not None
    ]


def disconnects(summary: Summary) -> int | None:
    kind = summary.errors.get("disconnect")
    return kind.count if kind else None


# ---- the sections ------------------------------------------------------------------------


def newer_cards(summary: Summary) -> list[tuple[str, Any, str, str]]:
    """Cards for what newer results measure (label, value, sub, tone); none for older ones."""
    s = summary
    cards: list[tuple[str, Any, str, str]] = []
    if not s.measured_faults:
        return cards
    events = s.pool_events
    lost = disconnects(s)
    kind = s.errors.get("disconnect")
    first = kind.first_at_s if kind else None
    sub = "no request lost its connection" if not lost else f"the first at {secs(first)}"
    cards.append(("Disconnects", lost, sub, "bad" if lost else ""))
    pings, failed = s.keepalive_pings, s.keepalive_errors
    sub = "closed by the server, still in the pool"
    if pings:
        sub = f"most at once · keep-alive {pings} pings, {failed} failed"
    cards.append(("Stale connections", s.peaks.stale, sub, "warn" if s.peaks.stale else ""))
    sub = f"{events.pre_ping_recoveries} pre-ping recoveries · {events.recycles} recycles"
    cards.append(("Reconnects", events.reconnects, sub, ""))
    sites = s.leaks.sites
    count = sum(site.count or 0 for site in sites)
    held = sum(site.held_at_end or 0 for site in sites)
    sub = "checkouts held past leak_detection"
    if sites:
        where = "1 call site" if len(sites) == 1 else f"{len(sites)} call sites"
        sub = f"from {where} · {held} still out at the end"
    cards.append(("Leak suspects", count, sub, "bad" if count else ""))
    return cards


def leak_suspects(runs: list[RunResult]) -> str:
    """Where the connections held past ``leak_detection`` were checked out; "" when nowhere."""
    parts = []
    for i, run in enumerate(runs):
        sites = run.summary.leaks.sites
        if not sites:
            continue
        if len(runs) > 1:
            parts.append(f"<h3>{escape(run_label(run, i))}</h3>")
        rows = [
            [_site(site), site.count, secs(site.longest_hold_s), _flag(site.held_at_end)]
            for site in sites
        ]
        head = ["checked out at", "held too long", "longest hold", "still out at the end"]
        parts.append(table(head, rows, numeric_from=1))
    if not parts:
        return ""
    threshold = next(
        (r.scenario.leak_detection_s for r in runs if r.scenario.leak_detection_s), None
    )
    limit = f" ({secs(threshold)})" if threshold else ""
    intro = (
        "<p>Connections checked out at these call sites stayed out longer than the scenario's "
        f"<code>leak_detection</code> threshold{escape(limit)}: the code path that does not "
        "give its connection back. Open a site for its stack at checkout, innermost frame "
        "first.</p>"
    )
    return section("Leak suspects", Html(intro + "".join(parts)), "leak-suspects", "alert")


def holders(summary: Summary) -> str:
    """Who held the pool's connections when the first TimeoutError came; "" if unknown."""
    rows = [
        [Html(f'<code class="site">{escape(str(h.site))}</code>'), h.count, secs(h.oldest_s)]
        for h in summary.leaks.holders_at_first_timeout or []
    ]
    if not rows:
        return ""
    head = ["checked out at", "connections", "oldest held"]
    return "<h3>Who held the connections then</h3>" + table(head, rows, numeric_from=1)


def faults(runs: list[RunResult]) -> str:
    """What the scenario's faults did to the server, run by run; "" when it had none."""
    several = len(runs) > 1
    rows = []
    for i, run in enumerate(runs):
        for f in run.faults:
            error = Html(f'<span class="bad">{escape(str(f.error))}</span>') if f.error else ""
            row = [secs(f.t_s), f.kind, f.detail, f.ended, error]
            rows.append([run_label(run, i), *row] if several else row)
    if not rows:
        return ""
    head = ["at", "fault", "what", "connections ended", "error"]
    note = (
        '<p class="muted">Each fault is a solid vertical line on the charts. "connections ended": '
        "connections of this run the server ended.</p>"
    )
    html = table(["variant", *head] if several else head, rows) + note
    return section("Faults", Html(html), "faults")


@dataclass(frozen=True)
class Column:
    """A column of the table of variants: its figure from a ``comparison_rows()`` row and the
    run's summary, and what it means. A column no run measured (older results) is left out,
    and so is one every run has at 0 unless ``zero_too``."""

    name: str
    figure: Callable[[Doc, Summary], Any]
    zero_too: bool = True
    meaning: str = ""


COMPARED = (
    Column("req/s", lambda r, s: f"{r['throughput_ops_s']:.1f}"),
    Column("timeouts", lambda r, s: _bad(r["timeouts"])),
    Column("disconnects", lambda r, s: _bad(r["disconnects"])),
    Column("refused", lambda r, s: _bad(r["too_many_connections"]), False,
           "connections the server refused (too many connections)"),
    Column("other errors", lambda r, s: _bad(r["other_errors"]), False),
    Column("pre-ping recoveries", lambda r, s: r["pre_ping_recoveries"], True,
           "checkouts whose ping found a dead connection and reconnected"),
    Column("reconnects", lambda r, s: r["reconnects"], True,
           "a pool slot connecting again after an invalidation or a recycle"),
    Column("recycles", lambda r, s: r["recycles"]),
    Column("keep-alive pings", lambda r, s: s.keepalive_pings, False),
    Column("max stale", lambda r, s: r["max_stale"], True,
           "most connections the pool held that the server had already closed"),
    Column("wait p50 ms", lambda r, s: ms(r["checkout_wait_p50_ms"]), True,
           "median time to get a connection from the pool"),
    Column("wait p99 ms", lambda r, s: ms(r["checkout_wait_p99_ms"]), True,
           "its 99th percentile"),
    Column("Δp50 ms", lambda r, s: _signed(r["checkout_wait_p50_delta_ms"]), True,
           "the median checkout wait against the first variant's (pre-ping's round trip)"),
    Column("conn/1k", lambda r, s: r["connects_per_1000"], True,
           "connects per 1000 requests (recycling's cost)"),
    Column("max out", lambda r, s: s.peaks.checked_out, True,
           "most connections checked out at once"),
    Column("leaked", lambda r, s: s.leaks.sessions, False, "sessions never closed"),
    Column("at exit", lambda r, s: _bad(s.server.connections_at_exit), True,
           "this run's connections the server still showed at exit"),
)  # fmt: skip


def comparison(runs: list[RunResult]) -> str:
    """The variants side by side, with the figures the terminal's comparison shows."""
    rows = comparison_rows(runs)
    summaries = [run.summary for run in runs]
    cells = {
        c.name: [c.figure(r, s) for r, s in zip(rows, summaries, strict=True)] for c in COMPARED
    }
    shown = [
        c
        for c in COMPARED
        if any(v is not None and v != "-" for v in cells[c.name])
        and (c.zero_too or any(v not in (0, "0", None) for v in cells[c.name]))
    ]
    body = [
        [_variant(run, i), good_or_bad(run.summary.passed, "passed", "failed")]
        + [cells[c.name][i] for c in shown]
        for i, run in enumerate(runs)
    ]
    head = ["variant", "result", *(c.name for c in shown)]
    html = table(head, body, numeric_from=2, css="compact wrap-head")
    legend = "; ".join(f"<b>{escape(c.name)}</b>: {escape(c.meaning)}" for c in shown if c.meaning)
    return section("Variants", Html(f'{html}<p class="muted">{legend}.</p>'), "comparison")


def _variant(run: RunResult, index: int) -> Html:
    """The variant's name and, below it, the settings it changes (each run's own section
    below has every effective setting)."""
    html = f"<strong>{escape(run_label(run, index))}</strong>"
    changed = run.changed
    if changed and changed != run_label(run, index):
        html += f'<code class="variant-settings">{escape(changed)}</code>'
    return Html(html)


def _site(site: LeakSite) -> Html:
    stack = site.stack
    frames = "".join(f"<li><code>{escape(str(frame))}</code></li>" for frame in stack)
    count = "1 frame" if len(stack) == 1 else f"{len(stack)} frames"
    details = (
        f'<details class="stack"><summary>stack at checkout ({count}, innermost first)</summary>'
        f"<ol>{frames}</ol></details>"
        if stack
        else ""
    )
    below = "".join(f"<li><code>{escape(str(frame))}</code></li>" for frame in site.below)
    if below:
        details += (
            f'<details class="stack"><summary>library frames below it ({len(site.below)}, '
            f"innermost first)</summary><ol>{below}</ol></details>"
        )
    if site.created and site.created != site.site:
        details += f"<div>session created at <code>{escape(site.created)}</code></div>"
    return Html(f'<code class="site">{escape(str(site.site))}</code>{details}')


def _bad(value: Any) -> Any:
    """A count that should be zero, in red when it is not."""
    return Html(f'<span class="bad">{escape(str(value))}</span>') if value else value


def _flag(value: Any) -> Any:
    return _bad(value) if isinstance(value, int) else value


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


# ---- markup ------------------------------------------------------------------------------


def good_or_bad(good: Any, yes: str, no: str) -> Html:
    return Html(f'<span class="ok-text">{yes}</span>' if good else f'<span class="bad">{no}</span>')


def dash(value: Any) -> str:
    return "–" if value is None else str(value)


def cell(value: Any) -> str:
    if isinstance(value, Html):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        value = ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items())
    elif isinstance(value, float):
        value = f"{value:g}"
    return escape(dash(value))


def table(head: Any, rows: list[list[Any]], numeric_from: int | None = None, css: str = "") -> str:
    """A table whose columns from ``numeric_from`` on hold numbers (aligned right)."""

    def one(tag: str, i: int, content: str) -> str:
        num = ' class="num"' if numeric_from is not None and i >= numeric_from else ""
        return f"<{tag}{num}>{content}</{tag}>"

    th = "".join(one("th", i, escape(h)) for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(one("td", i, cell(v)) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    html = f'<table class="{css}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{html}</div>'


def kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{cell(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def section(title: str, content: Html, anchor: str, css: str = "") -> str:
    tone = f' class="{css}"' if css else ""
    return f'<section id="{escape(anchor)}"{tone}><h2>{escape(title)}</h2>{content}</section>'


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: Any) -> str:
    return "∞" if value is None else f"{value:.3g}"


def sizing(document: ResultDocument) -> str:
    """For a ``poolbench size`` document: each candidate size, predicted beside measured,
    and the recommendation with its create_engine() line."""
    sz = document.sizing
    if sz is None:
        return ""
    measured = {t.pool_size: t for t in sz.trials if t.role == "steady"}
    rows = []
    for p in sz.predictions:
        t = measured.get(p.c)
        m = t.measured if t else None
        verdict = (
            good_or_bad(t.slo_met, "✔ measured", "✘ measured")
            if t
            else ("model ✔" if p.meets_slo else "model ✘")
        )
        rows.append(
            [
                p.c,
                f"{p.utilisation:.0%}",
                _pct(p.wait_probability),
                _ms(p.wait_p99_ms),
                _pct(m.wait_probability) if m else "",
                _ms(m.checkout_wait_p99_ms) if m else "",
                m.timeouts if m else "",
                verdict,
            ]
        )
    r = sz.recommendation
    slo = ", ".join(f"{k} ≤ {v:g}" for k, v in sz.slo.items())
    per = " per process" if sz.processes > 1 else ""
    intro = (
        f"<p>Measured {sz.rate_per_s:.1f}/s with a mean hold of "
        f"{sz.mean_hold_ms:.2f} ms: an offered load of "
        f"{sz.offered_load:.2f} connections{per}. SLO: {escape(slo)}. "
        "Predicted: Erlang C (M/M/c); measured: a short trial at that size.</p>"
    )
    head = [
        "c",
        "utilisation",
        "P(wait) predicted",
        "p99 predicted ms",
        "P(wait) measured",
        "p99 measured ms",
        "timeouts",
        "SLO",
    ]
    if r is None:
        reason = sz.no_recommendation or "nothing tried met the SLO"
        refused = f"<p><strong>No recommendation:</strong> {escape(reason)}</p>"
        return section(
            "Sizing", Html(intro + table(head, rows, numeric_from=0) + refused), "sizing"
        )
    fleet = ""
    if r.available_connections is not None:
        fleet = (
            f"<p>Fleet: {r.processes} × {r.capacity}"
            f" = {r.fleet_connections} connections at most; the server had "
            f"{r.available_connections} free "
            f"({good_or_bad(r.fits_server, 'fits', 'does not fit')}).</p>"
        )
    recommendation = (
        f"<p><strong>Recommended:</strong> pool_size={r.pool_size}, "
        f"max_overflow={r.max_overflow}, pool_timeout={r.pool_timeout_s:g}"
        f" (smallest meeting the SLO: {r.measured_minimum} measured, "
        f"{r.model_minimum} by the model)</p>{fleet}"
        f"<pre><code>{escape(str(r.create_engine))}</code></pre>"
        + "".join(f'<p class="meta">{escape(n)}</p>' for n in r.notes)
    )
    return section(
        "Sizing", Html(intro + table(head, rows, numeric_from=0) + recommendation), "sizing"
    )


def nodes(run: RunResult) -> str:
    """For a merge of a run's nodes: each node's own figures and how closely they started;
    for one node's result: which node it was."""
    merge, node = run.merge, run.node
    if merge:
        per_node = merge.per_node
        earliest = min((n.server_at_start or 0 for n in per_node), default=0)
        head = ["node", "host", "processes", "operations", "ok", "timeouts", "errors"]
        head += ["ops/s", "wait p99 ms", "max checked out", "max server", "worst case", "start"]
        rows = [
            [
                n.index,
                n.host,
                n.processes,
                n.operations,
                n.ok,
                n.timeouts,
                n.errors,
                n.throughput_ops_s,
                n.checkout_wait_p99_ms,
                n.max_checked_out,
                n.max_server_connections,
                n.worst_case_connections,
                f"+{((n.server_at_start or 0) - earliest) * 1000:.1f} ms",
            ]
            for n in per_node
        ]
        missing = merge.missing
        line = (
            f"Run {escape(str(merge.run_name))}: {len(merge.merged)} "
            f"of {merge.nodes} nodes merged; they started within "
            f"{merge.start_skew_ms or 0:.1f} ms of each other by the database "
            "server's clock. Timelines are summed sample by sample from the common start; "
            "latencies are merged from every node's histograms."
        )
        lost = f' <span class="bad">Missing: node {", ".join(map(str, missing))}.</span>'
        content = f"<p>{line}{lost if missing else ''}</p>" + table(head, rows, numeric_from=2)
        return section("Nodes", Html(content), "nodes")
    if node:
        text = (
            f"Node {node.index} of {node.nodes} in run "
            f"{escape(str(node.run_name))} on {escape(str(node.host))}; "
            f"{len(node.finished)} of {node.nodes} nodes finished."
        )
        return section("Node", Html(f"<p>{text}</p>"), "node")
    return ""
