"""Every error a request meets is classified here, once: timeout, disconnect,
too_many_connections or other, with the driver's own code and message. What a code
means is the backend's to say (db/backends/).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exc as sa_exc

from ..db.backends import Backend
from ..printable import printable


class InjectedError(Exception):
    """An application error the scenario asked for (``error_rate``), not a database fault."""


def classify(
    error: BaseException, backend: Backend, scrub: Callable[[str], str] = lambda s: s
) -> tuple[str, str | None, str]:
    """``(kind, code, message)`` for an error raised by a request."""

    def shown(text: str) -> str:  # no password, no terminal escape from a task's message
        return printable(scrub(text))

    if isinstance(error, sa_exc.TimeoutError):
        # QueuePool's own error, kept verbatim: it is what users grep their logs for.
        return "timeout", getattr(error, "code", None), shown(str(error))
    if isinstance(error, sa_exc.DBAPIError):
        orig = error.orig
        if orig is None:
            code, message = None, shown(str(error))
        else:
            code, message = (
                backend.driver.error_code(orig),
                shown(backend.driver.error_message(orig)),
            )
        kind, code = backend.error_kind(code, message)
        if kind is not None:
            return kind, code, message
        if error.connection_invalidated:
            return "disconnect", code, message
        return "other", code, message
    name = type(error).__name__
    return "other", name, shown(f"{name}: {' '.join(str(error).split())}")
