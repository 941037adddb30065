"""Every error a request meets is classified here, once: timeout, disconnect,
too_many_connections or other, with the driver's own code and message.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exc as sa_exc

# MySQL/MariaDB ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS; PostgreSQL SQLSTATE
# too_many_connections (also "remaining connection slots are reserved ...").
TOO_MANY_CODES = frozenset({"1040", "1203", "53300"})
_TOO_MANY_TEXT = ("too many clients", "too many connections", "remaining connection slots")


class InjectedError(Exception):
    """An application error the scenario asked for (``error_rate``), not a database fault."""


def driver_code(orig: BaseException | None) -> str | None:
    """The driver's error code: PostgreSQL SQLSTATE, or MySQL's numeric code."""
    if orig is None:
        return None
    pgcode = getattr(orig, "pgcode", None)
    if pgcode:
        return str(pgcode)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return str(args[0])
    return None


def driver_message(orig: BaseException) -> str:
    """The driver's message, on one line."""
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = args[1]  # PyMySQL: (2013, 'Lost connection to MySQL server during query')
    else:
        text = str(orig)
    return " ".join(text.split())


def classify(
    error: BaseException, scrub: Callable[[str], str] = lambda s: s
) -> tuple[str, str | None, str]:
    """``(kind, code, message)`` for an error raised by a request."""
    if isinstance(error, sa_exc.TimeoutError):
        # QueuePool's own error, kept verbatim: it is what users grep their logs for.
        return "timeout", getattr(error, "code", None), scrub(str(error))
    if isinstance(error, sa_exc.DBAPIError):
        orig = error.orig
        code = driver_code(orig)
        message = scrub(driver_message(orig)) if orig is not None else scrub(str(error))
        lowered = message.lower()
        if code in TOO_MANY_CODES or any(t in lowered for t in _TOO_MANY_TEXT):
            if code is None and ("too many clients" in lowered or "connection slots" in lowered):
                # psycopg2 gives no SQLSTATE for errors while connecting; this one is 53300
                code = "53300"
            return "too_many_connections", code, message
        if error.connection_invalidated:
            return "disconnect", code, message
        return "other", code, message
    name = type(error).__name__
    return "other", name, scrub(f"{name}: {' '.join(str(error).split())}")
