"""The HTML report: a pure function of the result JSON, and a page that renders offline.

The browser tests open the file in headless Chromium (Debian's ``chromium`` package) with
every network request sent to a socket the test listens on, and check that the charts were
drawn and that the socket never saw a connection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from poolbench.output import html as report
from poolbench.output.compare import comparison_rows
from poolbench.result import RunResult
from poolbench.result.document import load_document
from poolbench.scenario.model import settings_label

DATA = Path(__file__).parent / "data"
CHROMIUM = "/usr/bin/chromium"
HOSTILE = "</script><script>alert(1)</script>"


def load(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def render_html(document: dict) -> str:
    """The page for a saved document, read as ``poolbench report`` reads it."""
    return report.render_html(load_document(document))


def chart_data(run: dict) -> dict:
    return report.chart_data(RunResult.from_dict(run))


def comparison() -> dict:
    """Two results of an older poolbench, as variants without names (as --vary writes them)."""
    runs = []
    for name, pre_ping in (("rare-leak", False), ("bursts", True)):
        run = load(name)
        run["variant"] = {"pool.pool_pre_ping": pre_ping}
        runs.append(run)
    return {"schema_version": 1, "runs": runs}


def section_of(html: str, anchor: str) -> str:
    """The markup of the page's <section id=anchor>, or "" when the page has none."""
    found = re.search(rf'<section id="{anchor}"[^>]*>(.*?)</section>', html, re.S)
    return found.group(1) if found else ""


