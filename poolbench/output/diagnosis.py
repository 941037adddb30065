"""What the numbers mean: a few plain sentences naming the failure and its usual fix.

A pure function of the result, so the terminal, the HTML report and tests agree.
"""

from __future__ import annotations

from ..result import RunResult


def diagnose(result: RunResult) -> list[str]:
    s = result.summary
    pool = result.pool
    hints: list[str] = []
    capacity = None
    if (
        pool.get("poolclass") == "QueuePool"
        and pool.get("pool_size")
        and pool.get("max_overflow", 0) >= 0
    ):
        capacity = pool["pool_size"] + pool["max_overflow"]
    if s.worst_case_connections is not None:  # a fleet multiplies it
        capacity = s.worst_case_connections

    sites = s.leak_sites or []
    if sites:
        top = sites[0]
        hints.append(
            f"Connections checked out at {top.site} stayed out for up to "
            f"{top.longest_hold_s:.1f}s ({top.count} past the leak_detection threshold"
            + (f", {top.held_at_end} still out at the end" if top.held_at_end else "")
            + "): that code path does not give its connection back."
        )
    if s.timeouts and s.leaked:
        when = (
            f" after {s.leaked_at_first_timeout} leaks"
            if s.leaked_at_first_timeout is not None
            else ""
        )
        hints.append(
            f"Leaked sessions drained the pool: {s.leaked} sessions were never closed, each "
            f"keeping its connection checked out, and the first TimeoutError came at "
            f"{s.first_timeout_at_s:.2f}s{when}. Close every session "
            "(`with Session() as session:` or try/finally: session.close())."
        )
    elif s.timeouts and not sites:
        hints.append(
            f"The pool was too small for this load: up to {s.max_waiting} callers waited for a "
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
            if pool.get("pool_pre_ping")
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
    elif s.connection_headroom is not None and s.connection_headroom < 0:
        hints.append(
            f"This configuration may open {s.worst_case_connections} connections but the "
            f"server had only {s.worst_case_connections + s.connection_headroom} free: under "
            "enough load it will refuse connections (too many clients / 1040)."
        )
    if s.dropped_arrivals:
        hints.append(
            f"{s.dropped_arrivals} arrivals were dropped because max_concurrency requests were "
            "already in flight: the pool could not keep up with the rate."
        )
    if capacity and s.max_checked_out < capacity and not s.timeouts and s.operations:
        hints.append(
            f"The pool never needed more than {s.max_checked_out} of its {capacity} connections."
        )
    return hints
