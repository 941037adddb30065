"""Who holds which pooled connection: every checkout of every pool in the process.

The pytest plugin's memory. SQLAlchemy's class-level events (``Pool`` checkout, checkin
and detach; ``Session`` after_begin) reach every engine, sync or async, without a change
to the user's code. Each checkout is stamped with its site in the user's code (sites.py)
and its owner: the test running at that moment, or the wider-scope fixture being set up.
Sessions are stamped the same way when created, so a leak can say where its Session came
from. Nothing here knows pytest; the plugin tells the tracker what is running.

``Pool.connect`` is wrapped (while the tracker is installed) to time checkouts and count
the ones that waited or timed out: SQLAlchemy fires no event for either.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool, QueuePool

from .sites import Site, describe_site, user_site


@dataclass(frozen=True)
class Owner:
    """What was running when a connection was checked out or a Session created."""

    kind: str  # "test", "fixture" (of a wider scope than function) or "outside"
    name: str  # the test's node id, or the fixture's name

    def label(self) -> str:
        if self.kind == "fixture":
            return f"fixture {self.name}"
        return self.name if self.kind == "test" else "outside any test"


OUTSIDE = Owner("outside", "")


def _shown(site: Site | None) -> str:
    return describe_site(site) if site is not None else "<unknown>"


@dataclass
class Checkout:
    """One connection out of a pool, not yet returned."""

    site: Site | None
    owner: Owner
    at: float
    session: Any = None  # weakref to the Session holding it, when one does
    reported: bool = False


@dataclass(frozen=True)
class Leak:
    """A connection checked out and never returned, with its Session's birthplace if any."""

    owner: Owner
    site: str
    session_site: str | None = None

    def describe(self) -> str:
        text = f"checked out at {self.site}"
        if self.session_site is not None:
            text += f"; session created at {self.session_site}"
        return text


@dataclass
class Figures:
    """What the pools did since the last reset (one test): poolbench's own pool figures."""

    checkouts: int = 0
    checked_out: int = 0  # out right now, every pool
    peak: int = 0  # most out at once since the reset
    waits: int = 0  # checkouts that found the pool exhausted and had to wait
    timeouts: int = 0  # checkouts that gave up (sqlalchemy.exc.TimeoutError)
    longest_wait_s: float = 0.0


@dataclass
class _SessionMark:
    site: Site | None
    owner: Owner


class CheckoutTracker:
    """Every checkout of every pool; safe from any thread. ``install()`` / ``remove()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._out: dict[int, Checkout] = {}  # id(connection record) -> checkout
        self._sessions: weakref.WeakKeyDictionary[Session, _SessionMark] = (
            weakref.WeakKeyDictionary()
        )
        self.owner = OUTSIDE
        self.figures = Figures()
        self._installed = False
        self._original_connect: Any = None
        self._original_session_init: Any = None

    # -- what runs now (told by the plugin) ---------------------------------------------------

    def begin(self, owner: Owner) -> None:
        """From now on checkouts and new Sessions belong to ``owner``; figures restart."""
        with self._lock:
            self.owner = owner
            out = len(self._out)
            self.figures = Figures(checked_out=out, peak=out)

    def end(self) -> None:
        self.owner = OUTSIDE

    # -- the answers ---------------------------------------------------------------------------

    def leaks_of(self, owner: Owner) -> list[Leak]:
        """Connections ``owner`` checked out and still holds, not yet reported. A connection
        held by a Session that a wider-scope fixture created is that fixture's business."""
        with self._lock:
            found = []
            for checkout in self._out.values():
                if checkout.owner != owner or checkout.reported:
                    continue
                session_mark = self._session_mark(checkout)
                if session_mark is not None and session_mark.owner.kind == "fixture":
                    continue
                checkout.reported = True
                site = _shown(session_mark.site) if session_mark is not None else None
                found.append(Leak(owner, _shown(checkout.site), site))
            return found

    def unreturned(self) -> list[Leak]:
        """Every connection still out and not yet reported (at the end of the session)."""
        with self._lock:
            found = []
            for checkout in self._out.values():
                if checkout.reported:
                    continue
                checkout.reported = True
                mark = self._session_mark(checkout)
                site = _shown(mark.site) if mark is not None else None
                found.append(Leak(checkout.owner, _shown(checkout.site), site))
            return found

    def outstanding(self, owner: Owner) -> int:
        with self._lock:
            return sum(1 for c in self._out.values() if c.owner == owner and not c.reported)

    def _session_mark(self, checkout: Checkout) -> _SessionMark | None:
        session = checkout.session() if checkout.session is not None else None
        return self._sessions.get(session) if session is not None else None

    # -- wiring ------------------------------------------------------------------------------

    def install(self) -> None:
        if self._installed:
            return
        event.listen(Pool, "checkout", self._on_checkout)
        event.listen(Pool, "checkin", self._on_checkin)
        event.listen(Pool, "detach", self._on_detach)
        event.listen(Session, "after_begin", self._on_session_begin)
        self._original_connect = Pool.connect
        self._original_session_init = Session.__init__
        Pool.connect = _timed_connect(self, self._original_connect)  # type: ignore[method-assign]
        Session.__init__ = _marked_init(self, self._original_session_init)  # type: ignore[method-assign]
        self._installed = True

    def remove(self) -> None:
        if not self._installed:
            return
        for target, name, fn in (
            (Pool, "checkout", self._on_checkout),
            (Pool, "checkin", self._on_checkin),
            (Pool, "detach", self._on_detach),
            (Session, "after_begin", self._on_session_begin),
        ):
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        Pool.connect = self._original_connect  # type: ignore[method-assign]
        Session.__init__ = self._original_session_init  # type: ignore[method-assign]
        self._installed = False

    # -- events (any thread) -------------------------------------------------------------------

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        site = user_site(skip_frames=2)
        with self._lock:
            self._out[id(record)] = Checkout(site, self.owner, perf_counter())
            figures = self.figures
            figures.checkouts += 1
            figures.checked_out = len(self._out)
            figures.peak = max(figures.peak, figures.checked_out)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            if self._out.pop(id(record), None) is not None:
                self.figures.checked_out = len(self._out)

    def _on_detach(self, dbapi_connection: Any, record: Any) -> None:
        self._on_checkin(dbapi_connection, record)

    def _on_session_begin(self, session: Session, transaction: Any, connection: Any) -> None:
        fairy = connection.connection
        record = getattr(fairy, "_connection_record", None)
        with self._lock:
            checkout = self._out.get(id(record))
            if checkout is not None:
                checkout.session = weakref.ref(session)

    def _mark_session(self, session: Session) -> None:
        self._sessions[session] = _SessionMark(user_site(), self.owner)

    def _checkout_timed(self, waited_s: float, timed_out: bool) -> None:
        with self._lock:
            figures = self.figures
            figures.waits += 1
            figures.timeouts += timed_out
            figures.longest_wait_s = max(figures.longest_wait_s, waited_s)


