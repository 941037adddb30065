"""The command line: parse flags, call the library, render, and map errors to exit codes.

Everything here is a thin layer over :mod:`poolbench`; the engine works without click.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__, checks, database_for, run_planned
from .db.target import parse_url
from .engine import interrupts
from .engine.runner import RunOptions
from .errors import (
    ExitStatus,
    OutputFileError,
    OutputsNotWritten,
    PoolbenchError,
    UnsupportedDatabase,
    UsageError,
)
from .masking import mask_text
from .nodes import NodeSpec
from .nodes.merge import merge_nodes
from .nodes.node_run import node_index, run_as_node
from .nodes.session import WaitReport
from .output.annotations import github_annotations as annotation_lines
from .output.compare import comparison_table
from .output.csvout import csv_paths, write_csv
from .output.files import check_paths, write_text
from .output.html import render_html
from .output.jsonout import write_json
from .output.junit import write_junit
from .output.live import LiveView, PlainProgress, header_lines
from .output.nodes import merge_line, node_line, nodes_table, waiting_line
from .output.sizing import render_sizing
from .output.summary import render_result
from .output.termchart import timeline_chart
from .result import RunResult
from .result.document import ResultDocument, load_document
from .result.observer import Observer
from .scenario import BUNDLED_DIR, bundled_scenarios, load_scenario
from .scenario.variants import plan
from .sizing.planner import Planner, parse_slos
from .units import format_duration, parse_duration


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = DurationType()


def _fail(message: str, status: ExitStatus) -> None:
    for line in mask_text(message).splitlines() or [""]:
        click.echo(f"poolbench: error: {line}", err=True)
    sys.exit(int(status))


def error_line(exc: PoolbenchError) -> str:
    """The error as one line, with the flags that would help where the library says what
    would (it names facts, never this command line's flags)."""
    if isinstance(exc, UnsupportedDatabase):
        if exc.example_url:
            hint = f"pass --url, e.g. {exc.example_url}"
            if exc.embedded:
                hint = (
                    f"run it without --url and POOLBENCH_URL for the embedded {exc.embedded}, "
                    f"or {hint}"
                )
            return f"{exc} ({hint})"
        if exc.embedded:
            return f"{exc}: run without --url and POOLBENCH_URL"
    return str(exc)


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors and Ctrl-C into one line and an exit status, in one place."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PoolbenchError as exc:
            _fail(error_line(exc), exc.exit_status)
        except KeyboardInterrupt:
            click.echo("poolbench: interrupted", err=True)
            sys.exit(int(ExitStatus.INTERRUPTED))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="poolbench")
def main() -> None:
    """Load-test SQLAlchemy connection pools against a real database.

    poolbench reproduces the three ways a pool fails in production and shows them
    happening over time: leaked sessions draining QueuePool until every request
    waits pool_timeout and gets TimeoutError; stale connections the server closed;
    and pools sized too small for the load or too large for the server.

    \b
    Start here (no database needed: an embedded PostgreSQL is started and removed):
      poolbench run scenarios/leaky-sessions.yaml
      poolbench run scenarios/closed-sessions.yaml
    \b
    Against your own server, with your own settings:
      poolbench run scenarios/leaky-sessions.yaml --url postgresql://app@db:5432/app \\
          --set pool.pool_size=20 --set pool.max_overflow=5 --json result.json
    \b
    Exit codes: 0 ok · 1 a threshold or expectation was breached · 2 bad usage or
    scenario · 3 database unreachable or unsuitable · 130 interrupted.
    """


