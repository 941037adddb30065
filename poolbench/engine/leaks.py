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

import asyncio
import os
import sys
import threading
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..checkouts import SessionBirthplaces
from ..result import Holder, LeakSite
from ..sites import MAX_FRAMES, POOLBENCH_DIR, SQLALCHEMY_DIR, frames, skipped, where

_THREADING_FILE = threading.__file__
_ASYNCIO_DIR = os.path.join(os.path.dirname(asyncio.__file__), "")
MAX_SITES = 10


_OWN_LINE = "\0"  # marks poolbench's own line while a group may still be found further out
# why a built-in behaviour keeps its connection: by design, not a bug of poolbench's
_BY_DESIGN = {
    "leaky": "the session is never closed, by design",
    "unclosed": "the session is left to the garbage collector, by design",
    "leak_on_error": "the session is not closed when the request fails, by design",
    "closed": "the session is closed after its hold, by design",
}


def _group_site(frame: Any) -> str | None:
    """``group 'leaky': the session is never closed, by design`` when ``frame`` is the
    built-in request of a workload group (a local ``plan`` with its group), else None."""
    plan = frame.f_locals.get("plan") if frame.f_code.co_name in ("run", "_run") else None
    group = getattr(plan, "group", None)
    if group is None or getattr(group, "task", None) is not None:
        return None
    return f"group {group.label!r}: {_BY_DESIGN.get(group.session, group.session)}"


def call_stack(
    skip_frames: int = 1, skip: tuple[str, ...] = ()
) -> tuple[list[str], list[str], bool]:
    """The caller's stack in the user's code, innermost first, and the library frames below
    its innermost frame (an ORM wrapper's ``execute``), and whether the code was poolbench's
    own. SQLAlchemy, the standard library, site-packages and ``skip`` are library; for
    poolbench's own request code (no user frame at all), the stack is its line in
    engine/requests.py."""
    stack: list[str] = []
    below: list[str] = []
    builtin: str | None = None
    own_line: str | None = None
    for frame in frames(sys._getframe(skip_frames)):
        if len(stack) >= MAX_FRAMES:
            break
        filename = frame.f_code.co_filename
        if filename.startswith(SQLALCHEMY_DIR) or filename.startswith("<sqlalchemy"):
            continue
        if filename.startswith(POOLBENCH_DIR):
            if not stack and (builtin is None or builtin.startswith(_OWN_LINE)):
                # poolbench's own request code (or keep-alive job): name the group whose
                # behaviour this is, found as the request's ``plan`` further out
                group = _group_site(frame)
                if group is not None:
                    own_line = where(frame)
                builtin = group or builtin or _OWN_LINE + where(frame)
            if stack:
                break  # the user's frames end where poolbench called them
        elif filename == _THREADING_FILE or filename.startswith(_ASYNCIO_DIR):
            break  # a thread's or an event loop's own frames: the request began here
        elif skipped(filename, skip):
            if not stack and len(below) < MAX_FRAMES:
                below.append(where(frame))
        else:
            stack.append(where(frame))
    if not stack and builtin is not None:
        if own_line is not None:  # the group first, then where poolbench checked out
            return [builtin, own_line], below, True
        return [builtin.removeprefix(_OWN_LINE)], below, True
    return stack or ["<unknown>"], below, False


class LeakDetector:
    """Records a stack at every checkout; flags the ones held past ``threshold_s``.

    A connection's site is the innermost frame of the user's code at checkout; when there
    is none (poolbench's own request code drove a dependency), it is where the Session
    holding the connection was created, which is the user's line that matters then."""

    def __init__(self, engine: Engine, threshold_s: float, skip: tuple[str, ...] = ()) -> None:
        self._engine = engine
        self.threshold_s = threshold_s
        self._skip = skip
        self._lock = threading.Lock()
        self._out: dict[int, _Out] = {}  # id(connection record) -> the checkout
        self._sites: dict[str, LeakSite] = {}
        self.births = SessionBirthplaces(skip)
        self.births.install()
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)

    def remove(self) -> None:
        for name, fn in (("checkout", self._on_checkout), ("checkin", self._on_checkin)):
            if event.contains(self._engine, name, fn):
                event.remove(self._engine, name, fn)
        self.births.remove()

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        stack, below, own = call_stack(skip_frames=2, skip=self._skip)
        with self._lock:
            self._out[id(record)] = _Out(perf_counter(), tuple(stack), tuple(below), own)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        now = perf_counter()
        self.births.forget(id(record))
        with self._lock:
            entry = self._out.pop(id(record), None)
            if entry is not None and entry.site is not None:
                site = self._sites[entry.site]
                site.longest_hold_s = max(site.longest_hold_s, now - entry.since)

    def _key(self, record_id: int, entry: _Out) -> tuple[str, str | None]:
        """The site a checkout is grouped under, and where its Session was created."""
        created = self.births.created_at(record_id)
        if created is not None and entry.own:
            return created, created
        return entry.stack[0], created

    def scan(self) -> None:
        """Flag checkouts held past the threshold (called at every sample)."""
        now = perf_counter()
        with self._lock:
            for key, entry in list(self._out.items()):
                held = now - entry.since
                if held < self.threshold_s:
                    continue
                if entry.site is None:
                    entry.site, created = self._key(key, entry)
                    site = self._sites.get(entry.site)
                    if site is None:
                        stack = list(entry.stack)
                        if stack[0] != entry.site:
                            stack.insert(0, entry.site)
                        site = self._sites[entry.site] = LeakSite(
                            site=entry.site, stack=stack, below=list(entry.below), created=created
                        )
                    site.count += 1
                site = self._sites[entry.site]
                site.longest_hold_s = max(site.longest_hold_s, held)

    def holders(self) -> list[Holder]:
        """Who has the connections now, grouped by site, most first."""
        now = perf_counter()
        groups: dict[str, Holder] = {}
        with self._lock:
            for key, entry in self._out.items():
                name = entry.site or self._key(key, entry)[0]
                holder = groups.setdefault(name, Holder(name, 0, 0.0))
                holder.count += 1
                holder.oldest_s = round(max(holder.oldest_s, now - entry.since), 3)
        return sorted(groups.values(), key=lambda h: (-h.count, -h.oldest_s))[:MAX_SITES]

    def sites(self) -> list[LeakSite]:
        """The suspects so far, most first; ``held_at_end`` counts those still out now."""
        self.scan()
        with self._lock:
            still: dict[str, int] = {}
            for entry in self._out.values():
                if entry.site is not None:
                    still[entry.site] = still.get(entry.site, 0) + 1
            sites = [
                LeakSite(
                    s.site,
                    list(s.stack),
                    s.count,
                    round(s.longest_hold_s, 3),
                    still.get(s.site, 0),
                    list(s.below),
                    s.created,
                )
                for s in self._sites.values()
            ]
        return sorted(sites, key=lambda s: (-s.count, -s.longest_hold_s))[:MAX_SITES]


@dataclass
class _Out:
    """One connection out of the pool: since when, its stack, and its site once flagged."""

    since: float
    stack: tuple[str, ...]
    below: tuple[str, ...]
    own: bool  # poolbench's own request code checked out (no frame of the user's)
    site: str | None = None
