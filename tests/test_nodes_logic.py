"""Pure logic of runs across hosts, with fake clocks: offsets, sleeping, indexes, flags."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from poolbench.cli import main
from poolbench.errors import UsageError
from poolbench.nodes.clock import measure_offset, sleep_until
from poolbench.nodes.node_run import node_index
from poolbench.nodes.session import NodeOutcome
from poolbench.result import GroupLatencies, NodeInfo, RunResult


class FakeClock:
    """A wall clock that advances only when asked (or when slept on)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + 0.0001  # a real sleep always overshoots a little


def test_offset_comes_from_the_round_trip_with_the_smallest_delay():
    clock = FakeClock(1000.0)
    delays = iter([0.050, 0.002, 0.030])  # one way, each direction

    def server_now() -> float:
        delay = next(delays)
        clock.now += delay
        reading = clock.now + 7.0  # the server's clock runs 7 s ahead
        clock.now += delay
        return reading

    offset = measure_offset(server_now, round_trips=3, wall=clock)
    assert offset.offset_s == pytest.approx(7.0)
    assert offset.rtt_s == pytest.approx(0.004)
    assert offset.local(2007.0) == pytest.approx(2000.0)


def test_sleep_until_wakes_at_the_instant_and_says_how_late():
    clock = FakeClock(100.0)
    late = sleep_until(101.0, wall=clock, sleep=clock.sleep)
    assert 101.0 <= clock.now < 101.001
    assert late == pytest.approx(clock.now - 101.0)
    assert clock.sleeps[0] == pytest.approx(1.0 - 0.002)  # one long sleep, then short ones
    assert sleep_until(50.0, wall=clock, sleep=clock.sleep) == pytest.approx(clock.now - 50.0)


def test_node_index_from_the_flag_or_the_indexed_job():
    assert node_index(2, {"JOB_COMPLETION_INDEX": "5"}) == 2
    assert node_index(None, {"JOB_COMPLETION_INDEX": "5"}) == 5
    with pytest.raises(UsageError, match="--join needs --node-index, or JOB_COMPLETION_INDEX"):
        node_index(None, {})
    with pytest.raises(UsageError, match="JOB_COMPLETION_INDEX='x' is not a node index"):
        node_index(None, {"JOB_COMPLETION_INDEX": "x"})


def test_outcome_line_names_the_missing_nodes():
    assert NodeOutcome([0, 1, 2, 3], []).line(4) == "nodes: 4 of 4 finished"
    assert NodeOutcome([0, 1, 3], [2]).line(4) == "nodes: 3 of 4 finished (node 2 did not)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "3"], "poolbench: error: --nodes and --node-index need --join NAME\n"),
        (
            ["--join", "x"],
            "poolbench: error: --join needs --nodes N (how many nodes the run has)\n",
        ),
        (
            ["--join", "x", "--nodes", "2"],
            "poolbench: error: --join needs --node-index, or JOB_COMPLETION_INDEX "
            "(set by a Kubernetes Indexed Job)\n",
        ),
        (
            ["--join", "x", "--nodes", "2", "--node-index", "2"],
            "poolbench: error: --node-index 2 is outside 0..1 (--nodes 2)\n",
        ),
    ],
)
def test_node_flags_are_checked_before_anything_runs(args, message, monkeypatch):
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    url = "postgresql://nobody@127.0.0.1:1/none"  # never reached
    result = CliRunner().invoke(main, ["run", "closed-sessions", "--url", url, *args])
    assert result.exit_code == 2, result.output
    assert result.output.endswith(message)


def test_node_and_latency_counts_round_trip_through_json():
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "data" / "rare-leak.json").read_text())
    result = RunResult.from_dict(data)
    assert result.node is None and "node" not in result.to_dict()
    result.node = NodeInfo("r", 1, 3, "h", 10.5, 10.5002, 0.2, -1.5, 0.1, [0, 1], [2])
    result.histograms = [GroupLatencies("g", {15: 3, 1200: 1}, {5000: 4})]
    again = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.node == result.node
    assert again.histograms == result.histograms


# -- merge, with results made from a saved one -------------------------------------------------


def node_result(index: int, shift: int = 0, run: str = "r", start: float = 100.0) -> RunResult:
    """tests/data/rare-leak.json as node ``index`` of run ``run``, its gauges shifted so
    that the nodes' peaks fall on different samples."""
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "data" / "rare-leak.json").read_text())
    result = RunResult.from_dict(data)
    result.node = NodeInfo(run, index, 3, f"host-{index}", start, start + index / 1000, 0.1, 0, 0)
    result.summary.server.worst_case = 8
    for k, sample in enumerate(result.timeline):
        sample.checked_out = (k + shift) % len(result.timeline)
    result.histograms = [
        GroupLatencies(g.name, {100 + index: g.operations, 5000: index}, {7000: g.operations})
        for g in result.summary.groups
    ]
    return result