@main.command()
@click.argument("scenario", metavar="SCENARIO")
@click.option(
    "--url",
    metavar="URL",
    help="Database URL (SQLAlchemy form). Overrides "
    "POOLBENCH_URL and the scenario's database.url; without any, poolbench "
    "starts a throwaway embedded PostgreSQL.",
)
@click.option(
    "--duration",
    type=DURATION,
    help="Run for this long instead (e.g. 10s, 2m); phases are scaled in proportion.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any scenario key, e.g. --set pool.pool_size=20 "
    "--set workload[0].session=closed. Repeatable.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    metavar="N",
    help="Run the load in N worker processes, each with its own engine and pool (as N "
    "gunicorn workers would); the load is split between them. Overrides fleet.processes.",
)
@click.option(
    "--vary",
    "vary",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Run the same load once per value and compare them side by side, e.g. --vary "
    "pool_pre_ping=false,true --vary pool_recycle=-1,1s (every combination; replaces the "
    "scenario's own variants).",
)
@click.option(
    "--join",
    "join",
    metavar="NAME",
    help="Run as one node of the run NAME across hosts: wait until --nodes nodes have "
    "joined, then all start measuring at one instant of the database server's clock. "
    "See docs/nodes.md.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 1000),
    metavar="N",
    help="With --join: how many nodes the run has.",
)
@click.option(
    "--node-index",
    type=click.IntRange(0, 999),
    metavar="I",
    help="With --join: this node's index, 0..N-1 (default: $JOB_COMPLETION_INDEX, which a "
    "Kubernetes Indexed Job sets).",
)
@click.option(
    "--coordinator",
    metavar="URL",
    help="With --join: register the nodes in this database instead of the one under test.",
)
@click.option(
    "--join-timeout",
    type=DURATION,
    default="5m",
    show_default=True,
    help="With --join: how long to wait for every node to join.",
)
@click.option(
    "--json",
    "json_path",
    metavar="PATH",
    help="Write the result as JSON to PATH ('-' for stdout; the human output then "
    "goes to stderr). See docs/results.md.",
)
@click.option(
    "--html",
    "html_path",
    metavar="PATH",
    help="Write a self-contained HTML report with charts (opens offline).",
)
@click.option(
    "--csv",
    "csv_prefix",
    metavar="PREFIX",
    help="Write PREFIX_timeline.csv (one row per sample) and PREFIX_summary.csv.",
)
@click.option(
    "--junit",
    "junit_path",
    metavar="PATH",
    help="Write each threshold and expectation as a JUnit XML test case.",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "live", "plain", "none"]),
    default="auto",
    show_default=True,
    help="Live view in a terminal, one line per interval otherwise (auto).",
)
@click.option("--no-timeline", is_flag=True, help="Leave the timeline table out of the summary.")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also print SQLAlchemy's own pool.status() at every sample.",
)
@click.option(
    "--github-annotations/--no-github-annotations",
    default=None,
    help="Print ::error:: lines GitHub Actions shows inline: each breached threshold and "
    "the first TimeoutError. On by default when GITHUB_ACTIONS=true.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve the pool live at http://HOST:PORT/metrics (Prometheus / OpenMetrics, in "
    "OpenTelemetry's db.client.connection.* names) while the run lasts. Needs "
    "poolbench[metrics].",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="The address --metrics-port listens on; 0.0.0.0 exposes it to the network.",
)
@reports_errors
def run(
    scenario: str,
    url: str | None,
    duration: float | None,
    overrides: tuple[str, ...],
    processes: int | None,
    vary: tuple[str, ...],
    join: str | None,
    nodes: int | None,
    node_index: int | None,
    coordinator: str | None,
    join_timeout: float,
    json_path: str | None,
    html_path: str | None,
    csv_prefix: str | None,
    junit_path: str | None,
    progress: str,
    no_timeline: bool,
    verbose: bool,
    github_annotations: bool | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run SCENARIO (a YAML file, or the name of a bundled one) and report what the pool did.

    \b
    Examples:
      poolbench run scenarios/leaky-sessions.yaml
      poolbench run rare-leak --duration 20s --json -
      poolbench run scenarios/closed-sessions.yaml --url mysql+pymysql://root@127.0.0.1/test
      poolbench run stale-postgres --vary pool_pre_ping=false,true
      POOLBENCH_URL=postgresql://postgres@127.0.0.1/test poolbench run seed-defaults
      poolbench run rare-leak --metrics-port 9464    # scrape 127.0.0.1:9464/metrics

    While it runs you see the pool over time: checked out, idle, overflow, callers
    waiting in checkout, the server's own count of this run's connections, and the
    first TimeoutError the moment it happens. At the end: the timeline, percentiles of
    the checkout wait, errors by kind, and the thresholds. Ctrl-C stops early and
    still reports (and writes --json) what was measured.

    \b
    One run across many hosts (each host runs the same command; see docs/nodes.md):
      poolbench run app.yaml --url postgresql://app@db/app --join nightly --nodes 4 \\
          --node-index 0 --json node-0.json
      poolbench merge node-*.json --html fleet.html
    """
    spec = _node_spec(join, nodes, node_index, join_timeout)
    check_outputs(json_path, html_path, csv_prefix, junit_path)
    loaded = load_scenario(scenario, overrides, duration)
    planned = plan(loaded, vary)
    human = make_console(stderr=json_path == "-")
    observer = _observer(progress, human, verbose)
    with interrupts.handling():
        with serving_metrics(observer, metrics_port, metrics_host) as observer:
            try:
                with database_for(loaded, url) as target:
                    options = RunOptions(verbose=verbose, processes=processes)
                    if spec is None:
                        results = run_planned(planned, target, options, observer)
                    else:
                        chosen = parse_url(coordinator, "--coordinator") if coordinator else None
                        report = _waiting_printer(human)
                        result = run_as_node(
                            planned, target, spec, options, observer, chosen, report
                        )
                        results = [result]
            finally:
                observer.finished()
        render_results(
            human, results, show_timeline=not no_timeline, with_header=progress == "none"
        )
        write_outputs(human, results, json_path, html_path, csv_prefix, junit_path)
        if github_annotations or (
            github_annotations is None and os.environ.get("GITHUB_ACTIONS") == "true"
        ):
            scenario_file = scenario if Path(scenario).is_file() else None
            for line in annotation_lines(results, scenario_file):
                click.echo(line, err=json_path == "-")  # stdout, unless it carries the JSON
        sys.exit(int(_exit_status(results)))


def _waiting_printer(console: Console) -> WaitReport:
    """Prints, while a node waits, who is still awaited and when measuring starts."""

    def report(spec: NodeSpec, missing: list[int], start_at: float | None) -> None:
        console.print(f"[dim]{waiting_line(spec.run_name, spec.nodes, missing, start_at)}[/]")

    return report


def _node_spec(
    join: str | None, nodes: int | None, index: int | None, join_timeout: float
) -> NodeSpec | None:
    """The node this run is, from --join/--nodes/--node-index; UsageError if incomplete."""
    if join is None:
        if nodes is not None or index is not None:
            raise UsageError("--nodes and --node-index need --join NAME")
        return None
    if nodes is None:
        raise UsageError("--join needs --nodes N (how many nodes the run has)")
    return NodeSpec(join, nodes, node_index(index, os.environ), join_timeout_s=join_timeout)


@contextmanager
def serving_metrics(observer: Observer, port: int | None, host: str) -> Iterator[Observer]:
    """The /metrics endpoint for the run's length (listening before the run starts, so a
    port in use stops it before anything happens); the observer that feeds it."""
    if port is None:
        yield observer
        return
    from .output.openmetrics import MetricsObserver, MetricsServer, PoolFigures

    figures = PoolFigures()
    server = MetricsServer(figures, port, host)
    try:
        yield MetricsObserver(observer, figures)
    finally:
        server.close()


def render_results(
    console: Console, results: list[RunResult], show_timeline: bool, with_header: bool = True
) -> None:
    """Every run's summary, the chart in a terminal, and the comparison of variants;
    ``with_header``: each run's header first (the live view, when there was one, showed it)."""
    document = ResultDocument.of(results)
    for result in results:
        console.print()
        if len(results) > 1:
            console.rule(f"[bold]{escape(result.label('as written'))}[/]", align="left")
        if with_header:
            for line in header_lines(result.header()):
                console.print(line)
            console.print()
        render_result(console, result, show_timeline=show_timeline and len(results) == 1)
    if console.is_terminal and show_timeline:
        console.print()
        console.print(timeline_chart(document))
    if len(results) > 1:
        console.print()
        console.print(comparison_table(results))
    for result in results:  # a node of a run across hosts, or their merge
        if result.node is not None:
            console.print()
            console.print(node_line(result.node))
        if result.merge is not None:
            console.print()
            console.print(nodes_table(result.merge))
            console.print(merge_line(result.merge))


