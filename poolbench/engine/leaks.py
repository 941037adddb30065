"""Leak sites: where the connections that stay checked out too long were checked out.

The idea of HikariCP's ``leakDetectionThreshold``: with ``leak_detection: 2s``, every
checkout records its call stack (the pool's ``checkout`` event fires in the caller's
thread), trimmed to the frames outside SQLAlchemy and poolbench. A connection still
checked out after the threshold is a leak suspect; suspects are grouped by call site. At
the first TimeoutError, the current holders are grouped the same way: the answer to
"who has all the connections?" at the moment it matters.

For poolbench's built-in behaviours (``session: leaky`` ...) the request code is
poolbench's own, so the site is the line in engine/requests.py that checks out.
"""

from __future__ import annotations

import os
import sys
import threading
from time import perf_counter
from types import FrameType
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..result import Holder, LeakSite

_SQLALCHEMY_DIR = os.path.dirname(sqlalchemy.__file__)
_POOLBENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_THREADING_FILE = threading.__file__
MAX_FRAMES = 6
MAX_SITES = 10


def _where(frame: FrameType) -> str:
    filename = frame.f_code.co_filename
    try:
        filename = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        pass
    if filename.startswith(".."):
        filename = frame.f_code.co_filename
    return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def call_stack(skip_frames: int = 1) -> list[str]:
    """The caller's stack, innermost first, outside SQLAlchemy and poolbench (or, for
    poolbench's own request code, its line in engine/requests.py)."""
    frame: FrameType | None = sys._getframe(skip_frames)
    stack: list[str] = []
    builtin: str | None = None
    while frame is not None and len(stack) < MAX_FRAMES:
        filename = frame.f_code.co_filename
        if filename.startswith(_SQLALCHEMY_DIR) or filename.startswith("<sqlalchemy"):
            pass
        elif filename.startswith(_POOLBENCH_DIR):
            if builtin is None and not stack:
                builtin = _where(frame)  # poolbench's own request code (or keep-alive job)
            if stack:
                break  # the user's frames end where poolbench called them
        elif filename == _THREADING_FILE:
            break
        else:
            stack.append(_where(frame))
        frame = frame.f_back
    if not stack and builtin is not None:
        stack.append(builtin)
    return stack or ["<unknown>"]


class LeakDetector:
    """Records a stack at every checkout; flags the ones held past ``threshold_s``."""

    def __init__(self, engine: Engine, threshold_s: float) -> None:
        self._engine = engine
        self.threshold_s = threshold_s
        self._lock = threading.Lock()
        self._out: dict[int, tuple[float, tuple[str, ...], bool]] = {}  # id(record) -> ...
        self._sites: dict[str, LeakSite] = {}
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)

    def remove(self) -> None:
        for name, fn in (("checkout", self._on_checkout), ("checkin", self._on_checkin)):
            if event.contains(self._engine, name, fn):
                event.remove(self._engine, name, fn)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        stack = tuple(call_stack(skip_frames=2))
        with self._lock:
            self._out[id(record)] = (perf_counter(), stack, False)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        now = perf_counter()
        with self._lock:
            entry = self._out.pop(id(record), None)
            if entry is not None and entry[2]:
                site = self._sites[entry[1][0]]
                site.longest_hold_s = max(site.longest_hold_s, now - entry[0])

    def scan(self) -> None:
        """Flag checkouts held past the threshold (called at every sample)."""
        now = perf_counter()
        with self._lock:
            for key, (since, stack, flagged) in list(self._out.items()):
                held = now - since
                if held < self.threshold_s:
                    continue
                site = self._sites.get(stack[0])
                if site is None:
                    site = self._sites[stack[0]] = LeakSite(site=stack[0], stack=list(stack))
                if not flagged:
                    site.count += 1
                    self._out[key] = (since, stack, True)
                site.longest_hold_s = max(site.longest_hold_s, held)

    def holders(self) -> list[Holder]:
        """Who has the connections now, grouped by site, most first."""
        now = perf_counter()
        groups: dict[str, Holder] = {}
        with self._lock:
            for since, stack, _ in self._out.values():
                holder = groups.setdefault(stack[0], Holder(stack[0], 0, 0.0))
                holder.count += 1
                holder.oldest_s = round(max(holder.oldest_s, now - since), 3)
        return sorted(groups.values(), key=lambda h: (-h.count, -h.oldest_s))[:MAX_SITES]

    def sites(self) -> list[LeakSite]:
        """The suspects so far, most first; ``held_at_end`` counts those still out now."""
        self.scan()
        with self._lock:
            still = {}
            for _, stack, flagged in self._out.values():
                if flagged:
                    still[stack[0]] = still.get(stack[0], 0) + 1
            sites = [
                LeakSite(
                    s.site, list(s.stack), s.count, round(s.longest_hold_s, 3), still.get(s.site, 0)
                )
                for s in self._sites.values()
            ]
        return sorted(sites, key=lambda s: (-s.count, -s.longest_hold_s))[:MAX_SITES]
