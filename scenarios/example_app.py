"""Request code of a small service, for scenarios/your-code.yaml (task: example_app:...).

poolbench calls one of these functions per request:

- ``api: session`` — the function gets a SQLAlchemy Session that poolbench opens (and
  closes, or not, per the group's ``session`` behaviour), already holding its connection.
- ``api: connection`` — it gets a Connection from ``engine.connect()``.
- ``api: sessionmaker`` — it gets the sessionmaker and manages sessions itself, as your
  service's own code (or a FastAPI ``get_db`` dependency) does.

Raise to fail a request; the error is counted by kind like any other.
"""

from __future__ import annotations

import weakref

from sqlalchemy import text
from sqlalchemy.orm import Session, scoped_session, sessionmaker


def order_summary(session: Session) -> int:
    """A well-behaved endpoint: poolbench hands it a session and closes it afterwards."""
    return session.execute(text("SELECT 1")).scalar_one()


def get_db(factory: sessionmaker):
    """A FastAPI-style dependency: the session is closed when the request is done."""
    db = factory()
    try:
        yield db
    finally:
        db.close()


def order_history(factory: sessionmaker) -> int:
    """Uses the dependency the way FastAPI would: nothing leaks."""
    for db in get_db(factory):
        return db.execute(text("SELECT 2")).scalar_one()
    raise RuntimeError("get_db yielded nothing")


# The bug: a thread-local scoped_session (as Flask apps set up) whose teardown hook,
# Session.remove(), never runs. Each thread keeps its session, and the session keeps its
# connection checked out, for as long as the thread lives.
_registries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def legacy_report(factory: sessionmaker) -> int:
    """A legacy endpoint that uses a scoped_session and never calls remove()."""
    if factory not in _registries:
        _registries[factory] = scoped_session(factory)
    session = _registries[factory]()
    return session.execute(text("SELECT 3")).scalar_one()  # checks out, never gives back
