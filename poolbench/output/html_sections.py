"""Parts of the HTML report: the markup every section is built from, and the sections for
leak suspects, faults, stale connections and the table of variants.

``html.py`` assembles the page from these and its own sections. Everything here is a pure
function of the result document (docs/results.md) and escapes every string it is given:
only :class:`Html` passes through as markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from ..result import RunResult
from ..scenario.model import settings_label
from .compare import comparison_rows
from .text import ms, secs, variant_label

Doc = dict[str, Any]

FAULT_COLOURS = {"kill": "#bc4c00", "restart": "#0550ae"}


class Html(str):
    """Markup assembled here from escaped parts; any other string is escaped on output."""


# ---- the document ------------------------------------------------------------------------


def summary_of(run: Doc) -> Doc:
    return run.get("summary") or {}


def run_label(run: Doc, index: int) -> str:
    """What the terminal calls a variant: its name, else its settings, else its scenario."""
    scenario = str((run.get("scenario") or {}).get("name") or f"run {index + 1}")
    return variant_label(run.get("variant_name"), run.get("variant"), scenario)


def fault_label(fault: Doc) -> str:
    """``kill: 8 ended``, ``restart``, ``kill failed``: a fault's marker on the charts."""
    kind = str(fault.get("kind") or "fault")
    if fault.get("error"):
        return f"{kind} failed"
    return f"{kind}: {fault['ended']} ended" if fault.get("ended") is not None else kind


def fault_markers(run: Doc) -> list[Doc]:
    """A vertical line on every chart where a fault struck, solid, unlike the first errors."""
    return [
        {
            "t": f.get("t_s"),
            "label": fault_label(f),
            "color": FAULT_COLOURS.get(f.get("kind"), "#57606a"),
            "line": "solid",
        }
        for f in run.get("faults") or []
        if f.get("t_s") is not None
    ]


def disconnects(summary: Doc) -> int | None:
    kind = (summary.get("errors") or {}).get("disconnect")
    return kind.get("count", 0) if kind else None


# ---- the sections ------------------------------------------------------------------------


def newer_cards(summary: Doc) -> list[tuple[str, Any, str, str]]:
    """Cards for what newer results measure (label, value, sub, tone); none for older ones."""
    s, cards = summary, []
    if "max_stale" in s:
        events = s.get("pool_events") or {}
        lost = disconnects(s)
        first = ((s.get("errors") or {}).get("disconnect") or {}).get("first_at_s")
        sub = "no request lost its connection" if not lost else f"the first at {secs(first)}"
        cards.append(("Disconnects", lost, sub, "bad" if lost else ""))
        pings, failed = s.get("keepalive_pings"), s.get("keepalive_errors")
        sub = "closed by the server, still in the pool"
        if pings:
            sub = f"most at once · keep-alive {pings} pings, {failed} failed"
        cards.append(
            ("Stale connections", s.get("max_stale"), sub, "warn" if s["max_stale"] else "")
        )
        sub = (
            f"{events.get('pre_ping_recoveries', 0)} pre-ping recoveries · "
            f"{events.get('recycles', 0)} recycles"
        )
        cards.append(("Reconnects", events.get("reconnects"), sub, ""))
    if "leak_sites" in s:
        sites = s.get("leak_sites") or []
        count = sum(site.get("count") or 0 for site in sites)
        held = sum(site.get("held_at_end") or 0 for site in sites)
        sub = "checkouts held past leak_detection"
        if sites:
            where = "1 call site" if len(sites) == 1 else f"{len(sites)} call sites"
            sub = f"from {where} · {held} still out at the end"
        cards.append(("Leak suspects", count, sub, "bad" if count else ""))
    return cards


def leak_suspects(runs: list[Doc]) -> str:
    """Where the connections held past ``leak_detection`` were checked out; "" when nowhere."""
    parts = []
    for i, run in enumerate(runs):
        sites = summary_of(run).get("leak_sites") or []
        if not sites:
            continue
        if len(runs) > 1:
            parts.append(f"<h3>{escape(run_label(run, i))}</h3>")
        rows = [
            [
                _site(site),
                site.get("count"),
                secs(site.get("longest_hold_s")),
                _flag(site.get("held_at_end")),
            ]
            for site in sites
        ]
        head = ["checked out at", "held too long", "longest hold", "still out at the end"]
        parts.append(table(head, rows, numeric_from=1))
    if not parts:
        return ""
    threshold = next(
        (
            r.get("scenario", {}).get("leak_detection_s")
            for r in runs
            if r.get("scenario", {}).get("leak_detection_s")
        ),
        None,
    )
    limit = f" ({secs(threshold)})" if threshold else ""
    intro = (
        "<p>Connections checked out at these call sites stayed out longer than the scenario's "
        f"<code>leak_detection</code> threshold{escape(limit)}: the code path that does not "
        "give its connection back. Open a site for its stack at checkout, innermost frame "
        "first.</p>"
    )
    return section("Leak suspects", Html(intro + "".join(parts)), "leak-suspects", "alert")


def holders(summary: Doc) -> str:
    """Who held the pool's connections when the first TimeoutError came; "" if unknown."""
    rows = [
        [Html(f'<code class="site">{escape(str(h.get("site")))}</code>'), h.get("count"),
         secs(h.get("oldest_s"))]
        for h in summary.get("holders_at_first_timeout") or []
    ]  # fmt: skip
    if not rows:
        return ""
    head = ["checked out at", "connections", "oldest held"]
    return "<h3>Who held the connections then</h3>" + table(head, rows, numeric_from=1)


