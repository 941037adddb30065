"""One result from the results of a run's nodes (``poolbench merge``).

Every node's timeline starts at the common start, so samples line up by their position
(``t_s / interval``). Counters and gauges are summed sample by sample, and the run's
peaks are the peaks of those sums: what the database saw from the whole fleet at one
instant, not the sum of peaks reached at different instants. Latency histograms are
merged exactly from the counts each node keeps (the same merge a fleet of processes
uses), errors, leak sites and warnings with the fleet's rules. Thresholds are evaluated
on the merged figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any

from .. import checks
from ..engine import readings
from ..errors import UsageError
from ..metrics.histogram import LatencyHistogram, percentile_of_counts
from ..result import (
    Errors,
    FaultEvent,
    GroupSummary,
    HttpEndpoint,
    Latencies,
    Leaks,
    MergeInfo,
    NodeFigures,
    NodeInfo,
    Peaks,
    Percentiles,
    PoolEvents,
    RunResult,
    Sample,
    ServerFigures,
    Summary,
)


def merge_nodes(results: Sequence[RunResult], names: Sequence[str] | None = None) -> RunResult:
    """The nodes' results as one run. ``names`` (file names) label the errors; UsageError
    when the results are not nodes of one run."""
    names = list(names or [f"result {i + 1}" for i in range(len(results))])
    nodes = _check(results, names)
    ordered = sorted(zip(nodes, results, strict=True), key=lambda pair: pair[0].index)
    nodes = [n for n, _ in ordered]
    parts = [r for _, r in ordered]
    first, node = parts[0], nodes[0]
    timeline = merge_timelines([r.timeline for r in parts], first.interval_s)
    summary = _summary(parts, timeline)
    merged_indexes = [n.index for n in nodes]
    seen_finished = {i for n in nodes for i in n.finished} | set(merged_indexes)
    missing = [i for i in range(node.nodes) if i not in merged_indexes]
    starts = [n.server_at_start for n in nodes]
    info = MergeInfo(
        run_name=node.run_name,
        nodes=node.nodes,
        merged=merged_indexes,
        finished=sorted(seen_finished),
        missing=missing,
        start_skew_ms=round((max(starts) - min(starts)) * 1000, 3),
        per_node=[_figures(n, r) for n, r in zip(nodes, parts, strict=True)],
    )
    summary.server.worst_case = _sum_or_none([r.summary.server.worst_case for r in parts])
    summary.server.headroom = _headroom(first, summary.server.worst_case)
    checks.evaluate(
        summary,
        checks.parse_conditions(dict(first.scenario.thresholds)),
        checks.parse_conditions(dict(first.scenario.expect)),
        first.scenario.expected_errors,
    )
    notes = [info.line()] if missing else []
    for n, r in zip(nodes, parts, strict=True):
        notes += [f"node {n.index}: {note}" for note in r.notes]
    faults = [
        FaultEvent(f.t_s, f.kind, f"node {n.index}: {f.detail}", f.ended, f.error)
        for n, r in zip(nodes, parts, strict=True)
        for f in r.faults
    ]
    return RunResult(
        run_id=node.run_name,
        scenario=first.scenario,
        started_at=first.started_at,
        database=first.database,
        pool=first.pool,
        load=first.load,
        interval_s=first.interval_s,
        timeline=timeline,
        summary=summary,
        interrupted=any(r.interrupted for r in parts),
        notes=notes,
        faults=sorted(faults, key=lambda f: f.t_s),
        merge=info,
    )


def _check(results: Sequence[RunResult], names: Sequence[str]) -> list[NodeInfo]:
    """Each result's NodeInfo, once they are known to be distinct nodes of one run."""
    if not results:
        raise UsageError("nothing to merge: give the JSON results of a run's nodes")
    nodes: list[NodeInfo] = []
    for name, result in zip(names, results, strict=True):
        if result.node is None or result.histograms is None:
            raise UsageError(
                f"{name}: not the result of a node (written by poolbench run --join ... --json)"
            )
        nodes.append(result.node)
    seen: dict[int, str] = {}
    for name, node in zip(names, nodes, strict=True):
        if node.run_name != nodes[0].run_name or node.start_at != nodes[0].start_at:
            raise UsageError(
                f"{name} is node {node.index} of run {node.run_name!r} started "
                f"{node.start_at:.3f}, {names[0]} of run {nodes[0].run_name!r} started "
                f"{nodes[0].start_at:.3f}: merge the nodes of one run"
            )
        if node.index in seen:
            raise UsageError(f"{seen[node.index]} and {name} are both node {node.index}")
        seen[node.index] = name
    return nodes


