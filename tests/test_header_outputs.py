"""The header (scenario, database, pool, load) is shown where no live view showed it:
poolbench report, and run --progress none."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from poolbench.cli import main

DATA = Path(__file__).parent / "data"


def test_report_shows_the_header():
    result = CliRunner().invoke(main, ["report", str(DATA / "failover.json")])
    assert result.exit_code in (0, 1), result.output
    lines = result.output.splitlines()
    assert any(line.startswith("poolbench · failover · run ") for line in lines)
    assert "pool      pool_size=8, max_overflow=0, pool_timeout=2" in lines
    assert "load      closed loop, 3 workers, 2 phases; closed sessions; 8s" in lines
    assert any(line.startswith("database  postgresql+psycopg2://postgres@") for line in lines)


def test_run_with_progress_none_shows_the_header_once(tmp_path: Path, pg_url: str):
    scenario = tmp_path / "h.yaml"
    scenario.write_text(
        "name: header-check\npool: {pool_size: 2, pool_timeout: 1s}\n"
        "workload: {hold: 5ms}\nload: {workers: 2}\nduration: 0.5s\ninterval: 0.25s\n"
    )
    env = {**os.environ, "POOLBENCH_URL": ""}
    result = CliRunner().invoke(
        main, ["run", str(scenario), "--url", pg_url, "--progress", "none"], env=env
    )
    assert result.exit_code == 0, result.output
    headers = [line for line in result.output.splitlines() if line.startswith("poolbench · ")]
    assert len(headers) == 1 and headers[0].startswith("poolbench · header-check · run ")
    assert "pool      pool_size=2, max_overflow=10, pool_timeout=1" in result.output
