"""``app.asgi`` / ``app.wsgi``: poolbench's HTTP client in poolbench's own process.

The app runs in a process of its own (app/serve.py): its server, its threadpool, its
pool, and poolbench's measures of that pool, with no load there. The load runs here, in
load threads sending real HTTP (app/http_load.py), so the client never shares the app's
interpreter (its CPU and its GIL). Each request becomes a record, the same tuple the
pool side's executor records, classified here; the records are handed to the app's
process with every call that reads it ("feed" before "read", "totals", "shutdown"), so
every figure is still folded in one place, from exactly the requests that ended before
the reading. The run's first TimeoutError is passed on the moment it happens, so the app
side takes its snapshot of who holds the connections then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..db.backends import Backend
from ..engine.fleet import FleetPools
from ..engine.load import driver_for
from ..engine.peaks import Peak
from ..engine.readings import PoolReading, PoolTotals
from ..engine.requests import GroupPlan, RecordsFailures, Worker
from ..metrics.recorder import Recorder
from ..result import ProcessInfo
from ..scenario.model import Phase, Scenario
from .http_load import HttpLoad


class HttpClientExecutor(RecordsFailures):
    """Runs one HTTP request of a group (app/http_load.py) and records it."""

    def __init__(
        self,
        http: HttpLoad,
        backend: Backend,
        scrub: Callable[[str], str],
        on_first_timeout: Callable[[float, str, int], None],
    ) -> None:
        self.http = http
        self.backend = backend
        self.scrub = scrub
        self.on_first_timeout = on_first_timeout
        self.recorder = Recorder()  # its records go to the app's process (ClientPools)
        self.started_at = 0.0
        self.halted = False
        self.timer = None
        self.waiting = Peak()  # the waiting callers are the app's, counted at its pool
        self.engine = None  # the app's process opens and closes the connections

    def run(self, worker: Worker, plan: GroupPlan) -> None:
        self.http.run(self, plan)


class ClientPools:
    """The app's process (one pool side, no load there) and the HTTP load here, driven
    as one (engine/runner.py's ``Pools``)."""

    exact_stale = False

    def __init__(
        self,
        scenario: Scenario,
        app: FleetPools,
        backend: Backend,
        scrub: Callable[[str], str],
        plans: list[GroupPlan],
    ) -> None:
        self.app = app
        self._feed_lock = threading.Lock()
        base_url, timeout_s = app.call("client")[0]
        self.http = HttpLoad(base_url, timeout_s)
        self.executor = HttpClientExecutor(self.http, backend, scrub, self._first_timeout)
        self.stop = threading.Event()
        load = scenario.load
        threads = max(p.workers or 0 for p in scenario.effective_phases())
        if load.open_loop:
            threads = load.concurrency
        self.driver = driver_for(
            load.open_loop,
            executor=self.executor,
            plans=plans,
            threads=threads,
            seed=scenario.seed,
            stop=self.stop,
        )

    def _first_timeout(self, t_s: float, message: str, leaks: int) -> None:
        self.app.call("first_timeout", (t_s, message))

    def _feed(self) -> None:
        """Hand the app's process every record so far (and the open loop's counts)."""
        with self._feed_lock:
            records = self.executor.recorder.take()
            self.app.call("feed", (records, self.driver.dropped, self.driver.late))

    # -- the Pools protocol -------------------------------------------------------------------

    def begin(self, t0: float) -> None:
        self.app.begin(t0)
        self.driver.reset_peaks()
        self.driver.start(t0)

    def set_phase(self, phase: Phase) -> None:
        self.driver.set_phase(phase)  # one client: the whole phase

    def prefill(self, connections: int) -> None:
        self.app.prefill(connections)

    def read(self) -> tuple[PoolReading, float | None]:
        self._feed()
        return self.app.read()

    def open_ids(self) -> set[int]:
        return self.app.open_ids()

    def server_ids(self) -> list[int]:
        return self.app.server_ids()

    def idle_ids(self) -> list[int]:
        return self.app.idle_ids()

    def stop_load(self) -> None:
        self.executor.halted = True
        self.stop.set()
        self.driver.wake()

    def shutdown(self, grace_s: float) -> tuple[int, int]:
        """Stop sending, let the requests in flight end, then the app's side: it waits for
        what the app is still serving and closes every connection."""
        self.stop_load()
        self.driver.join(grace_s)
        self._feed()
        return self.app.shutdown(grace_s)

    def totals(self) -> tuple[PoolTotals, list[Any], list[ProcessInfo]]:
        self._feed()
        return self.app.totals()

    def close(self) -> None:
        try:
            self.stop_load()
            self.http.close()
        finally:
            self.app.close()
