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
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 500ms, 10s or 2m, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    return seconds


def parse_rate(value: object) -> float:
    """Arrivals per second from ``200/s``, ``600/min``, or a bare number (per second)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as 200/s or 600/min, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _RATE.match(value)
        if match:
            return float(match.group(1)) * _RATE_UNITS[match.group(2)]
    raise ValueError(f"expected a rate such as 200/s or 600/min, got {value!r}")


def parse_share(value: object) -> float:
    """A traffic weight from ``97%``, ``97`` or ``0.97`` (weights are relative)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a share such as 97% or 3, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1])
        except ValueError:
            pass
    raise ValueError(f"expected a share such as 97% or 3, got {value!r}")


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