def write_outputs(
    console: Console,
    results: list[RunResult],
    json_path: str | None,
    html_path: str | None,
    csv_prefix: str | None,
    junit_path: str | None,
    document: ResultDocument | None = None,
) -> None:
    """The files asked for, each a pure rendering of the same result document."""
    document = document if document is not None else ResultDocument.of(results)
    writers: list[tuple[str, Callable[[], object]]] = []
    if json_path:
        writers.append((json_path, lambda: write_json(document, json_path)))
    if html_path:
        writers.append((html_path, lambda: write_text(html_path, render_html(document))))
    if csv_prefix:
        writers.append((csv_prefix, lambda: write_csv(document, csv_prefix)))
    if junit_path:
        writers.append((junit_path, lambda: write_junit(document, junit_path)))
    failures: list[OutputFileError] = []
    for path, write in writers:  # one that fails does not stop the others
        try:
            written = write()
        except OutputFileError as exc:
            failures.append(exc)
            continue
        for name in written if isinstance(written, list) else [path]:
            if str(name) != "-":
                console.print(f"[dim]written: {escape(str(name))}[/]")
    if failures:
        raise OutputsNotWritten(failures)


def check_outputs(
    json_path: str | None,
    html_path: str | None,
    csv_prefix: str | None,
    junit_path: str | None,
) -> None:
    """Refuse, before anything is measured, any output path that could not be written."""
    csv_files = csv_paths(csv_prefix) if csv_prefix else ()
    check_paths(json_path, html_path, *csv_files, junit_path)


