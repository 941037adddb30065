"""poolbench's HTTP client: one request of a group with ``http:``, timed and classified.

A request's checkout wait is what the app's pool measured for it (app/asgi.py's header);
its hold is the rest of the HTTP latency. A 5xx whose response says the pool raised a
TimeoutError is a timeout (the pool's own message); another 5xx, or a refused
connection, is an error of kind ``other``. Per endpoint, the status counts and the HTTP
latency are kept for the summary's notes.
"""

from __future__ import annotations

import threading
from collections import Counter
from time import perf_counter
from typing import Any

from sqlalchemy import exc as sa_exc

from ..metrics.histogram import LatencyHistogram
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
        self.statuses: dict[str, Counter[str]] = {}
        self.latency: dict[str, LatencyHistogram] = {}
        self.pool_timeouts: Counter[str] = Counter()

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
        label = plan.group.label
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
        with self._lock:
            self.statuses.setdefault(label, Counter())[status] += 1
            self.latency.setdefault(label, LatencyHistogram()).record(int(elapsed * 1e6))
            if isinstance(failure, sa_exc.TimeoutError):
                self.pool_timeouts[label] += 1
        hold = max(0.0, elapsed - wait_us / 1e6)
        if failure is None:
            executor.recorder.finished(plan.index, OK, wait_us, int(hold * 1e6), False)
        else:
            executor._failed(plan, failure, wait_us / 1e6, hold, leaked=False)

    def notes(self) -> list[str]:
        """One line per endpoint: statuses, pool TimeoutErrors among them, HTTP latency."""
        lines = []
        with self._lock:
            for label, statuses in self.statuses.items():
                counts = ", ".join(f"{s} ×{n}" for s, n in sorted(statuses.items()))
                hist = self.latency[label]
                p50, p99 = hist.percentile_ms(50), hist.percentile_ms(99)
                timeouts = self.pool_timeouts.get(label, 0)
                seen = f" ({timeouts} pool TimeoutErrors, seen at the pool)" if timeouts else ""
                lines.append(
                    f"HTTP {label}: {counts}{seen}; latency p50 {_ms(p50)}, p99 {_ms(p99)}"
                )
        return lines

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:
                pass


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
