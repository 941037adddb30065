"""Run a scenario as one node of a run across hosts (``poolbench run --join``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlalchemy.engine import URL

from ..db.target import Target
from ..engine.runner import Observer, RunOptions, run_scenario
from ..errors import UsageError
from ..result import NodeInfo, RunResult
from ..scenario.variants import PlannedRun
from .session import NodeSession, NodeSpec, WaitReport

INDEX_VARIABLE = "JOB_COMPLETION_INDEX"  # set by a Kubernetes Indexed Job in every pod


def node_index(given: int | None, environ: Mapping[str, str]) -> int:
    """--node-index, else the pod's completion index; UsageError when neither is there."""
    if given is not None:
        return given
    text = environ.get(INDEX_VARIABLE)
    if text is None:
        raise UsageError(
            f"--join needs --node-index, or {INDEX_VARIABLE} (set by a Kubernetes Indexed Job)"
        )
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{INDEX_VARIABLE}={text!r} is not a node index") from None


def run_as_node(
    planned: Sequence[PlannedRun],
    target: Target,
    spec: NodeSpec,
    options: RunOptions | None = None,
    observer: Observer | None = None,
    coordinator: URL | None = None,
    report: WaitReport | None = None,
) -> RunResult:
    """Run the scenario on this node: measuring starts when every node of ``spec``'s run
    has joined, at the common instant; the result says which node it is and which of
    the others finished."""
    if len(planned) != 1:
        raise UsageError(
            "a run across nodes runs one scenario: drop --vary (or the scenario's variants)"
        )
    node = NodeSession(spec, coordinator or target.url, target.scrub)

    def gate() -> float:
        node.join()
        return node.wait_for_start(report).start_at

    opts = replace(options or RunOptions(), start_gate=gate, keep_histograms=True)
    try:
        result = run_scenario(planned[0].scenario, target, opts, observer)
    except BaseException:
        node.leave()
        raise
    start = node.start
    assert start is not None  # the runner passed the gate
    outcome = node.finish()
    result.node = NodeInfo(
        run_name=spec.run_name,
        index=spec.index,
        nodes=spec.nodes,
        host=node.host,
        start_at=round(start.start_at, 6),
        server_at_start=round(start.server_at_start, 6),
        late_ms=round(start.late_s * 1000, 3),
        clock_offset_ms=round(start.clock.offset_s * 1000, 3),
        clock_rtt_ms=round(start.clock.rtt_s * 1000, 3),
        finished=outcome.finished,
        missing=outcome.missing,
        waited_ms=round(start.waited_s * 1000, 1),
        end_wait_ms=round(outcome.waited_s * 1000, 1),
    )
    if outcome.missing or outcome.lost_coordinator:
        result.notes.append(outcome.line(spec.nodes))
    return result