def make_console(stderr: bool = False) -> Console:
    """A console for people; logs (not a terminal) get 120 columns rather than rich's 80."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, highlight=False, width=120)
    return console


def _observer(progress: str, console: Console, verbose: bool) -> Observer:
    if progress == "none":
        return Observer()
    if progress == "live" or (progress == "auto" and console.is_terminal):
        return LiveView(console, verbose)
    return PlainProgress(console, verbose)


def _exit_status(results: list[RunResult]) -> ExitStatus:
    if interrupts.current().interrupted or any(r.interrupted for r in results):
        return ExitStatus.INTERRUPTED
    passed = all(r.summary.passed for r in results)
    return ExitStatus.OK if passed else ExitStatus.CHECKS_FAILED


@main.command()
@click.argument("scenario", metavar="SCENARIO")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Apply overrides as run would."
)
@click.option("--duration", type=DURATION, help="As run's --duration.")
@reports_errors
def validate(scenario: str, overrides: tuple[str, ...], duration: float | None) -> None:
    """Check SCENARIO without running it, and show what it would do.

    \b
    Example:
      poolbench validate scenarios/rare-leak.yaml --set pool.pool_size=10
    """
    s = load_scenario(scenario, overrides, duration)
    planned = plan(s)  # every variant validated exactly as run validates it
    console = make_console()
    console.print(f"[green]✔[/] {escape(scenario)}: [bold]{escape(s.name)}[/] is valid")
    console.print(f"  pool      {escape(s.pool.describe())}")
    load = (
        f"rate {s.load.rate:g}/s, at most {s.load.concurrency} concurrent"
        if s.load.open_loop
        else f"{s.load.workers} workers"
    )
    console.print(
        f"  load      {load}, {format_duration(s.total_duration)}, "
        f"sampled every {format_duration(s.interval)}"
    )
    for phase in s.effective_phases() if s.phases else []:
        amount = f"{phase.rate:g}/s" if s.load.open_loop else f"{phase.workers} workers"
        console.print(
            f"  phase     {escape(phase.name or '')}: {format_duration(phase.duration)}, {amount}"
        )
    for g in s.workload:
        console.print(
            f"  group     {escape(g.label)}: share {g.share:g}, session {g.session}, "
            f"hold {g.hold.describe()}, think {g.think.describe()}, "
            f"query {escape(g.query)!r}"
        )
    for section in ("thresholds", "expect"):
        for metric, condition in getattr(s, section).items():
            console.print(f"  {section[:6]:<9} {metric} {escape(str(condition))}")
    for variant in planned if s.variants else []:
        console.print(f"  variant   {escape(variant.label)}")


@main.command()
@click.argument("scenario", metavar="SCENARIO")
@click.option(
    "--slo",
    "slos",
    multiple=True,
    metavar="FIGURE=MAX",
    help="A service-level objective each size must meet: checkout_wait_p99_ms=50, "
    "checkout_wait_p90_ms, checkout_wait_p50_ms, wait_probability=0.2, timeouts=0, "
    "error_rate. Repeatable.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    metavar="N",
    help="Size for N worker processes sharing the rate, each with its own pool.",
)
@click.option("--url", metavar="URL", help="Database URL, as for run.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override scenario keys, as for run.",
)
@click.option(
    "--calibration",
    "calibration_s",
    type=DURATION,
    default="10s",
    show_default=True,
    help="How long the calibration run measures the load.",
)
@click.option(
    "--trial",
    "trial_s",
    type=DURATION,
    default="10s",
    show_default=True,
    help="How long each trial at a candidate size runs.",
)
@click.option("--json", "json_path", metavar="PATH", help="Write everything as JSON ('-': stdout).")
@click.option(
    "--html", "html_path", metavar="PATH", help="Write the trials as an HTML report, side by side."
)
@reports_errors
def size(
    scenario: str,
    slos: tuple[str, ...],
    processes: int | None,
    url: str | None,
    overrides: tuple[str, ...],
    calibration_s: float,
    trial_s: float,
    json_path: str | None,
    html_path: str | None,
) -> None:
    """Find the smallest pool that meets an SLO at SCENARIO's rate, by model and measurement.

    SCENARIO must use an open-loop rate (load: {rate: 200/s}); an optional
    load.peak_rate sizes max_overflow. poolbench measures the rate and the mean time a
    request holds its connection, predicts each pool size with Erlang C (M/M/c), runs
    short trials around the prediction, and recommends pool_size, max_overflow and
    pool_timeout, with a create_engine() line to paste. With --processes it sizes each
    worker's pool and checks the fleet against the server's max_connections.

    \b
    Examples:
      poolbench size scenarios/sizing.yaml --slo checkout_wait_p99_ms=50 --slo timeouts=0
      poolbench size scenarios/sizing.yaml --slo checkout_wait_p99_ms=20 --processes 4 \\
          --url postgresql://app@db/app --json sizing.json
    """
    slo = parse_slos(slos)
    for flag, seconds in (("--calibration", calibration_s), ("--trial", trial_s)):
        if seconds <= 0:
            raise UsageError(f"{flag} must be a positive duration, got {seconds:g}s")
    check_outputs(json_path, html_path, None, None)
    loaded = load_scenario(scenario, overrides)
    human = make_console(stderr=json_path == "-")
    processes = processes or loaded.fleet.processes
    with interrupts.handling(), database_for(loaded, url) as target:
        planner = Planner(
            loaded,
            target,
            slo,
            processes,
            calibration_s,
            trial_s,
            observer_for=lambda label: Observer(),
            report=lambda text: human.print(f"[dim]{escape(text)}[/]"),
        )
        result = planner.plan()
    render_sizing(human, result)
    write_outputs(human, [], json_path, html_path, None, None, ResultDocument.of_sizing(result))
    if result.recommendation is None:  # nothing tried met the SLO: said above
        sys.exit(int(ExitStatus.CHECKS_FAILED))


@main.command()
@click.argument("result_file", metavar="RESULT.json", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", metavar="PATH", help="Write the HTML report here.")
@click.option("--csv", "csv_prefix", metavar="PREFIX", help="Write the CSV files here.")
@click.option("--junit", "junit_path", metavar="PATH", help="Write JUnit XML here.")
@click.option("--no-timeline", is_flag=True, help="Leave the timeline table out.")
@reports_errors
def report(
    result_file: str,
    html_path: str | None,
    csv_prefix: str | None,
    junit_path: str | None,
    no_timeline: bool,
) -> None:
    """Render a saved result (from run --json) again: in the terminal, or as files.

    \b
    Examples:
      poolbench report result.json
      poolbench report result.json --html report.html --junit checks.xml
    """
    check_outputs(None, html_path, csv_prefix, junit_path)
    document = load_document(read_result(result_file))
    console = make_console()
    try:
        with console.capture() as shown:  # all or nothing: a bad value shows only its error
            if not (html_path or csv_prefix or junit_path):
                if document.sizing is not None:
                    render_sizing(console, document.sizing)
                else:
                    render_results(console, document.runs, show_timeline=not no_timeline)
        console.file.write(shown.get())
        write_outputs(console, document.runs, None, html_path, csv_prefix, junit_path, document)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # a hand-edited or foreign document whose values have the wrong types
        raise UsageError(f"{result_file}: a value has the wrong type for a result: {exc}") from None


def read_result(path: str) -> dict[str, Any]:
    """A result document from disk, or a UsageError naming what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    runs = document.get("runs", [document]) if isinstance(document, dict) else None
    if not runs or not all(isinstance(r, dict) and "summary" in r for r in runs):
        raise UsageError(f"{path}: not a poolbench result (written by poolbench run --json)")
    try:
        load_document(document)
    except ValueError as exc:  # says what is wrong (a schema_version newer than ours, say)
        raise UsageError(f"{path}: {exc}") from None
    except (TypeError, AttributeError, KeyError) as exc:
        raise UsageError(f"{path}: not a poolbench result ({exc})") from None
    return document


