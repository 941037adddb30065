"""The live view's words, from the facts the run header carries (no database)."""

from __future__ import annotations

from poolbench.engine.runner import _load_info, _pool_info
from poolbench.output.live import header_lines
from poolbench.output.text import load_line
from poolbench.result import DatabaseInfo, RunHeader
from poolbench.scenario import parse_scenario

CLOSED = """\
name: words
pool: {pool_size: 4, max_overflow: 2, pool_timeout: 1s, pool_pre_ping: true}
workload:
  - {name: well-behaved, share: 97%}
  - {session: leaky, share: 3%}
load: {workers: 10}
phases:
  - {duration: 10s, workers: 5}
  - {duration: 20s}
"""
OPEN = """\
name: words
workload: {hold: 20ms}
load: {rate: 150/s, max_concurrency: 40}
duration: 1m
"""


def header(text: str, processes: int = 1) -> RunHeader:
    s = parse_scenario(text, "s.yaml")
    return RunHeader(
        run_id="r1",
        scenario=s.name,
        description="",
        database=DatabaseInfo("postgresql://u@h/db", "postgresql", "psycopg2", "16.2"),
        pool=_pool_info(s),
        load=_load_info(s),
        pool_size=s.pool.pool_size * processes,
        capacity=None if s.pool.capacity is None else s.pool.capacity * processes,
        concurrency=s.load.concurrency,
        phased=bool(s.phases),
        duration_s=s.total_duration,
        interval_s=s.interval,
        processes=processes,
    )


def test_load_line_of_a_closed_loop_fleet_with_phases_and_groups() -> None:
    assert load_line(header(CLOSED, processes=2)) == (
        "closed loop, 10 workers over 2 processes, 2 phases; 97% well-behaved, 3% leaky; 30s"
    )


def test_load_line_of_an_open_loop() -> None:
    assert load_line(header(OPEN)) == (
        "open loop, 150/s, at most 40 concurrent; closed sessions; 1m"
    )


def test_the_pool_line_is_the_create_engine_arguments() -> None:
    lines = header_lines(header(CLOSED, processes=2))
    assert lines[2] == (
        "pool      pool_size=4, max_overflow=2, pool_timeout=1, pool_pre_ping=True"
        " [dim]in each of 2 processes[/]"
    )


def test_the_sizing_fleet_line_uses_the_recommended_capacity() -> None:
    import io
    import json
    from pathlib import Path

    from rich.console import Console

    from poolbench.output.sizing import render_sizing
    from poolbench.result.document import load_document

    data = json.loads((Path(__file__).parent / "data" / "size.json").read_text())
    data["recommendation"] |= {"processes": 2, "pool_size": 6, "max_overflow": 3}
    sizing = load_document(data).sizing
    assert sizing is not None and sizing.recommendation.capacity == 9
    console = Console(file=io.StringIO(), width=120, record=True)
    render_sizing(console, sizing)
    assert "fleet: 2 × 9 = 8 connections at most; the server had 100 free" in (
        console.export_text()
    )
