"""What the numbers mean: a few plain sentences naming the failure and its usual fix.

A pure function of the result, so the terminal, the HTML report and tests agree.
"""

from __future__ import annotations

from .. import checks
from ..result import RunResult


def diagnose(result: RunResult) -> list[str]:
    s = result.summary
    pool = result.pool
    hints: list[str] = []
    capacity = result.capacity

    work = checks.failure_line(s)
    if work:
        hints.append(
            f"The requests' own work failed ({work}); the pool's figures describe a run "
            "that did not do its job. Fix the query or the task, or name what the scenario "
            "tolerates (a threshold on other_errors, error_rate or errors)."
        )
    for name in checks.failed_groups(s):
        group = next(g for g in s.groups if g.name == name)
        hints.append(
            f"Every request of group {name!r} failed ({group.errors} of {group.operations})."
        )
    client = s.client
    if client is not None and client.saturated:
        hints.append(
            f"poolbench itself was the bottleneck: its process used {client.cpu_cores:.2f} "
            f"cores and requests held their connections {client.hold_inflation:.1f}× as long "
            "as the scenario asks, so the pool's figures describe the load generator, not "
            "the pool. Spread the load over processes (--processes N) or use fewer workers."
        )
    sites = s.leaks.sites
    if sites:
        top = sites[0]
        hints.append(
            f"Connections checked out at {top.site} stayed out for up to "
            f"{top.longest_hold_s:.1f}s ({top.count} past the leak_detection threshold"
            + (f", {top.held_at_end} still out at the end" if top.held_at_end else "")
            + "): that code path does not give its connection back."
        )
    if s.timeouts and s.leaks.sessions:
        when = (
            f" after {s.leaks.at_first_timeout} leaks"
            if s.leaks.at_first_timeout is not None
            else ""
        )
        hints.append(
            f"Leaked sessions drained the pool: {s.leaks.sessions} sessions were never closed, "
            f"each keeping its connection checked out, and the first TimeoutError came at "
            f"{s.first_timeout_at_s:.2f}s{when}.{_seen_on_server(result)} Close every "
            "session (`with Session() as session:` or try/finally: session.close())."
        )
    elif s.timeouts and not sites and _threadpool_larger(result):
        hints.append(
            f"No connection leaked: the app's threadpool is larger than its pool "
            f"({_threadpool_larger(result)}), so sync endpoints had more requests in flight than "
            f"there are connections; up to {s.peaks.waiting} waited in the pool's checkout and "
            f"{s.timeouts} gave up after pool_timeout. Give the pool as many connections as the "
            "threadpool has threads, lower the threadpool (anyio's default limiter, "
            "total_tokens), or hold each connection for less time."
        )
    elif s.timeouts and not sites:
        hints.append(
            f"The pool was too small for this load: up to {s.peaks.waiting} callers waited for a "
            f"connection and {s.timeouts} gave up after pool_timeout. Raise pool_size or "
            "max_overflow, shorten the time each request holds its connection, or size it "
            "with `poolbench size`."
        )
    if s.pool_events.gc_returned:
        hints.append(
            f"{s.pool_events.gc_returned} connections came back only through the garbage "
            "collector, at a moment nobody chose; close sessions explicitly."
        )
    if s.errors["disconnect"].count:
        fix = (
            "pool_pre_ping=True did not prevent them: they broke during a request, not while idle"
            if pool.pool_pre_ping
            else "pool_pre_ping=True, or pool_recycle below the server's idle timeout, "
            "prevents the ones caused by idle connections"
        )
        hints.append(
            f"{s.errors['disconnect'].count} requests used a connection the server had closed; "
            f"{fix}."
        )
    refused = s.errors["too_many_connections"]
    if refused.count:
        limit = result.database.max_connections
        first = refused.first_at_s
        order = ""
        if first is not None and s.first_timeout_at_s is not None:
            order = (
                f" The server refused first ({first:.2f}s), before the pool's first "
                f"TimeoutError ({s.first_timeout_at_s:.2f}s)."
                if first <= s.first_timeout_at_s
                else f" The pool's first TimeoutError ({s.first_timeout_at_s:.2f}s) came "
                f"before the server refused anything ({first:.2f}s)."
            )
        elif first is not None:
            order = f" The first refusal came at {first:.2f}s; no pool TimeoutError happened."
        hints.append(
            f"The server refused {refused.count} connections "
            f"(max_connections {limit if limit is not None else 'unknown'}).{order} Every "
            "process multiplies pool_size + max_overflow; keep the sum under what the "
            "server has free."
        )
    elif (
        s.server.headroom is not None and s.server.worst_case is not None and s.server.headroom < 0
    ):
        hints.append(
            f"This configuration may open {s.server.worst_case} connections but the "
            f"server had only {s.server.worst_case + s.server.headroom} free: under "
            "enough load it will refuse connections (too many clients / 1040)."
        )
    if s.dropped_arrivals:
        hints.append(
            f"{s.dropped_arrivals} arrivals were dropped because max_concurrency requests were "
            "already in flight: the pool could not keep up with the rate."
        )
    hints += _event_loop(result)
    if capacity and s.peaks.checked_out < capacity and not s.timeouts and s.ok:
        hints.append(
            f"The pool never needed more than {s.peaks.checked_out} of its {capacity} connections."
        )
    return hints


def _event_loop(result: RunResult) -> list[str]:
    """CPU-bound handlers on an async engine: one loop runs every request of a process."""
    groups = result.load.workload
    total = sum(g.share for g in groups)
    cpu = sum(g.share * g.cpu for g in groups) / total if total else 0.0
    if result.database.engine != "async" or cpu <= 0:
        return []
    s = result.summary
    p99 = s.latencies.checkout_wait_ms.p99
    wait = f", checkout wait p99 {p99:.1f} ms" if p99 is not None else ""
    return [
        f"Handlers spend {cpu * 1000:.1f} ms of CPU per request on the event loop, which runs "
        f"every request of the process: it can serve at most {1 / cpu:.0f} requests/s, and "
        "while a handler computes, no other coroutine runs, so checkouts, returns and queries "
        f"wait behind it (up to {s.peaks.waiting} coroutines waiting{wait}). Move CPU-bound "
        "work off the loop (`await asyncio.to_thread(...)`) or run more processes."
    ]


def _seen_on_server(result: RunResult) -> str:
    """What the server itself showed of this run's connections, in its own terms: a leak
    reads "idle in transaction" only where the leaked session's query opened one
    (PostgreSQL: any statement; MySQL/MariaDB: not a plain SELECT on InnoDB)."""
    counts = [s.server_connections for s in result.timeline if s.server_connections]
    if not counts:
        return ""
    in_tx = max(c.get("idle in transaction", 0) for c in counts)
    if in_tx:
        return f" The server showed up to {in_tx} of them idle in transaction."
    idle = max(c.get("idle", 0) for c in counts)
    return (
        f" The server showed them as plain idle connections (up to {idle}), not idle in "
        "transaction: their queries opened no transaction there, so the server's "
        "idle-in-transaction timeouts will not end them."
    )


def _threadpool_larger(result: RunResult) -> str:
    """'40 threads against 15 connections' when an app's threadpool outnumbered its pool."""
    for note in result.notes:
        if note.startswith("threadpool (anyio)") and "larger than the pool" in note:
            words = note.split()
            try:
                total = words[words.index("of") + 1]
                capacity = words[words.index("pool's") + 1]
            except (ValueError, IndexError):
                return "threads against connections"
            return f"{total} threads against {capacity} connections"
    return ""