@main.command()
@click.argument("result_files", nargs=-1, required=True, metavar="RESULT...")
@click.option("--json", "json_path", metavar="PATH", help="Write the merged result as JSON.")
@click.option("--html", "html_path", metavar="PATH", help="Write the HTML report here.")
@click.option("--csv", "csv_prefix", metavar="PREFIX", help="Write the CSV files here.")
@click.option("--junit", "junit_path", metavar="PATH", help="Write JUnit XML here.")
@click.option("--no-timeline", is_flag=True, help="Leave the timeline table out.")
@reports_errors
def merge(
    result_files: tuple[str, ...],
    json_path: str | None,
    html_path: str | None,
    csv_prefix: str | None,
    junit_path: str | None,
    no_timeline: bool,
) -> None:
    """Merge the results of a run's nodes (run --join ... --json) into one.

    Timelines are aligned on the common start and summed, histograms merged exactly,
    peaks taken from the summed samples; the fleet's worst case (every node's processes
    x (pool_size + max_overflow)) is set against the server's max_connections, and the
    scenario's thresholds are evaluated on the merged figures (exit code as for run).

    \b
    Examples:
      poolbench merge node-0.json node-1.json node-2.json
      poolbench merge results/node-*.json --json fleet.json --html fleet.html
    """
    check_outputs(json_path, html_path, csv_prefix, junit_path)
    results = []
    for path in result_files:
        runs = load_document(read_result(path)).runs
        if len(runs) != 1:
            raise UsageError(f"{path}: holds {len(runs)} runs; a node's result holds one")
        results.append(runs[0])
    merged = merge_nodes(results, result_files)
    human = make_console(stderr=json_path == "-")
    render_results(human, [merged], show_timeline=not no_timeline)
    write_outputs(human, [merged], json_path, html_path, csv_prefix, junit_path)
    sys.exit(int(_exit_status([merged])))