def table_of(markup: str) -> list[dict[str, str]]:
    """The first table in ``markup``: one {header: text of the cell} per row of its body."""

    def text(cell: str) -> str:
        return " ".join(re.sub(r"<[^>]+>", " ", cell).split())

    head, body = markup.split("<tbody>", 1)
    names = [text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", head)]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("</tbody>", 1)[0], re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    return [dict(zip(names, map(text, row), strict=True)) for row in cells]


class Page(HTMLParser):
    """What a page is made of: its tags with their attributes, and the text of each script."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._open: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
        elif tag == "style":
            self.styles.append("")
        self._open = tag

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._open == "style":
            self.styles[-1] += data

    def charts(self) -> int:
        return sum(1 for tag, attrs in self.tags if "data-kind" in attrs)

    def data(self) -> dict:
        (text,) = [t for a, t in self.scripts if a.get("type") == "application/json"]
        return json.loads(text)


# ---- the document in, the page out ------------------------------------------------------


def test_hostile_strings_are_text_never_markup():
    doc = load("rare-leak")
    doc["scenario"]["description"] = HOSTILE
    doc["scenario"]["name"] = f"leak {HOSTILE}"
    doc["notes"] = [HOSTILE]
    doc["load"]["phases"][0]["name"] = HOSTILE
    doc["summary"]["errors"]["other"]["examples"] = [
        {"code": "<b>", "message": HOSTILE, "count": 1, "first_at_s": 1.0}
    ]
    html = render_html(doc)
    page = Page(html)

    assert "alert(1)</script>" not in html
    assert escape(HOSTILE) in html
    assert [a for a, _ in page.scripts] == [
        {"type": "application/json", "id": "poolbench-data"},
        {},
        {},
    ]
    # Data for the charts travels as JSON and comes back out unchanged.
    assert page.data()["runs"][0]["phases"] == []  # one phase: no boundary to draw
    doc["load"]["phases"].append({"name": HOSTILE, "duration": 5.0, "workers": 1})
    page = Page(render_html(doc))
    assert page.data()["runs"][0]["phases"][1] == {"t": 10.0, "name": HOSTILE}


def test_first_timeout_message_verbatim():
    doc = load("rare-leak")
    message = doc["summary"]["first_timeout_message"]
    html = render_html(doc)
    assert f'<pre class="error">{escape(message)}</pre>' in html
    assert "At 5.94s into the run, with 15 leaked sessions holding connections." in html

    doc["summary"]["first_timeout_message"] = "QueuePool limit <of> size & co"
    assert '<pre class="error">QueuePool limit &lt;of&gt; size &amp; co</pre>' in render_html(doc)


@pytest.mark.parametrize(
    "doc", [load("rare-leak"), load("bursts"), comparison(), load("failover"), load("your-code")]
)
def test_nothing_on_the_page_refers_to_the_network(doc):
    html = render_html(doc)
    page = Page(html)
    fetching = {"link", "img", "iframe", "object", "embed", "base", "form", "audio", "video"}
    assert fetching.isdisjoint(tag for tag, _ in page.tags)
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert name not in ("src", "href", "srcset", "action", "poster"), (tag, name)
            assert "//" not in (value or "") or name == "content", (tag, name, value)
    for style in page.styles:
        assert "url(" not in style and "@import" not in style
    for attrs, text in page.scripts:
        assert "src" not in attrs
        if attrs.get("type") != "application/json":  # the data is text, not code
            code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # uPlot's banner names its home
            assert "http://" not in code and "https://" not in code
    # The one address in SQLAlchemy's message is text on the page.
    if any(r["summary"]["timeouts"] for r in doc.get("runs", [doc])):
        assert "Background on this error at: https://sqlalche.me/e/21/3o7r" in html


def test_policy_allows_exactly_the_page_own_scripts_and_style():
    html = render_html(load("rare-leak"))
    page = Page(html)
    (policy,) = [
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert "unsafe" not in policy

    def digest(text: str) -> str:
        return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"

    code = [t for a, t in page.scripts if a.get("type") != "application/json"]
    assert directives["script-src"].split() == [digest(t) for t in code]
    assert directives["style-src"].split() == [digest(t) for t in page.styles]


def test_run_without_timeouts():
    html = render_html(load("bursts"))
    assert "No TimeoutError: every checkout got a connection." in html
    assert '<pre class="error">' not in html
    assert "No errors." in html
    assert Page(html).charts() == 4


def test_server_never_answered():
    doc = load("bursts")
    for sample in doc["timeline"]:
        sample["server_connections"] = None
    doc["summary"]["max_server_connections"] = None
    html = render_html(doc)
    assert "The server could not be asked for its connections during this run." in html
    assert Page(html).charts() == 3
    assert chart_data(doc)["server_states"] == []


def test_single_sample_and_no_samples():
    doc = load("rare-leak")
    doc["timeline"] = doc["timeline"][:1]
    page = Page(render_html(doc))
    assert page.charts() == 4
    assert page.data()["runs"][0]["t"] == [1.0]

    doc["timeline"] = []
    html = render_html(doc)
    assert "No samples were taken." in html
    assert Page(html).charts() == 0


def test_comparison_shows_variants_side_by_side():
    html = render_html(comparison())
    page = Page(html)
    assert "rare-leak, bursts — 2 variants compared" in html
    assert "2 of 2 variants passed" in html
    # Without names, variants are labelled by their settings as the terminal writes them.
    for label in ("pre_ping=False", "pre_ping=True"):
        assert label == settings_label({"pool.pool_pre_ping": label.endswith("True")})
        assert f"<strong>{label}</strong>" in html
        assert f"<summary>{label} — passed, run " in html
    runs = [attrs["data-run"] for _, attrs in page.tags if "data-kind" in attrs]
    assert runs == ["0", "1"] * 4
    assert len(page.data()["runs"]) == 2
    assert len(re.findall(r'id="checks-\d"', html)) == 2  # ids stay unique per variant


def test_chart_data_columns():
    doc = load("bursts")
    data = chart_data(doc)
    assert data["t"][:3] == [0.5, 1.0, 1.5]
    assert data["series"]["waiting"][:3] == [0, 14, 0]
    assert "checkout_wait_p50_ms" not in data["series"] and "disconnects" not in data["series"]
    assert data["server_states"] == ["idle in transaction", "idle"]
    assert data["server"]["idle in transaction"][:2] == [7, 8]
    assert data["server"]["idle"][:2] == [1, 0]  # a state missing from a sample counts 0
    assert (data["pool_size"], data["capacity"], data["pool_timeout_ms"]) == (5, 8, 1000.0)
    assert [p["name"] for p in data["phases"]] == ["burst", "quiet", "burst again"]
    assert [p["t"] for p in data["phases"]] == [0.0, 4.0, 8.0]
    assert data["markers"] == []

    for sample in doc["timeline"]:
        sample["checkout_wait_p50_ms"] = 1.5
        sample["disconnects"] = 0
    assert chart_data(doc)["series"]["checkout_wait_p50_ms"][0] == 1.5
    assert chart_data(doc)["series"]["disconnects"][0] == 0
    assert "peak_checked_out" not in chart_data(doc)["series"]  # an older result has none

    for sample in doc["timeline"]:
        sample["peak_checked_out"], sample["peak_waiting"] = 12, 3
    peaks = chart_data(doc)["series"]
    assert peaks["peak_checked_out"][0] == 12 and peaks["peak_waiting"][0] == 3
    script = (Path(report.__file__).parent / "assets" / "report.js").read_text()
    assert 'label: "checked out, peak"' in script

    leak = chart_data(load("rare-leak"))
    assert leak["markers"] == [
        {"t": 5.943626558000005, "label": "first TimeoutError", "color": "#cf222e"}
    ]


def test_nullpool_has_no_pool_lines():
    doc = load("bursts")
    doc["pool"] |= {"poolclass": "NullPool", "create_engine": "poolclass=NullPool"}
    data = chart_data(doc)
    assert (data["pool_size"], data["capacity"], data["pool_timeout_ms"]) == (None, None, None)
    assert 'Max checked out</div><div class="value">8</div>' in render_html(doc)


# ---- what newer results add: faults, stale connections, leak suspects, named variants ----


def test_fault_markers_on_every_chart():
    doc = load("failover")
    page = Page(render_html(doc))
    for run, data in zip(doc["runs"], page.data()["runs"], strict=True):
        (fault,) = run["faults"]
        kill = {"t": 5.0, "label": f"kill: {fault['ended']} ended", "color": "#bc4c00"}
        assert data["markers"][0] == kill | {"line": "solid"}
    # In time order, so the labels above the plot read top to bottom as things happened.
    fifo = chart_data(doc["runs"][0])["markers"]
    assert [m["label"] for m in fifo] == ["kill: 8 ended", "first disconnect"]
    assert fifo[1] == {"t": 5.042, "label": "first disconnect", "color": "#8250df"}

    run = doc["runs"][0]
    run["faults"] = [
        {"t_s": 6.5, "kind": "restart", "detail": "stop and start", "ended": None, "error": None},
        {"t_s": 2.0, "kind": "kill", "detail": HOSTILE, "ended": None, "error": HOSTILE},
    ]
    labels = [(m["t"], m["label"]) for m in chart_data(run)["markers"]]
    assert labels == [(2.0, "kill failed"), (5.042, "first disconnect"), (6.5, "restart")]


def test_faults_table():
    doc = load("failover")
    rows = table_of(section_of(render_html(doc), "faults"))
    assert [(r["variant"], r["at"], r["fault"], r["connections ended"]) for r in rows] == [
        ("FIFO", "5.00s", "kill", "8"),
        ("FIFO + pre_ping", "5.00s", "kill", "6"),
        ("LIFO", "5.00s", "kill", "3"),
        ("LIFO + pre_ping", "5.00s", "kill", "3"),
    ]
    assert {r["what"] for r in rows} == {"connections idle in the pool"}

    run = doc["runs"][2]
    run["faults"][0] |= {"detail": HOSTILE, "error": f"refused: {HOSTILE}", "ended": None}
    html = render_html(run)  # one run: no variant column
    assert "alert(1)</script>" not in html
    (row,) = table_of(section_of(html, "faults"))
    assert "variant" not in row and row["what"] == escape(HOSTILE)
    assert f'<span class="bad">refused: {escape(HOSTILE)}</span>' in html
    assert section_of(render_html(load("rare-leak")), "faults") == ""


def test_comparison_columns_agree_with_the_terminal():
    doc = load("failover")
    rows = table_of(section_of(render_html(doc), "comparison"))
    expected = comparison_rows(load_document(doc).runs)
    assert [r["variant"].split(" pre_ping=")[0].split(" use_lifo=")[0] for r in rows] == [
        "FIFO", "FIFO + pre_ping", "LIFO", "LIFO + pre_ping"
    ]  # fmt: skip
    for row, want in zip(rows, expected, strict=True):
        assert row["timeouts"] == str(want["timeouts"])
        assert row["disconnects"] == str(want["disconnects"])
        assert row["pre-ping recoveries"] == str(want["pre_ping_recoveries"])
        assert row["reconnects"] == str(want["reconnects"])
        assert row["recycles"] == str(want["recycles"])
        assert row["max stale"] == str(want["max_stale"])
        assert row["Δp50 ms"] == f"{want['checkout_wait_p50_delta_ms']:+.2f}"
        assert row["conn/1k"] == f"{want['connects_per_1000']:g}"
        assert row["result"] == "passed"
    assert rows[0]["Δp50 ms"] == "+0.00"  # the first variant is the baseline
    # A named variant also shows the settings it changes.
    assert rows[3]["variant"] == "LIFO + pre_ping use_lifo=True, pre_ping=True"
    # Kinds of error nobody hit, and figures no run measured, leave no empty column.
    assert "refused" not in rows[0] and "keep-alive pings" not in rows[0]
    old = table_of(section_of(render_html(comparison()), "comparison"))[0]
    assert "max stale" not in old and old["timeouts"] == "20" and old["reconnects"] == "0"


def test_variant_names_are_text():
    doc = load("failover")
    doc["runs"][1]["variant_name"] = HOSTILE
    doc["runs"][2]["variant_name"] = None  # then its settings name it
    html = render_html(doc)
    assert "alert(1)</script>" not in html
    assert f"<strong>{escape(HOSTILE)}</strong>" in html
    assert f"<summary>{escape(HOSTILE)} — passed, run " in html
    assert "<strong>use_lifo=True</strong>" in html


def test_leak_suspects_section():
    doc = load("your-code")
    html = render_html(doc)
    suspects = section_of(html, "leak-suspects")
    assert html.index('id="leak-suspects"') < html.index('id="first-timeout"')  # near the top
    (row,) = table_of(suspects)
    site = "scenarios/example_app.py:54 in legacy_report"
    assert row == {
        "checked out at": f"{site} stack at checkout (1 frame, innermost first) {site}",
        "held too long": "5",
        "longest hold": "9.99s",
        "still out at the end": "5",
    }
    assert f'<code class="site">{site}</code>' in suspects
    card = re.search(
        r'Leak suspects</div><div class="value">(\d+)</div><div class="sub">(.*?)<', html
    )
    assert card and card.groups() == ("5", "from 1 call site · 5 still out at the end")

    site = doc["summary"]["leak_sites"][0]
    site["site"] = f"app.py:1 in {HOSTILE}"
    site["stack"] = [f"app.py:1 in {HOSTILE}", "app.py:9 in handler", "server.py:3 in serve"]
    html = render_html(doc)
    assert "alert(1)</script>" not in html
    frames = re.findall(r"<li><code>(.*?)</code></li>", section_of(html, "leak-suspects"))
    assert frames == [escape(f) for f in site["stack"]]  # innermost first, as recorded
    assert "stack at checkout (3 frames, innermost first)" in html

    doc["summary"]["leak_sites"] = []
    html = render_html(doc)
    assert section_of(html, "leak-suspects") == ""
    assert 'Leak suspects</div><div class="value">0</div>' in html


def test_holders_beside_the_first_timeout():
    doc = load("your-code")
    first = section_of(render_html(doc), "first-timeout")
    assert '<pre class="error">QueuePool limit of size 3 overflow 2 reached' in first
    assert "Who held the connections then" in first
    assert table_of(first.split("Who held the connections then")[1]) == [
        {
            "checked out at": "scenarios/example_app.py:54 in legacy_report",
            "connections": "5",
            "oldest held": "2.05s",
        }
    ]
    doc["summary"]["holders_at_first_timeout"][0]["site"] = HOSTILE
    html = render_html(doc)
    assert "alert(1)</script>" not in html and escape(HOSTILE) in section_of(html, "first-timeout")
    doc["summary"]["holders_at_first_timeout"] = None  # leak_detection was off
    assert "Who held" not in render_html(doc)


def test_stale_connections_keepalive_and_reconnects():
    doc = load("failover")
    lifo = doc["runs"][2]
    data = chart_data(lifo)
    assert data["series"]["stale"] == [s["stale"] for s in lifo["timeline"]]
    assert max(data["series"]["stale"]) == lifo["summary"]["max_stale"] == 8
    assert data["series"]["disconnects"] == [s["disconnects"] for s in lifo["timeline"]]

    lifo["summary"] |= {"keepalive_pings": 26, "keepalive_errors": 2}
    html = render_html(lifo)

    def card(label: str) -> tuple[str, str]:
        found = re.search(
            rf'{label}</div><div class="value">(.*?)</div><div class="sub">(.*?)<', html
        )
        assert found, label
        return found.groups()

    assert card("Stale connections") == ("8", "most at once · keep-alive 26 pings, 2 failed")
    first = lifo["summary"]["errors"]["disconnect"]["first_at_s"]
    assert card("Disconnects") == ("2", f"the first at {first:.2f}s")
    assert card("Reconnects") == ("3", "0 pre-ping recoveries · 0 recycles")
    counts = section_of(html, "errors")
    for key, value in (("reconnects", 3), ("max_stale", 8), ("keepalive_pings", 26)):
        assert f"<tr><th>{key}</th><td>{value}</td></tr>" in counts


def test_a_result_of_an_older_poolbench_still_renders():
    """Results written before faults, stale counts and leak detection existed."""
    for doc in (load("rare-leak"), load("bursts")):
        html = render_html(doc)
        assert "Stale connections</div>" not in html and "Leak suspects</div>" not in html
        assert "keepalive_pings" not in html
        assert section_of(html, "faults") == "" and section_of(html, "leak-suspects") == ""
        assert "stale" not in chart_data(doc)["series"]
        assert Page(html).charts() == 4
    # and a newer one with every newer key taken out
    doc = load("failover")["runs"][0]
    for key in ("faults", "variant_name", "variant"):
        del doc[key]
    for key in ("leak_sites", "holders_at_first_timeout", "max_stale", "keepalive_pings"):
        doc["summary"].pop(key, None)
    del doc["summary"]["pool_events"]["reconnects"]
    for sample in doc["timeline"]:
        del sample["stale"], sample["disconnects"]
    data = Page(render_html(doc)).data()["runs"][0]
    assert [m["label"] for m in data["markers"]] == ["first disconnect"]
    assert "stale" not in data["series"]


def test_size_fits_a_ci_attachment():
    for name in ("rare-leak", "bursts", "failover", "your-code"):  # failover: four variants
        assert len(render_html(load(name)).encode()) < 150_000
    assert len(render_html(comparison()).encode()) < 150_000
    # An hour sampled every second still stays under 300 KB.
    doc = load("bursts")
    sample = doc["timeline"][0]
    doc["timeline"] = [dict(sample, t_s=float(t)) for t in range(1, 3601)]
    assert len(render_html(doc).encode()) < 300_000


# ---- in a real browser ------------------------------------------------------------------


class NetworkTrap:
    """A TCP socket Chromium is given as its proxy, loopback included: every request lands here."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.requests: list[
            str
        ] = []  # first line of each: "GET http://host/..." or "CONNECT host:443 ..."
        self.silent = 0  # connections that closed without sending a request
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(500).split(b"\r\n")[0].decode("latin-1")
                except OSError:
                    line = ""
                # A connection that sends no request line (Chromium preconnects) fetches
                # nothing; it is counted, but has no host to check.
                if line.strip():
                    self.requests.append(line)
                else:
                    self.silent += 1

    def hosts(self) -> set[str | None]:
        return {urlsplit("//" + r.split()[1].split("://")[-1]).hostname for r in self.requests}

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.server.close()