def test_merge_sums_counters_merges_histograms_exactly_and_takes_peaks_of_the_sum():
    from poolbench.nodes.merge import merge_nodes

    parts = [node_result(0, 0), node_result(1, 3), node_result(2, 6)]
    merged = merge_nodes(parts)
    one = parts[0].summary
    assert merged.summary.operations == 3 * one.operations
    assert merged.summary.timeouts == 3 * one.timeouts
    assert merged.summary.errors["timeout"].count == 3 * one.errors["timeout"].count
    counts = sum(g.operations for g in one.groups)
    # every value of every node, once: each group's counts plus index x 5 ms
    assert merged.summary.latencies.checkout_wait_ms.count == 3 * counts + len(one.groups) * (
        0 + 1 + 2
    )
    assert merged.summary.latencies.checkout_wait_ms.max == 5.0
    assert merged.summary.latencies.hold_ms.p50 == 7.0
    # the peak of the sum, not the sum of the peaks (which would be 3 x 9 = 27)
    n = len(parts[0].timeline)
    sums = [sum((k + s) % n for s in (0, 3, 6)) for k in range(n)]
    assert merged.summary.peaks.checked_out == max(sums) < 27
    assert [s.checked_out for s in merged.timeline] == sums
    assert merged.summary.server.worst_case == 3 * one.server.worst_case
    assert merged.merge is not None and merged.merge.line() == "nodes: 3 of 3 finished"
    assert merged.merge.start_skew_ms == 2.0
    assert [n.host for n in merged.merge.per_node] == ["host-0", "host-1", "host-2"]
    again = RunResult.from_dict(merged.to_dict())
    assert again.merge == merged.merge


def test_merge_evaluates_thresholds_on_the_merged_figures():
    from poolbench.nodes.merge import merge_nodes

    parts = [node_result(0), node_result(1)]
    ops = parts[0].summary.operations
    for p in parts:
        p.scenario.thresholds = {"operations": f"> {ops + 1}"}
        p.scenario.expect = {}
    merged = merge_nodes(parts)
    assert merged.summary.passed and merged.summary.thresholds[0].value == 2 * ops
    assert merged.merge is not None
    assert merged.merge.line() == "nodes: 2 of 3 finished (node 2 did not)"
    assert merged.notes[0] == "nodes: 2 of 3 finished (node 2 did not)"


def test_merge_refuses_what_is_not_one_run():
    from poolbench.nodes.merge import merge_nodes

    plain = node_result(0)
    plain.node = None
    with pytest.raises(UsageError, match=r"^b.json: not the result of a node \(written by"):
        merge_nodes([node_result(0), plain], ["a.json", "b.json"])
    with pytest.raises(UsageError, match=r"^a\.json and b\.json are both node 1$"):
        merge_nodes([node_result(1), node_result(1)], ["a.json", "b.json"])
    with pytest.raises(UsageError, match=r"^b\.json is node 1 of run 'other' started 100\.000"):
        merge_nodes([node_result(0), node_result(1, run="other")], ["a.json", "b.json"])


def test_merge_command_renders_every_output_and_exits_as_run_would(tmp_path):
    import json

    files = []
    for i in range(2):
        result = node_result(i)
        result.scenario.thresholds = {"timeouts": "== 0"}  # rare-leak times out: breached
        path = tmp_path / f"node-{i}.json"
        path.write_text(json.dumps(result.to_dict()))
        files.append(str(path))
    out = tmp_path / "m"
    outputs = ["--json", f"{out}.json", "--html", f"{out}.html"]
    outputs += ["--csv", str(out), "--junit", f"{out}.xml"]
    result = CliRunner().invoke(main, ["merge", *files, *outputs])
    assert result.exit_code == 1, result.output
    assert "per node" in result.output
    assert "run r: merged node 0, 1 · nodes: 2 of 3 finished (node 2 did not)" in result.output
    for suffix in (".json", ".html", ".xml", "_timeline.csv", "_summary.csv"):
        assert (tmp_path / f"m{suffix}").stat().st_size > 0
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["merge"]["merged"] == [0, 1] and doc["summary"]["passed"] is False
    plain = tmp_path / "plain.json"
    data = json.loads((tmp_path / "node-0.json").read_text())
    del data["node"]
    plain.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["merge", files[1], str(plain)])
    assert result.exit_code == 2
    assert result.output.endswith(
        f"poolbench: error: {plain}: not the result of a node "
        "(written by poolbench run --join ... --json)\n"
    )