def _description_only(path: Path, exc: PoolbenchError) -> str:
    """A bundled scenario that cannot be loaded here (an app whose import needs
    DATABASE_URL or a framework not installed): its description as written, and why."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        description = " ".join(str(data.get("description", "")).split())
    except (OSError, yaml.YAMLError, AttributeError):
        description = ""
    why = str(exc).rsplit(": ", 1)[-1]
    return (
        f"{escape(description)} [dim](here: {escape(why)})[/]"
        if description
        else (f"[red]cannot load here: {escape(str(exc))}[/]")
    )


@main.command(name="scenarios")
def list_scenarios() -> None:
    """List the bundled scenarios and what each one shows."""
    console = make_console()
    if not BUNDLED_DIR.is_dir():
        console.print("no bundled scenarios found next to this installation")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("scenario")
    table.add_column("what it shows")
    for name, path in bundled_scenarios().items():
        try:
            s = load_scenario(path)
            text = escape(" ".join(s.description.split()))
        except PoolbenchError as exc:  # an app that needs its setting, or its framework
            text = _description_only(path, exc)
        table.add_row(name, text)
    console.print(table)
    console.print(f"\n[dim]in {BUNDLED_DIR}; run one with: poolbench run NAME[/]")


@main.command(name="metrics")
def list_metrics() -> None:
    """List the figures thresholds and expect can name, e.g. timeouts: "== 0"."""
    console = make_console()
    table = Table(box=None, header_style="bold")
    table.add_column("figure")
    table.add_column("meaning")
    for name, meaning in checks.METRICS.items():
        table.add_row(name, meaning)
    console.print(table)
    console.print(
        '\n[dim]conditions: "< 50", "<= 50", "> 0", ">= 1", "== 0", "!= 0", '
        '"between 10 and 20"; messages take "contains \'text\'"[/]'
    )


if __name__ == "__main__":  # pragma: no cover
    main()
