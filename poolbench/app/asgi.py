"""Inside the app's process: what each HTTP request did at the pool.

:class:`PoolAtRequest` wraps the app's ASGI application (outermost, around its own
middleware). Each request gets a :class:`RequestBox` in a context variable; the pool's
``connect`` is wrapped (:func:`watch_checkouts`) so every checkout, on whatever thread
the app runs it (Starlette's threadpool copies the context), adds its wait to the box of
the request it serves and notes a TimeoutError there. The response carries both back to
poolbench's HTTP client in two headers, so a 5xx is known to be a pool TimeoutError
because the pool raised one, not guessed from the status.

The threadpool's tokens (anyio's default limiter, 40 unless the app changed it) are read
at every checkout: how many requests were in the threadpool when the pool was asked.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

WAIT_HEADER = b"x-poolbench-pool-wait-us"
TIMEOUT_HEADER = b"x-poolbench-pool-timeout"


@dataclass
class RequestBox:
    """What one request did at the pool."""

    wait_us: int = 0
    timeout: str | None = None


CURRENT: contextvars.ContextVar[RequestBox | None] = contextvars.ContextVar(
    "poolbench_request", default=None
)


class Tokens:
    """The threadpool's tokens: the most in use at a checkout, and the limit."""

    def __init__(self) -> None:
        self.limiter: Any = None
        self.peak = 0
        self._lock = threading.Lock()

    def note(self) -> None:
        limiter = self.limiter
        if limiter is not None:
            in_use = limiter.borrowed_tokens
            with self._lock:
                self.peak = max(self.peak, in_use)

    @property
    def total(self) -> int | None:
        return int(self.limiter.total_tokens) if self.limiter is not None else None


def watch_checkouts(engine: Engine, tokens: Tokens) -> None:
    """Wrap the pool's ``connect``: each checkout's wait and TimeoutError go to the box of
    the request being served."""
    pool = engine.pool
    original = pool.connect

    def connect() -> Any:
        box = CURRENT.get()
        tokens.note()
        start = perf_counter()
        try:
            return original()
        except sa_exc.TimeoutError as exc:
            if box is not None:
                box.timeout = str(exc).split("\n")[0]
            raise
        finally:
            if box is not None:
                box.wait_us += int((perf_counter() - start) * 1e6)

    pool.connect = connect  # type: ignore[method-assign]


class PoolAtRequest:
    """ASGI middleware: a box per request, returned in the response's headers."""

    def __init__(self, app: Any, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens
        self.in_flight = 0  # requests being served (one event loop: no lock needed)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tokens.limiter is None:
            try:
                import anyio.to_thread

                self.tokens.limiter = anyio.to_thread.current_default_thread_limiter()
            except Exception:  # no anyio: a server on another loop
                pass
        box = RequestBox()
        token = CURRENT.set(box)
        started = False
        self.in_flight += 1

        async def send_with_figures(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), (WAIT_HEADER, str(box.wait_us).encode())]
                if box.timeout is not None:
                    text = box.timeout.encode("ascii", "replace")[:400]
                    headers.append((TIMEOUT_HEADER, text))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_figures)
        except Exception:
            if not started:
                raise  # the server answers 500 itself
            # Starlette re-raises after sending its 500; uvicorn would then close the
            # keep-alive connection under the client's next request. Logged, not re-raised.
            logging.getLogger("poolbench.app").exception("Exception in ASGI application")
        finally:
            self.in_flight -= 1
            CURRENT.reset(token)