# -- the timeline ------------------------------------------------------------------------------


def merge_timelines(timelines: Sequence[Sequence[Sample]], interval_s: float) -> list[Sample]:
    """Samples at the same instant of the common start, summed (see :func:`merge_samples`)."""
    at: dict[int, list[Sample]] = {}
    for timeline in timelines:
        for sample in timeline:
            at.setdefault(round(sample.t_s / interval_s), []).append(sample)
    return [merge_samples(at[key]) for key in sorted(at)]


def merge_samples(samples: Sequence[Sample]) -> Sample:
    """One sample for the nodes': counts and gauges summed, server counts summed by state,
    the interval's checkout-wait percentiles from the nodes' interval histograms merged
    (the worst node's, for results that kept none)."""
    values: dict[str, Any] = {}
    for f in fields(Sample):
        items = [getattr(s, f.name) for s in samples]
        if f.name == "t_s":
            values[f.name] = min(items)
        elif f.name == "phase":
            values[f.name] = items[0]
        else:
            values[f.name] = _combine([v for v in items if v is not None])
    waits = [s.wait_counts for s in samples]
    if all(w is not None for w in waits):
        counts = values.pop("wait_counts") or {}
        values["checkout_wait_p99_ms"] = percentile_of_counts(counts, 99)
        if values.get("checkout_wait_p50_ms") is not None:
            values["checkout_wait_p50_ms"] = percentile_of_counts(counts, 50)
    values["wait_counts"] = None  # folded into the percentiles
    return Sample(**values)


def _combine(items: list[Any]) -> Any:
    if not items:
        return None
    if isinstance(items[0], bool):
        return any(items)
    if isinstance(items[0], int):
        return sum(items)
    if isinstance(items[0], float):
        return max(items)
    if isinstance(items[0], dict):
        total: dict[str, int] = {}
        for item in items:
            for key, value in item.items():
                total[key] = total.get(key, 0) + value
        return total
    if isinstance(items[0], str):
        return " | ".join(items)
    return items[0]


# -- the summary -------------------------------------------------------------------------------


def _summary(parts: Sequence[RunResult], timeline: list[Sample]) -> Summary:
    summaries = [r.summary for r in parts]
    wait, hold = LatencyHistogram(), LatencyHistogram()
    groups = _groups(parts)
    for g in groups.values():
        wait.add(g[0])
        hold.add(g[1])
    duration = max(s.duration_s for s in summaries)
    operations = _total(s.operations for s in summaries)
    server = [s.server_connections["total"] for s in timeline if s.server_connections]
    stale = [s.stale for s in timeline if s.stale is not None]
    events = PoolEvents()
    for s in summaries:
        events = events.plus(s.pool_events)
    # each node counted its checkouts that blocked in its pool's queue: weight by checkouts
    counted = [
        (s.latencies.wait_probability, s.latencies.checkout_wait_ms.count)
        for s in summaries
        if s.latencies.wait_probability is not None
    ]
    checkouts = sum(n for _, n in counted)
    fraction = sum(p * n for p, n in counted) / checkouts if checkouts else None
    return Summary(
        duration_s=duration,
        operations=operations,
        ok=_total(s.ok for s in summaries),
        throughput_ops_s=round(operations / duration, 2) if duration else 0.0,
        errors=Errors(
            timeouts=_total(s.timeouts for s in summaries),
            first_timeout_at_s=readings._at_first_timeout(summaries, "first_timeout_at_s"),
            first_timeout_message=readings._at_first_timeout(summaries, "first_timeout_message"),
            kinds=readings._error_kinds(summaries, "errors"),
            injected=_total(s.injected_errors for s in summaries),
        ),
        latencies=Latencies(
            checkout_wait_ms=wait.percentiles(),
            hold_ms=hold.percentiles(),
            wait_probability=None if fraction is None else round(fraction, 4),
        ),
        peaks=Peaks(
            checked_out=max((s.peak("checked_out") for s in timeline), default=0),
            overflow=max((s.peak("overflow") for s in timeline), default=0),
            waiting=max((s.peak("waiting") for s in timeline), default=0),
            server_connections=max(server) if server else None,
            stale=max(stale) if stale else None,
        ),
        leaks=Leaks(
            sessions=_total(s.leaks.sessions for s in summaries),
            at_first_timeout=_first_timed(summaries, lambda s: s.leaks.at_first_timeout),
            sites=readings._leak_sites([s.leaks for s in summaries], "sites"),
            holders_at_first_timeout=_first_timed(
                summaries, lambda s: s.leaks.holders_at_first_timeout
            ),
        ),
        keepalive_pings=_total(s.keepalive_pings for s in summaries),
        keepalive_errors=_total(s.keepalive_errors for s in summaries),
        dropped_arrivals=_total(s.dropped_arrivals for s in summaries),
        late_arrivals=_total(s.late_arrivals for s in summaries),
        pool_events=events,
        sqlalchemy_warnings=readings._sqlalchemy_messages(summaries, "sqlalchemy_warnings"),
        groups=[_group(parts, name, h) for name, h in groups.items()],
        server=ServerFigures(
            connections_at_exit=_sum_or_none([s.server.connections_at_exit for s in summaries]),
            terminated_at_exit=_total(s.server.terminated_at_exit for s in summaries),
        ),
        processes=_total(s.processes for s in summaries),
        http=_http(summaries),
    )


