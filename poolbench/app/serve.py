"""``app.asgi``: the app served by uvicorn in a process of its own, measured there.

The runner drives this process as it drives a fleet's worker (engine/fleet.py: the same
pipe, calls and readings), so the timeline, waits, peaks, leaks and the server's view
come from the app's own pool, in the app's process. What runs there:

- the app's engine, bound as for ``app.engine`` (app/binding.py): pool as found or
  rebuilt, setup before, teardown after;
- the app's ASGI application under ``uvicorn.Server`` on a loopback port, with its
  lifespan, its middleware, its dependency teardown and its threadpool, wrapped by
  app/asgi.py (what each request did at the pool);
- no load: poolbench's HTTP client runs in poolbench's own process (app/client.py) and
  hands the requests' records over with its calls (``feed``), so the figures are folded
  here, beside the pool, while the client never shares the app's interpreter.

The app's own output (logging, print, uvicorn's error log) goes to a file whose name the
summary gives, never to poolbench's live view.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from .. import errors
from ..db.target import scrub
from ..engine.fleet import ChildSpec, serve_calls
from ..engine.load import prefill
from ..engine.poolside import build_pool_side
from .asgi import PoolAtRequest, Tokens, watch_checkouts
from .binding import bound_app, import_object
from .wsgi import PoolAtWsgiRequest, start_wsgi_server

START_TIMEOUT_S = 30.0


def missing_web_extra(asgi: bool = True) -> str | None:
    """The package app.asgi (or app.wsgi) needs and lacks, or None."""
    import importlib.util

    for package in ("uvicorn", "httpx") if asgi else ("httpx",):
        if importlib.util.find_spec(package) is None:
            return package
    return None


def log_path_for(application_name: str) -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"{application_name}-app.log")


def _capture_output(path: str) -> None:
    """The app's stdout, stderr and logging into ``path``."""
    handle = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - the process's
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, force=True)
    for name in ("httpx", "httpcore"):  # poolbench's own client: not the app's output
        logging.getLogger(name).setLevel(logging.WARNING)


def _start_server(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="poolbench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise errors.ScenarioError("app.asgi", "the app did not start (its log says why)")
        if time.monotonic() > deadline:
            raise errors.ScenarioError("app.asgi", f"the app did not start in {START_TIMEOUT_S:g}s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, port


def serve_main(conn: Any, events: Any, spec: ChildSpec) -> None:
    """The app's process: bind the engine, serve the app, then answer the parent's calls."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    scenario = spec.scenario
    assert scenario.app is not None and scenario.app.served is not None
    log_path = log_path_for(spec.application_name)
    _capture_output(log_path)

    def first_timeout(t_s: float, message: str) -> None:
        events.put((0, t_s, message))

    server = thread = None
    try:
        with bound_app(scenario) as bound:
            try:
                tokens = Tokens()
                if scenario.app.asgi is not None:
                    wrapped: Any = PoolAtRequest(import_object(scenario.app.asgi), tokens)
                    server, thread, port = _start_server(wrapped)
                else:
                    wrapped = PoolAtWsgiRequest(import_object(scenario.app.served))
                    server, thread, port = start_wsgi_server(wrapped)
                timeout = bound.scenario.pool.pool_timeout + 30.0
                client = (f"http://127.0.0.1:{port}", timeout)
                side = build_pool_side(
                    bound.scenario,
                    spec.url,
                    spec.backend,
                    spec.application_name,
                    lambda text: scrub(text, spec.url),
                    on_first_timeout=first_timeout,
                    verbose=spec.verbose,
                    app=bound.app,
                    driver_factory=FedDriver,  # no load here: app/client.py sends it
                )
                watch_checkouts(bound.app.engine, tokens)
            except Exception as exc:
                conn.send(("error", type(exc).__name__, str(exc)))
                return
            conn.send(("ok", os.getpid()))
            capacity = bound.scenario.pool.capacity

            def totals() -> Any:
                notes = [*bound.notes, f"the app's output: {log_path}"]
                if tokens.total is not None:
                    notes.append(_tokens_note(tokens, capacity))
                return replace(side.totals(), notes=notes)

            def shutdown(grace_s: float) -> Any:
                # the clients have stopped; let the app finish what it is serving (its
                # threads hold connections) before the pool side closes them
                side.stop_load()
                side.driver.join(grace_s)
                deadline = time.monotonic() + grace_s
                while wrapped.in_flight and time.monotonic() < deadline:
                    time.sleep(0.02)
                return side.shutdown(max(0.0, deadline - time.monotonic()))

            def feed(arg: tuple[list[Any], int, int]) -> None:
                records, side.driver.dropped, side.driver.late = arg
                side.measures.recorder.extend(records)

            def first_timeout_at_client(arg: tuple[float, str]) -> None:
                t_s, message = arg
                m = side.measures
                if m.recorder.errors.first_timeout(t_s, message):
                    m.first_timeout(t_s, message, m.recorder.leaks)

            serve_calls(
                conn,
                side,
                {
                    "totals": totals,
                    "shutdown": shutdown,
                    "client": lambda: client,
                    "feed": feed,
                    "first_timeout": first_timeout_at_client,
                },
            )
    finally:
        if server is not None and thread is not None:
            if hasattr(server, "should_exit"):
                server.should_exit = True
            else:
                server.shutdown()  # the WSGI server
            thread.join(10)


class FedDriver:
    """The app process's load driver while the load runs in poolbench's process: no
    threads here; the requests' records arrive with the parent's calls (``feed``), and
    the callers waiting are the app's own, counted at the pool (the checkout timer)."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.dropped = 0  # the open loop's, reported by the client
        self.late = 0

    def _waiting(self) -> Any:
        return self.executor.timer.in_flight

    def start(self, t0: float) -> None:
        self.executor.started_at = t0

    def set_phase(self, phase: Any) -> None:
        pass

    def waiting(self) -> int:
        return int(self._waiting().now)

    def peak_waiting(self) -> int:
        return int(self._waiting().take())

    def reset_peaks(self) -> None:
        self._waiting().reset()

    def prefill(self, connections: int) -> None:
        prefill(self.executor.engine, connections)

    def halt(self) -> None:
        self.executor.halted = True

    def join(self, timeout: float) -> int:
        return 0  # what the app still serves is waited for by the shutdown call

    def dispose(self) -> None:
        self.executor.engine.dispose()

    def collect_garbage(self) -> None:
        gc.collect()


def _tokens_note(tokens: Tokens, capacity: int | None) -> str:
    line = (
        f"threadpool (anyio): up to {tokens.peak} of {tokens.total} tokens in use at a "
        f"checkout, against the pool's {capacity if capacity is not None else 'unlimited'} "
        "connections"
    )
    if capacity is not None and tokens.total is not None and tokens.total > capacity:
        line += (
            f": the threadpool is larger than the pool, so up to {tokens.total - capacity} "
            "sync requests can wait for a connection with no leak at all"
        )
    return line
