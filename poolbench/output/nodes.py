"""How a node of a run across hosts, and a merge of nodes, are shown in words."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.markup import escape
from rich.table import Table

from ..result import MergeInfo, NodeInfo


def instant(epoch_s: float) -> str:
    """An instant of the server's clock as HH:MM:SS.mmm UTC."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def waiting_line(run_name: str, nodes: int, missing: list[int], start_at: float | None) -> str:
    """While a node waits: who is still awaited, or when measuring starts."""
    if start_at is not None:
        return (
            f"run {escape(run_name)}: all {nodes} nodes joined; measuring starts at "
            f"{instant(start_at)} (the database server's clock)"
        )
    return (
        f"run {escape(run_name)}: {nodes - len(missing)} of {nodes} nodes joined; waiting for "
        f"node {', '.join(map(str, missing))}"
    )


def node_line(node: NodeInfo) -> str:
    """One line: which node this was, when it started, and who finished."""
    finished = f"nodes: {len(node.finished)} of {node.nodes} finished"
    if not node.finished:  # it lost the coordinator at the end (its notes say why)
        finished = f"[yellow]nodes: unknown which of {node.nodes} finished[/]"
    elif node.missing:
        finished = f"[red]{finished}[/] (missing node {', '.join(map(str, node.missing))})"
    return (
        f"node {node.index} of {node.nodes} in run [bold]{escape(node.run_name)}[/] on "
        f"{escape(node.host)}: started {instant(node.start_at)} after waiting "
        f"{node.waited_ms / 1000:.1f}s for the others (woke {node.late_ms:.1f} ms late; clock "
        f"offset to the server {node.clock_offset_ms:+.1f} ms) · {finished}"
    )


def merge_line(info: MergeInfo) -> str:
    """The merge in one line: which run, how many nodes, how closely they started."""
    text = info.line()
    if info.missing:
        text = f"[red]{escape(text)}[/]"
    return (
        f"run [bold]{escape(info.run_name)}[/]: merged node "
        f"{', '.join(map(str, info.merged))} · {text} · started within "
        f"{info.start_skew_ms:.1f} ms of each other (the server's clock)"
    )


def nodes_table(info: MergeInfo) -> Table:
    """Each node's own figures, beside the merged ones."""
    table = Table(title="per node", title_justify="left", box=None, header_style="bold")
    for name in (
        "node",
        "host",
        "processes",
        "operations",
        "ok",
        "timeouts",
        "errors",
        "ops/s",
        "wait p99",
        "max out",
        "max server",
        "worst case",
        "start",
    ):
        table.add_column(name, justify="left" if name in ("node", "host") else "right")
    earliest = min(n.server_at_start for n in info.per_node)
    for n in info.per_node:
        table.add_row(
            str(n.index) + (" (interrupted)" if n.interrupted else ""),
            escape(n.host),
            str(n.processes),
            str(n.operations),
            str(n.ok),
            str(n.timeouts),
            str(n.errors),
            f"{n.throughput_ops_s:g}",
            "-" if n.checkout_wait_p99_ms is None else f"{n.checkout_wait_p99_ms:g} ms",
            str(n.max_checked_out),
            "-" if n.max_server_connections is None else str(n.max_server_connections),
            "-" if n.worst_case_connections is None else str(n.worst_case_connections),
            f"+{(n.server_at_start - earliest) * 1000:.1f} ms",
        )
    return table