def _exhausted(pool: Pool) -> bool:
    """Would a checkout wait? (QueuePool with no idle connection and no overflow left)."""
    if not isinstance(pool, QueuePool):
        return False
    max_overflow = getattr(pool, "_max_overflow", -1)  # no public accessor
    return max_overflow > -1 and pool.checkedin() == 0 and pool.overflow() >= max_overflow


def _timed_connect(tracker: CheckoutTracker, connect: Any) -> Any:
    def connect_timed(pool: Pool) -> Any:
        waited = _exhausted(pool)
        timed_out = False
        started = perf_counter()
        try:
            return connect(pool)
        except sa_exc.TimeoutError:
            timed_out = True
            raise
        finally:
            if waited or timed_out:
                tracker._checkout_timed(perf_counter() - started, timed_out)

    connect_timed.__wrapped__ = connect  # type: ignore[attr-defined]
    return connect_timed


def _marked_init(tracker: CheckoutTracker | SessionBirthplaces, init: Any) -> Any:
    def init_marked(session: Session, *args: Any, **kwargs: Any) -> None:
        init(session, *args, **kwargs)
        tracker._mark_session(session)

    init_marked.__wrapped__ = init  # type: ignore[attr-defined]
    return init_marked


class SessionBirthplaces:
    """Where each Session holding a pooled connection was created (its ``sessionmaker()``
    call, or the dependency that made it), because checkout is lazy and the first query
    is rarely the line that forgot to close. ``install()`` / ``remove()``; the same
    stamping the tracker does, for one engine's leak detector (engine/leaks.py)."""

    def __init__(self, skip: tuple[str, ...] = ()) -> None:
        self._skip = skip
        self._lock = threading.Lock()
        self._sessions: weakref.WeakKeyDictionary[Session, Site | None] = (
            weakref.WeakKeyDictionary()
        )
        self._holders: dict[int, weakref.ref[Session]] = {}  # id(connection record) -> session
        self._original_init: Any = None
        self.owner = OUTSIDE  # _marked_init's tracker interface

    def install(self) -> None:
        event.listen(Session, "after_begin", self._on_session_begin)
        self._original_init = Session.__init__
        Session.__init__ = _marked_init(self, self._original_init)  # type: ignore[method-assign]

    def remove(self) -> None:
        if self._original_init is None:
            return
        if event.contains(Session, "after_begin", self._on_session_begin):
            event.remove(Session, "after_begin", self._on_session_begin)
        Session.__init__ = self._original_init  # type: ignore[method-assign]
        self._original_init = None

    def _mark_session(self, session: Session) -> None:
        self._sessions[session] = user_site(skip=self._skip)

    def _on_session_begin(self, session: Session, transaction: Any, connection: Any) -> None:
        record = getattr(connection.connection, "_connection_record", None)
        if record is not None:
            with self._lock:
                self._holders[id(record)] = weakref.ref(session)

    def forget(self, record_id: int) -> None:
        with self._lock:
            self._holders.pop(record_id, None)

    def created_at(self, record_id: int) -> str | None:
        """Where the Session holding that connection was created, if a Session holds it."""
        with self._lock:
            ref = self._holders.get(record_id)
        session = ref() if ref is not None else None
        if session is None:
            return None
        site = self._sessions.get(session)
        return describe_site(site) if site is not None else None