def faults(runs: list[Doc]) -> str:
    """What the scenario's faults did to the server, run by run; "" when it had none."""
    several = len(runs) > 1
    rows = []
    for i, run in enumerate(runs):
        for f in run.get("faults") or []:
            ended = f.get("ended")
            error = (
                Html(f'<span class="bad">{escape(str(f["error"]))}</span>')
                if f.get("error")
                else ""
            )
            row = [secs(f.get("t_s")), f.get("kind"), f.get("detail"), ended, error]
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
    figure: Callable[[Doc, Doc], Any]
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
    Column("keep-alive pings", lambda r, s: s.get("keepalive_pings"), False),
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
    Column("max out", lambda r, s: s.get("max_checked_out"), True,
           "most connections checked out at once"),
    Column("leaked", lambda r, s: s.get("leaked"), False, "sessions never closed"),
    Column("at exit", lambda r, s: _bad(s.get("server_connections_at_exit")), True,
           "this run's connections the server still showed at exit"),
)  # fmt: skip


def comparison(runs: list[Doc]) -> str:
    """The variants side by side, with the figures the terminal's comparison shows."""
    rows = comparison_rows([RunResult.from_dict(run) for run in runs])
    summaries = [summary_of(run) for run in runs]
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
        [_variant(run, i), good_or_bad(summary_of(run).get("passed"), "passed", "failed")]
        + [cells[c.name][i] for c in shown]
        for i, run in enumerate(runs)
    ]
    head = ["variant", "result", *(c.name for c in shown)]
    html = table(head, body, numeric_from=2, css="compact wrap-head")
    legend = "; ".join(f"<b>{escape(c.name)}</b>: {escape(c.meaning)}" for c in shown if c.meaning)
    return section("Variants", Html(f'{html}<p class="muted">{legend}.</p>'), "comparison")


def _variant(run: Doc, index: int) -> Html:
    """The variant's name and, below it, the settings it changes (each run's own section
    below has every effective setting)."""
    html = f"<strong>{escape(run_label(run, index))}</strong>"
    changed = settings_label(run["variant"]) if run.get("variant") else ""
    if changed and changed != run_label(run, index):
        html += f'<code class="variant-settings">{escape(changed)}</code>'
    return Html(html)


def _site(site: Doc) -> Html:
    stack = site.get("stack") or []
    frames = "".join(f"<li><code>{escape(str(frame))}</code></li>" for frame in stack)
    count = "1 frame" if len(stack) == 1 else f"{len(stack)} frames"
    details = (
        f'<details class="stack"><summary>stack at checkout ({count}, innermost first)</summary>'
        f"<ol>{frames}</ol></details>"
        if stack
        else ""
    )
    return Html(f'<code class="site">{escape(str(site.get("site")))}</code>{details}')


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


def sizing(document: Doc) -> str:
    """For a ``poolbench size`` document: each candidate size, predicted beside measured,
    and the recommendation with its create_engine() line."""
    if document.get("kind") != "size":
        return ""
    measured = {t["pool_size"]: t for t in document.get("trials", []) if t["role"] == "steady"}
    rows = []
    for p in document.get("predictions", []):
        t = measured.get(p["c"])
        m = t["measured"] if t else {}
        verdict = (
            good_or_bad(t["slo_met"], "✔ measured", "✘ measured")
            if t
            else ("model ✔" if p.get("meets_slo") else "model ✘")
        )
        rows.append(
            [
                p["c"],
                f"{p['utilisation']:.0%}",
                _pct(p["wait_probability"]),
                _ms(p["wait_p99_ms"]),
                _pct(m.get("wait_probability")) if t else "",
                _ms(m.get("checkout_wait_p99_ms")) if t else "",
                m.get("timeouts", "") if t else "",
                verdict,
            ]
        )
    r = document.get("recommendation", {})
    slo = ", ".join(f"{k} ≤ {v:g}" for k, v in document.get("slo", {}).items())
    per = " per process" if document.get("processes", 1) > 1 else ""
    intro = (
        f"<p>Measured {document.get('rate_per_s', 0):.1f}/s with a mean hold of "
        f"{document.get('mean_hold_ms', 0):.2f} ms: an offered load of "
        f"{document.get('offered_load', 0):.2f} connections{per}. SLO: {escape(slo)}. "
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
    fits = r.get("fits_server")
    fleet = ""
    if r.get("available_connections") is not None:
        fleet = (
            f"<p>Fleet: {r.get('processes')} × {r.get('pool_size', 0) + r.get('max_overflow', 0)}"
            f" = {r.get('fleet_connections')} connections at most; the server had "
            f"{r.get('available_connections')} free "
            f"({good_or_bad(fits, 'fits', 'does not fit')}).</p>"
        )
    recommendation = (
        f"<p><strong>Recommended:</strong> pool_size={r.get('pool_size')}, "
        f"max_overflow={r.get('max_overflow')}, pool_timeout={r.get('pool_timeout_s', 0):g}"
        f" (smallest meeting the SLO: {r.get('measured_minimum')} measured, "
        f"{r.get('model_minimum')} by the model)</p>{fleet}"
        f"<pre><code>{escape(str(r.get('create_engine', '')))}</code></pre>"
        + "".join(f'<p class="meta">{escape(n)}</p>' for n in r.get("notes", []))
    )
    return section(
        "Sizing", Html(intro + table(head, rows, numeric_from=0) + recommendation), "sizing"
    )