def test_a_run_across_nodes_runs_one_scenario_not_variants():
    url = "postgresql://nobody@127.0.0.1:1/none"  # never reached
    args = ["run", "closed-sessions", "--url", url, "--join", "x", "--nodes", "2"]
    args += ["--node-index", "0", "--vary", "pool_pre_ping=false,true"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.endswith(
        "poolbench: error: a run across nodes runs one scenario: drop --vary (or the "
        "scenario's variants)\n"
    )


def test_node_line_says_who_finished_or_that_it_cannot_tell():
    from poolbench.output.nodes import node_line

    node = NodeInfo("r", 1, 3, "h", 1795383201.4293, 0, 0.66, -1.25, 0.1, [0, 1, 2], [], 2345)
    assert node_line(node) == (
        "node 1 of 3 in run [bold]r[/] on h: started 21:33:21.429 UTC after waiting 2.3s for "
        "the others (woke 0.7 ms late; clock offset to the server -1.2 ms) · nodes: 3 of 3 "
        "finished"
    )
    node.finished, node.missing = [0, 1], [2]
    assert node_line(node).endswith("· [red]nodes: 2 of 3 finished[/] (missing node 2)")
    node.finished, node.missing = [], []
    assert node_line(node).endswith("· [yellow]nodes: unknown which of 3 finished[/]")
    lost = NodeOutcome(lost_coordinator="run 'r': lost the coordinator: gone")
    assert lost.line(3) == (
        "nodes: unknown which of 3 finished (run 'r': lost the coordinator: gone)"
    )


def test_the_html_report_of_a_merge_has_a_row_per_node():
    from poolbench.nodes.merge import merge_nodes
    from poolbench.output.html import render_html
    from poolbench.result.document import ResultDocument

    merged = merge_nodes([node_result(0), node_result(2)])
    page = render_html(ResultDocument.of([merged]))
    assert '<section id="nodes"><h2>Nodes</h2>' in page
    assert "<td>host-0</td>" in page and "<td>host-2</td>" in page
    assert "Missing: node 1." in page
    alone = render_html(ResultDocument.of([node_result(1)]))
    assert "Node 1 of 3 in run r on host-1" in alone


def test_report_of_a_merged_result_shows_the_nodes_again(tmp_path):
    import json

    from poolbench.nodes.merge import merge_nodes

    path = tmp_path / "merged.json"
    path.write_text(json.dumps(merge_nodes([node_result(0), node_result(1)]).to_dict()))
    result = CliRunner().invoke(main, ["report", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "per node" in result.output and "host-1" in result.output
    assert "run r: merged node 0, 1 · nodes: 2 of 3 finished (node 2 did not)" in result.output


def test_waiting_lines():
    from poolbench.output.nodes import waiting_line

    assert waiting_line("n", 4, [1, 3], None) == "run n: 2 of 4 nodes joined; waiting for node 1, 3"
    assert waiting_line("n", 4, [], 1795383201.4293) == (
        "run n: all 4 nodes joined; measuring starts at 21:33:21.429 UTC (the database "
        "server's clock)"
    )


def test_interval_percentiles_of_a_merge_come_from_every_node_s_waits():
    from poolbench.metrics.histogram import percentile_of_counts
    from poolbench.nodes.merge import merge_samples

    a, b = node_result(0).timeline[3], node_result(1).timeline[3]
    a.wait_counts = {100: 98, 900: 1}  # alone: p99 0.1 ms
    b.wait_counts = {200: 50, 50_000: 2}  # alone: p99 50 ms
    a.checkout_wait_p99_ms, b.checkout_wait_p99_ms = 0.1, 50.0
    merged = merge_samples([a, b])
    # 151 waits: the 150th smallest (ceil(0.99 x 151)) is 50 ms
    assert merged.checkout_wait_p99_ms == percentile_of_counts(
        {100: 98, 900: 1, 200: 50, 50_000: 2}, 99
    )
    a.wait_counts = {100: 198, 900: 1}
    b.wait_counts = {200: 100, 50_000: 1}
    assert merge_samples([a, b]).checkout_wait_p99_ms == 0.2  # not the worst node's 50
    assert merge_samples([a, b]).wait_counts is None
    b.wait_counts = None  # an older node's sample: the worst node's, as a bound
    assert merge_samples([a, b]).checkout_wait_p99_ms == 50.0