def _http(summaries: Sequence[Summary]) -> list[HttpEndpoint]:
    """Each endpoint's responses summed over the nodes. Its latency percentiles are one
    node's own when only one node drove it; from several nodes they cannot be merged (a
    result keeps percentiles, not the histogram), so they are left out (null), never
    averaged."""
    seen: dict[str, list[HttpEndpoint]] = {}
    for s in summaries:
        for e in s.http:
            seen.setdefault(e.name, []).append(e)
    merged = []
    for name, parts in seen.items():
        statuses: dict[str, int] = {}
        for e in parts:
            for status, n in e.statuses.items():
                statuses[status] = statuses.get(status, 0) + n
        latency = (
            parts[0].latency_ms
            if len(parts) == 1
            else Percentiles(count=sum(e.latency_ms.count for e in parts))
        )
        merged.append(
            HttpEndpoint(
                name=name,
                requests=sum(e.requests for e in parts),
                statuses=dict(sorted(statuses.items())),
                pool_timeouts=sum(e.pool_timeouts for e in parts),
                latency_ms=latency,
            )
        )
    return merged


def _first_timed(summaries: Sequence[Summary], fact: Callable[[Summary], Any]) -> Any:
    """A fact about the run's first timeout: from the node whose timeout came first."""
    timed = [s for s in summaries if s.first_timeout_at_s is not None]
    return fact(min(timed, key=lambda s: s.first_timeout_at_s or 0.0)) if timed else None


def _groups(parts: Sequence[RunResult]) -> dict[str, tuple[LatencyHistogram, LatencyHistogram]]:
    """Every group's wait and hold histograms, merged exactly across the nodes."""
    merged: dict[str, tuple[LatencyHistogram, LatencyHistogram]] = {}
    for result in parts:
        for g in result.histograms or []:
            wait, hold = merged.setdefault(g.name, (LatencyHistogram(), LatencyHistogram()))
            wait.record_counts(g.wait)
            hold.record_counts(g.hold)
    return merged


def _group(
    parts: Sequence[RunResult], name: str, histograms: tuple[LatencyHistogram, LatencyHistogram]
) -> GroupSummary:
    own = [g for r in parts for g in r.summary.groups if g.name == name]
    return GroupSummary(
        name=name,
        session=own[0].session if own else "",
        operations=_total(g.operations for g in own),
        ok=_total(g.ok for g in own),
        errors=_total(g.errors for g in own),
        leaked=_total(g.leaked for g in own),
        checkout_wait_ms=histograms[0].percentiles(),
        hold_ms=histograms[1].percentiles(),
    )


def _figures(node: NodeInfo, result: RunResult) -> NodeFigures:
    s = result.summary
    return NodeFigures(
        index=node.index,
        host=node.host,
        processes=s.processes,
        operations=s.operations,
        ok=s.ok,
        timeouts=s.timeouts,
        errors=s.error_count,
        throughput_ops_s=s.throughput_ops_s,
        checkout_wait_p99_ms=s.latencies.checkout_wait_ms.p99,
        max_checked_out=s.peaks.checked_out,
        max_server_connections=s.peaks.server_connections,
        worst_case_connections=s.server.worst_case,
        server_at_start=node.server_at_start,
        late_ms=node.late_ms,
        clock_offset_ms=node.clock_offset_ms,
        interrupted=result.interrupted,
    )


def _headroom(result: RunResult, worst_case: int | None) -> int | None:
    """The server's max_connections (less the slots reserved for superusers, unless the
    run's user is one) minus the fleet's worst case."""
    db = result.database
    if worst_case is None or db.max_connections is None:
        return None
    reserved = 0 if db.superuser else (db.reserved_connections or 0)
    return db.max_connections - reserved - worst_case


def _total(values: Iterable[int | None]) -> int:
    """A sum where a figure an older result lacks counts as 0."""
    return sum(v or 0 for v in values)


def _sum_or_none(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)