@dataclass
class Visit:
    """What one headless Chromium run printed, and what its net log says it asked for."""

    stdout: str
    page_requests: list[str]  # URLs the page asked for
    browser_hosts: set[str | None]  # hosts Chromium contacted for itself


def requests_in(netlog: Path) -> tuple[list[str], set[str | None]]:
    """The page's requests and the browser's own, told apart by their initiator.

    Chromium 156 contacts a few of its own services whatever the flags (network time, the
    component updater, the Google-accounts check). Its net log names the initiator of every
    request: "not an origin" for the browser itself, the page's origin ("null" for a
    file:// page) for anything the page asked for.
    """
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page, browser = [], set()
    for event in log["events"]:
        params = event.get("params") or {}
        url = params.get("url", "")
        if event["type"] != start_job or urlsplit(url).scheme not in ("http", "https", "ws", "wss"):
            continue
        if params.get("initiator") == "not an origin":
            browser.add(urlsplit(url).hostname)
        else:
            page.append(url)
    return page, browser


@pytest.fixture
def trap():
    trap = NetworkTrap()
    yield trap
    trap.close()


@pytest.fixture
def chromium(tmp_path, trap):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium package "
            "(apt-get install -y chromium)"
        )
    runs = iter(range(1, 100))

    def run(page: Path, *action: str) -> Visit:
        netlog = tmp_path / f"netlog-{next(runs)}.json"
        args = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            f"--proxy-server=127.0.0.1:{trap.port}", "--proxy-bypass-list=<-loopback>",
            f"--log-net-log={netlog}", "--virtual-time-budget=5000", *action, page.as_uri(),
        ]  # fmt: skip
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium did not finish within 90 s: {' '.join(args)}")
        assert done.returncode == 0, done.stderr[-2000:]
        return Visit(done.stdout, *requests_in(netlog))

    return run


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $POOLBENCH_TEST_ARTIFACTS (for CI to keep), else the test's tmp."""
    folder = Path(os.environ.get("POOLBENCH_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.browser
@pytest.mark.parametrize("name", ["rare-leak", "comparison", "failover", "your-code"])
def test_report_renders_offline_in_chromium(name, tmp_path, trap, chromium):
    doc = comparison() if name == "comparison" else load(name)
    runs = doc.get("runs", [doc])
    runs[0]["scenario"]["description"] = HOSTILE
    html = render_html(doc)
    expected = Page(html).charts()
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")

    visit = chromium(page, "--dump-dom")
    body = re.search(r"<body([^>]*)>", visit.stdout)
    assert body, visit.stdout[:2000]
    marks = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    assert "charts-error" not in marks, marks["charts-error"]
    assert "csp-violations" not in marks
    assert marks["charts"] == str(expected) and expected == 4 * len(runs)
    canvases = re.findall(r'<canvas width="(\d+)" height="(\d+)"', visit.stdout)
    assert len(canvases) == expected and all(int(w) > 200 and int(h) > 100 for w, h in canvases)
    assert len(re.findall(r"<script\b", visit.stdout)) == 3  # the hostile text stayed text
    assert escape(HOSTILE) in visit.stdout
    # Stale connections: a line on the occupancy chart and on the server's, when measured.
    stale = "stale" in runs[0]["timeline"][0]
    assert visit.stdout.count('class="u-label">stale</div>') == (len(runs) if stale else 0)

    shot = artifacts(tmp_path) / f"report-{name}.png"
    snap = chromium(page, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000

    assert visit.page_requests == [] and snap.page_requests == []
    # Nothing got past the trap, and the browser alone knocked on it.
    assert trap.hosts() <= visit.browser_hosts | snap.browser_hosts, trap.requests


@pytest.mark.browser
def test_the_trap_catches_a_page_that_fetches(tmp_path, trap, chromium):
    """Without this, "the page asked for nothing" could mean the checks were never in the way."""
    page = tmp_path / "fetches.html"
    page.write_text('<!DOCTYPE html><img src="http://poolbench.invalid/pixel.png">')
    visit = chromium(page, "--dump-dom")
    assert visit.page_requests == ["http://poolbench.invalid/pixel.png"]
    deadline = time.monotonic() + 5
    while "poolbench.invalid" not in trap.hosts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "poolbench.invalid" in trap.hosts(), trap.requests


def test_a_sizing_document_shows_predictions_beside_measurements():
    doc = json.loads((DATA / "size.json").read_text())
    page = render_html(doc)
    assert 'id="sizing"' in page and "P(wait) predicted" in page
    assert escape(doc["recommendation"]["create_engine"]) in page
    # every trial is also a run of the comparison
    for run in doc["runs"]:
        assert escape(run["variant_name"]) in page


def test_http_endpoints_show_in_the_report_and_the_terminal():
    """App mode over HTTP: each endpoint's statuses and the pool's TimeoutErrors among
    them, typed in the result, rendered in both outputs (escaped)."""
    from rich.console import Console

    from poolbench.output.summary import http_table

    document = load("your-code")
    run = document["runs"][0] if "runs" in document else document
    name = run["summary"]["groups"][0]["name"]
    run["summary"]["http"] = [
        {
            "name": name,
            "requests": 35,
            "statuses": {"200": 15, "500": 20},
            "pool_timeouts": 20,
            "latency_ms": {"count": 35, "p50": 2023.5, "p99": 2169.4},
        },
        {
            "name": HOSTILE,
            "requests": 1,
            "statuses": {"no answer": 1},
            "pool_timeouts": 0,
            "latency_ms": {"count": 1},
        },
    ]
    page = render_html(document)
    assert "HTTP endpoints" in page and "200 ×15, 500 ×20" in page
    assert HOSTILE not in page
    result = load_document(document).runs[0]
    console = Console(record=True, width=160)
    console.print(http_table(result))
    text = console.export_text()
    assert "200 ×15, 500 ×20" in text and "2169" in text and "no answer ×1" in text
