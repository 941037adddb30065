"""One node of a run that spans hosts: join, wait for the others, start together, finish.

Every node runs the scenario as written; what the nodes share is a row each in the
coordinator's ``poolbench.nodes`` table (the database under test unless --coordinator
names another). The start is fixed once all N nodes have joined: the server's clock at
the last join plus ``margin_s``, so every node has time to see it and nobody's host
clock matters. A heartbeat thread keeps the node's row fresh; a node whose row goes
stale (killed, partitioned) is reported by the others when they finish, and nothing
waits for it for ever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from .. import errors
from ..db.backends import backend_for
from .clock import ClockOffset, measure_offset, sleep_until
from .registry import NodeRow, Registry

HEARTBEAT_S = 0.5
STALE_S = 6.0  # a row not refreshed for this long belongs to a node that is gone
POLL_S = 0.1


@dataclass(frozen=True)
class NodeSpec:
    """Which run this node joins, as which index, and how long it waits."""

    run_name: str
    nodes: int
    index: int
    join_timeout_s: float = 300.0
    margin_s: float = 2.0  # between the last join and the common start
    finish_timeout_s: float = 60.0  # how long a finished node waits for the others


# told (the run, the indexes still awaited, the start once fixed) while a node waits
WaitReport = Callable[[NodeSpec, list[int], float | None], None]


@dataclass
class NodeOutcome:
    """What this node knows of the whole run when it ends."""

    finished: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    lost_coordinator: str | None = None  # why the others' outcome is unknown
    waited_s: float = 0.0  # from this node's end until it knew who finished

    def line(self, nodes: int) -> str:
        if self.lost_coordinator is not None:
            return f"nodes: unknown which of {nodes} finished ({self.lost_coordinator})"
        text = f"nodes: {len(self.finished)} of {nodes} finished"
        if self.missing:
            text += f" (node {', '.join(map(str, self.missing))} did not)"
        return text


@dataclass
class StartInfo:
    """The common start and how this node met it."""

    start_at: float  # the agreed instant, the server's clock (epoch seconds)
    server_at_start: float  # the server's clock read the moment this node started
    late_s: float  # how long after its local estimate of start_at this node woke
    clock: ClockOffset
    joined: list[int]
    waited_s: float  # from this node's join until the start: the barrier's cost to it


class NodeSession:
    """One node's part in a run across hosts (see the module docstring)."""

    def __init__(
        self,
        spec: NodeSpec,
        coordinator: URL,
        scrub: Callable[[str], str] = lambda text: text,
        host: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= spec.index < spec.nodes:
            raise errors.UsageError(
                f"--node-index {spec.index} is outside 0..{spec.nodes - 1} (--nodes {spec.nodes})"
            )
        self.spec = spec
        self.host = host or socket.gethostname()
        self._wall = wall  # this host's clock; whatever it says, the server's decides
        self._scrub = scrub
        # a small pool of its own: the heartbeat and the polls reuse one connection
        self._engine = sa.create_engine(
            coordinator,
            pool_size=2,
            max_overflow=2,
            pool_pre_ping=True,
            connect_args=backend_for(coordinator).driver.connect_args(
                f"poolbench-node-{spec.index}"
            ),
        )
        self.registry = Registry(self._engine, spec.run_name)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._joined = False
        self._joined_at = 0.0
        self.start: StartInfo | None = None

    # -- joining -------------------------------------------------------------------------------

    def join(self) -> None:
        """Register this node (creating the table if needed) and start the heartbeat."""
        try:
            self._register()
        except BaseException:
            self._engine.dispose()
            raise
        self._joined = True
        self._joined_at = time.monotonic()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"poolbench-node-{self.spec.index}-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _register(self) -> None:
        spec = self.spec
        self._create_table()
        for attempt in range(3):
            try:
                with self._engine.begin() as conn:
                    self.registry.clear_stale(conn, STALE_S)
                    rows = self.registry.rows(conn)
                    self._check_can_join(rows)
                    self.registry.insert(conn, spec.index, spec.nodes, self.host, os.getpid())
                return
            except sa.exc.IntegrityError:
                self._check_can_join(self.registry.rows())
                raise errors.NodeConflict(
                    f"run {spec.run_name!r}: node index {spec.index} joined at the same moment "
                    "from elsewhere"
                ) from None
            except sa.exc.ProgrammingError as exc:
                # the table went between its creation and our insert (the last node of
                # another run removed it as we came): create it again
                if attempt == 2:
                    raise errors.DatabaseUnreachable(self._explain("cannot join", exc)) from None
                self._create_table()
            except sa.exc.DBAPIError as exc:
                raise errors.DatabaseUnreachable(self._explain("cannot join", exc)) from None

    def _create_table(self) -> None:
        try:
            self.registry.create()
        except sa.exc.DBAPIError as exc:
            message = self._explain("cannot create the table poolbench.nodes", exc)
            raise errors.DatabaseUnreachable(
                f"{message} (--coordinator URL registers the nodes in another database)"
            ) from None

    def _check_can_join(self, rows: list[NodeRow]) -> None:
        spec = self.spec
        for row in rows:
            if row.nodes != spec.nodes:
                raise errors.NodeConflict(
                    f"run {spec.run_name!r} was joined with --nodes {row.nodes} (node "
                    f"{row.index} on {row.host}); this node has --nodes {spec.nodes}"
                )
            if row.start_at is not None:
                raise errors.NodeConflict(
                    f"run {spec.run_name!r} has already started; join another run name"
                )
            if row.index == spec.index:
                raise errors.NodeConflict(
                    f"run {spec.run_name!r}: node index {spec.index} has already joined "
                    f"(host {row.host}, pid {row.pid})"
                )

    def wait_for_start(self, report: WaitReport | None = None) -> StartInfo:
        """Block until every node has joined, then until the common start; JoinTimeout
        (naming the missing indexes) if they do not all join in time. ``report`` is told
        which nodes are still awaited whenever that changes, then the start."""
        spec = self.spec
        deadline = time.monotonic() + spec.join_timeout_s
        rows: list[NodeRow] = []
        awaited: list[int] | None = None
        while True:
            try:
                start_at, rows = self._start_instant()
            except sa.exc.ProgrammingError:
                # the table was removed under us (another run's last node saw it empty at
                # the moment we joined): create it again, and our row with the next poll
                self._create_table()
                continue
            except sa.exc.DBAPIError as exc:
                message = self._explain("lost the coordinator", exc)
                raise errors.DatabaseUnreachable(message) from None
            present = {r.index for r in rows}
            missing = [i for i in range(spec.nodes) if i not in present]
            if start_at is not None:
                break
            if report is not None and missing != awaited:
                awaited = missing
                report(spec, missing, None)
            if time.monotonic() >= deadline:
                raise errors.JoinTimeout(
                    f"run {spec.run_name!r}: {len(present)} of {spec.nodes} nodes joined in "
                    f"{spec.join_timeout_s:g}s; missing node index "
                    f"{', '.join(map(str, missing))}"
                )
            time.sleep(POLL_S)
        if report is not None:
            report(spec, [], start_at)
        with self._engine.connect() as conn:
            clock = measure_offset(lambda: self.registry.now(conn), wall=self._wall)
            late = sleep_until(clock.local(start_at), wall=self._wall)
            server_at_start = self.registry.now(conn)
        waited = time.monotonic() - self._joined_at
        joined = [r.index for r in rows]
        self.start = StartInfo(start_at, server_at_start, late, clock, joined, waited)
        return self.start

    def _start_instant(self) -> tuple[float | None, list[NodeRow]]:
        """The common start if it is fixed (fixing it when every node is in)."""
        with self._engine.begin() as conn:
            rows = self.registry.rows(conn)
            fixed = next((r.start_at for r in rows if r.start_at is not None), None)
            if fixed is not None or len(rows) < self.spec.nodes:
                if fixed is None:
                    self.registry.clear_stale(conn, STALE_S)  # a node that died waiting
                    if all(r.index != self.spec.index for r in rows):
                        # our heartbeat stalled long enough for another node to clear
                        # our row (a starved host): join again rather than wait for ever
                        self.registry.insert(
                            conn, self.spec.index, self.spec.nodes, self.host, os.getpid()
                        )
                return fixed, rows
        with self._engine.begin() as conn:
            # every node is in: the first to lock the rows fixes the instant for all
            rows = self.registry.rows(conn, lock=True)
            fixed = next((r.start_at for r in rows if r.start_at is not None), None)
            if fixed is None:
                fixed = max(r.joined_at for r in rows) + self.spec.margin_s
                self.registry.set_start(conn, fixed)
            return fixed, rows

    # -- while running --------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with self._engine.begin() as conn:
                    self.registry.touch(conn, self.spec.index)
            except sa.exc.DBAPIError:
                continue  # a blip; the others allow STALE_S before giving up on us

    # -- ending ---------------------------------------------------------------------------------

    def finish(self) -> NodeOutcome:
        """Mark this node finished, wait (bounded) for the others, and say who finished.

        A node whose heartbeat went stale, or that has not finished within
        ``finish_timeout_s``, is reported missing. The last node to read the outcome
        removes the run's rows.
        """
        outcome = NodeOutcome()
        began = time.monotonic()
        try:
            with self._engine.begin() as conn:
                if not self.registry.mark(conn, self.spec.index, "finished_at"):
                    return NodeOutcome(
                        lost_coordinator="this node's row was gone: the other nodes had "
                        "ended the run, taking this node for lost"
                    )
            deadline = time.monotonic() + self.spec.finish_timeout_s
            while True:
                with self._engine.connect() as conn:
                    now = self.registry.now(conn)
                    rows = self.registry.rows(conn)
                done = all(r.finished_at is not None or now - r.seen_at > STALE_S for r in rows)
                if done or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S * 2)
            outcome = _outcome(rows, self.spec.nodes)
            self._collect()
        except sa.exc.DBAPIError as exc:
            # this node's result is still worth writing; the merge tells the rest
            outcome = NodeOutcome(lost_coordinator=self._explain("lost the coordinator", exc))
        finally:
            self.close()
        outcome.waited_s = time.monotonic() - began
        return outcome

    def _collect(self) -> None:
        with self._engine.begin() as conn:
            rows = self.registry.rows(conn, lock=True)
            self.registry.mark(conn, self.spec.index, "collected_at")
            now = self.registry.now(conn)
            others = [r for r in rows if r.index != self.spec.index]
            last = all(r.collected_at is not None or now - r.seen_at > STALE_S for r in others)
            if last:
                self.registry.delete_run(conn)
        if last:
            self.registry.drop_if_unused()

    def leave(self) -> None:
        """Give up before the end (an error, Ctrl-C): before the start this node's row is
        removed so the others wait for a replacement; after it, the others will see this
        node stop heartbeating and report it."""
        try:
            if self._joined and self.start is None:
                with self._engine.begin() as conn:
                    self.registry.remove_unstarted(conn, self.spec.index)
                self.registry.drop_if_unused()
        except sa.exc.DBAPIError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5)
            self._heartbeat = None
        self._engine.dispose()

    def _explain(self, what: str, exc: sa.exc.DBAPIError) -> str:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return self._scrub(f"run {self.spec.run_name!r}: {what}: {first}")


def _outcome(rows: list[NodeRow], nodes: int) -> NodeOutcome:
    finished = sorted(r.index for r in rows if r.finished_at is not None)
    missing = [i for i in range(nodes) if i not in finished]
    return NodeOutcome(finished, missing)
