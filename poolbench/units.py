"""Parsing and formatting of the units scenario files use: durations, rates, shares."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|µs|ms|s|m|min|h)?\s*$")
_DURATION_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    None: 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}
MAX_DURATION_S = 7 * 24 * 3600.0  # any duration: a week (threading's waits overflow far beyond)
MAX_RATE = 1_000_000.0  # arrivals per second, far above what one machine can start
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_RATE_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0}
_RATE_UNITS.update({"m": 1 / 60, "min": 1 / 60, "minute": 1 / 60, "h": 1 / 3600, "hour": 1 / 3600})


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``10s``, ``2m``, ``1h`` or a bare number of seconds.

    Raises ValueError with a message fit for the user.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = _float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {_short(value)}")
        seconds = _float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {_short(value)}")
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION_S:
        raise ValueError(
            f"a duration of at most {format_duration(MAX_DURATION_S)}, got {_short(value)}"
        )
    return seconds


def _float(value: object) -> float:
    """float(value), an OverflowError (a 400-digit integer) read as infinite."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf


def _short(value: object) -> str:
    """repr(value), cut to 40 characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def parse_rate(value: object) -> float:
    """Arrivals per second from ``200/s``, ``600/min``, or a bare number (per second)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as 200/s or 600/min, got {value!r}")
    rate = None
    if isinstance(value, (int, float)):
        rate = _float(value)
    elif isinstance(value, str):
        match = _RATE.match(value)
        if match:
            rate = _float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if rate is None:
        raise ValueError(f"expected a rate such as 200/s or 600/min, got {_short(value)}")
    if not math.isfinite(rate) or rate > MAX_RATE:
        raise ValueError(f"a rate of at most {MAX_RATE:g}/s, got {_short(value)}")
    return rate


def parse_share(value: object) -> float:
    """A traffic weight from ``97%``, ``97`` or ``0.97`` (weights are relative)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a share such as 97% or 3, got {value!r}")
    share = None
    if isinstance(value, (int, float)):
        share = _float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = _float(value.strip()[:-1])
        except ValueError:
            pass
    if share is None:
        raise ValueError(f"expected a share such as 97% or 3, got {_short(value)}")
    if not math.isfinite(share):
        raise ValueError(f"expected a finite share, got {_short(value)}")
    return share


def format_duration(seconds: float) -> str:
    """A short human form: 250ms, 3s, 1.5s, 2m, 2m30s."""
    if seconds < 0:
        return f"{seconds:g}s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds % 1:
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
