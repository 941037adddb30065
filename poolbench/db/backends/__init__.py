"""Every database poolbench measures, one module each; the engine asks :func:`backend_for`.

Adding a database is one module here (a :class:`Backend` and its :class:`Driver` classes,
see base.py) listed in ``BACKENDS``, plus its tests; nothing outside this package names
a dialect.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from sqlalchemy.engine import URL, make_url

from ...errors import DriverNotInstalled, UnknownBackend
from .base import Backend, Driver, ServerFacts
from .mysql import MySQL
from .postgresql import PostgreSQL

BACKENDS: tuple[type[Backend], ...] = (PostgreSQL, MySQL)


def sqlalchemy_default_driver(dialect: str) -> str | None:
    """The driver the installed SQLAlchemy gives a bare ``<dialect>://`` URL (psycopg for
    ``postgresql://`` and mysqldb for ``mysql://`` under 2.1), None if it knows none."""
    try:
        return str(make_url(f"{dialect}://").get_dialect().driver)
    except Exception:  # a dialect SQLAlchemy does not know
        return None


# databases poolbench refuses on principle, not for want of a module
_NO_POOL = {
    "sqlite": " (a file opened in-process: no server connections, so no pool of the kind "
    "poolbench measures)",
}


def with_default_driver(
    url: URL, backends: Sequence[type[Backend]] = BACKENDS, driver: str | None = None
) -> URL:
    """``url`` with a driver when it names none: ``driver`` (a scenario's
    ``database.driver``), else the one SQLAlchemy itself picks, so a URL means the same
    driver as in the user's application (``postgresql://`` -> ``postgresql+psycopg://``
    under SQLAlchemy 2.1)."""
    if "+" in url.drivername:
        return url
    for backend in backends:
        if url.drivername in backend.dialects or url.drivername in backend.aliases:
            dialect = url.drivername if url.drivername in backend.dialects else backend.dialects[0]
            chosen = driver or sqlalchemy_default_driver(dialect) or backend.default_driver
            return url.set(drivername=f"{dialect}+{chosen}")
    return url


def named(name: str, backends: Sequence[type[Backend]] = BACKENDS) -> type[Backend]:
    """The backend a scenario names (``database.requires``); UnknownBackend if none is."""
    for backend in backends:
        if backend.name == name:
            return backend
    raise UnknownBackend(f"poolbench knows no database {name!r} (it knows {_known(backends)})")


def names(backends: Sequence[type[Backend]] = BACKENDS) -> tuple[str, ...]:
    return tuple(backend.name for backend in backends)


def backend_for(
    url: URL, backends: Sequence[type[Backend]] = BACKENDS, engine: str | None = None
) -> Backend:
    """The backend for ``url``'s database, through its driver, for an ``engine`` ("sync":
    ``create_engine``, "async": ``create_async_engine``) of that driver; None: the
    driver's own (sync when it drives both).

    UnknownBackend for a database or driver poolbench does not know, or a driver that
    cannot drive that engine; DriverNotInstalled when the driver's package is missing
    (the message names what to pip install).
    """
    url = with_default_driver(url, backends)
    # the dialect from the URL's text: get_driver_name() would import an unknown dialect
    dialect = url.get_backend_name()
    backend = next((b for b in backends if dialect in b.dialects), None)
    if backend is None:
        why = _NO_POOL.get(dialect, "")
        raise UnknownBackend(
            f"poolbench cannot measure {dialect!r} databases{why}; it knows {_known(backends)}"
        )
    driver_name = url.get_driver_name()
    driver = next((d for d in backend.drivers if d.name == driver_name), None)
    if driver is None:
        known = ", ".join(f"{dialect}+{d.name}" for d in backend.drivers)
        default = (
            f" (SQLAlchemy's default for {dialect}://)"
            if driver_name == sqlalchemy_default_driver(dialect)
            else ""
        )
        raise UnknownBackend(
            f"poolbench has no {backend.title} driver {driver_name!r}{default}; use one of {known}"
        )
    if engine is None:
        engine = driver.engines[0]
    if engine not in driver.engines:
        usable = " or ".join(f"{dialect}+{d.name}" for d in backend.drivers if engine in d.engines)
        raise UnknownBackend(
            f"{dialect}+{driver_name} drives only {driver.engines[0]} engines and poolbench "
            f"runs this on a {engine} one; use {usable}"
        )
    if importlib.util.find_spec(driver.module) is None:
        raise DriverNotInstalled(
            f"{dialect}+{driver_name} needs the {driver.name} driver: "
            f"pip install '{driver.package}'"
        )
    return backend(driver())


def _known(backends: Sequence[type[Backend]]) -> str:
    return ", ".join(f"{b.title} ({b.example_url.split('+')[0]}://...)" for b in backends)


__all__ = [
    "BACKENDS",
    "Backend",
    "Driver",
    "ServerFacts",
    "backend_for",
    "named",
    "names",
    "sqlalchemy_default_driver",
    "with_default_driver",
]
