"""A result's place in a run across hosts (``run --join``), and what a merge needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from .codec import Record


@dataclass
class GroupLatencies(Record):
    """One workload group's whole-run latency histograms as counts ({micros: how many}),
    kept in a node's result so that ``poolbench merge`` merges them exactly."""

    name: str
    wait: dict[int, int]
    hold: dict[int, int]


@dataclass
class NodeInfo(Record):
    """Which node of which run a result is. Instants are the database server's clock,
    in epoch seconds."""

    run_name: str
    index: int
    nodes: int
    host: str
    start_at: float  # the common start every node agreed on
    server_at_start: float  # the server's clock read the moment this node started
    late_ms: float  # how long after its estimate of start_at this node woke
    clock_offset_ms: float  # server clock - this host's clock
    clock_rtt_ms: float  # the round trip the offset was measured over
    finished: list[int] = field(default_factory=list)  # the nodes seen finishing
    missing: list[int] = field(default_factory=list)  # joined, but did not finish
    waited_ms: float = 0.0  # from its join until the start (waiting for the others)
    end_wait_ms: float = 0.0  # from its end until it knew which nodes finished


@dataclass
class NodeFigures(Record):
    """One node's own figures, beside the merged ones (``poolbench merge``)."""

    index: int
    host: str
    processes: int
    operations: int
    ok: int
    timeouts: int
    errors: int
    throughput_ops_s: float
    checkout_wait_p99_ms: float | None
    max_checked_out: int
    max_server_connections: int | None
    worst_case_connections: int | None
    server_at_start: float  # the server's clock when the node started (epoch seconds)
    late_ms: float
    clock_offset_ms: float
    interrupted: bool = False


@dataclass
class MergeInfo(Record):
    """What a merged result was made of: which nodes, and how closely they started."""

    run_name: str
    nodes: int  # how many the run was to have
    merged: list[int]  # the indexes whose results were merged
    finished: list[int]  # the indexes some node saw finish
    missing: list[int]  # the indexes not merged: they did not finish, or no result was given
    start_skew_ms: float  # latest - earliest server_at_start of the merged nodes
    per_node: list[NodeFigures] = field(default_factory=list)

    def line(self) -> str:
        """``nodes: 3 of 4 finished (node 2 did not)``; a node that finished but whose
        result was not given is named apart."""
        text = f"nodes: {len(self.finished)} of {self.nodes} finished"
        lost = [i for i in self.missing if i not in self.finished]
        if lost:
            text += f" (node {', '.join(map(str, lost))} did not)"
        unread = [i for i in self.missing if i in self.finished]
        if unread:
            text += f"; merged {len(self.merged)} (no result for node "
            text += f"{', '.join(map(str, unread))})"
        return text
