"""poolbench's HTTP client: one request of a group with ``http:``, timed and classified.

A request's checkout wait is what the app's pool measured for it (app/asgi.py's header);
its hold is the rest of the HTTP latency. A 5xx whose response says the pool raised a
TimeoutError is a timeout (the pool's own message); another 5xx, or a refused
connection, is an error of kind ``other``. Per endpoint, the status counts and the HTTP
latency travel in the request's record (metrics/recorder.py's ``HttpLog``) to the
summary (``Summary.http``), so they cover exactly the requests the operations do.
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import Any

from sqlalchemy import exc as sa_exc

from ..metrics.recorder import OK
from .asgi import TIMEOUT_HEADER, WAIT_HEADER


class HttpError(Exception):
    """A 5xx from the app that the pool did not cause, or no answer at all."""


class HttpLoad:
    """The client side; one ``httpx.Client`` per load thread (keep-alive, as a browser)."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        import httpx

        self._httpx = httpx
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            # loopback, plain HTTP: no proxy from the environment, no CA bundle to load
            client = self._httpx.Client(
                base_url=self.base_url, timeout=self.timeout_s, trust_env=False, verify=False
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def run(self, executor: Any, plan: Any) -> None:
        """Send the group's request; record it as the executor records any request."""
        http = plan.group.http
        start = perf_counter()
        failure: BaseException | None = None
        wait_us = 0
        status = "no answer"
        try:
            response = self._client().request(
                http.method, http.path, json=http.json_body, headers=http.headers or None
            )
            status = str(response.status_code)
            wait_us = int(response.headers.get(WAIT_HEADER.decode(), "0") or 0)
            timeout = response.headers.get(TIMEOUT_HEADER.decode())
            if timeout is not None:
                failure = sa_exc.TimeoutError(timeout)
            elif response.status_code >= 500:
                failure = HttpError(f"HTTP {status} from {http.method} {http.path}")
        except self._httpx.HTTPError as exc:
            failure = HttpError(f"{http.method} {http.path}: {type(exc).__name__}: {exc}")
        elapsed = perf_counter() - start
        if executor.halted:
            return  # ended by the shutdown: not a measured request
        hold = max(0.0, elapsed - wait_us / 1e6)
        seen = (status, int(elapsed * 1e6))  # counted per endpoint as the record is drained
        if failure is None:
            executor.recorder.finished(plan.index, OK, wait_us, int(hold * 1e6), False, None, seen)
        else:
            executor._failed(plan, failure, wait_us / 1e6, hold, False, seen)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:
                pass
