"""The user's own engine: found in their module, watched as found, its pool rebuilt on demand.

``app: {engine: myservice.db:engine}`` names an ``Engine``, an ``AsyncEngine``, a
``sessionmaker`` or an ``async_sessionmaker`` (its bind). poolbench measures that engine,
with its connect arguments and event listeners, rather than one of its own. The pool
settings are read from the pool as the app built it; pool keys the scenario (or ``--set``,
``--vary``, ``poolbench size``) names replace them by building a new pool of the same
class on the app's own creator and dispatch (what SQLAlchemy's ``Pool.recreate()`` does,
with other numbers), put back when the run ends.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import sessionmaker

try:  # an app with an AsyncEngine has greenlet (poolbench[async]); a sync app need not
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
except ImportError:  # without greenlet nothing can be an AsyncEngine: these match nothing

    class AsyncEngine:  # type: ignore[no-redef]
        sync_engine: Engine

    class async_sessionmaker:  # type: ignore[no-redef]
        kw: dict[str, Any]

        def __init__(self, **kw: Any) -> None:
            raise ImportError("async engines need greenlet: pip install 'poolbench[async]'")


from sqlalchemy.pool import NullPool, Pool, QueuePool

from ..errors import ScenarioError
from ..scenario.model import AppSettings, PoolSettings, Scenario

_RESET = {"rollback": "rollback", "commit": "commit", "none": None}


def app_source(scenario: Scenario) -> str:
    return f"app.engine {scenario.app.engine}" if scenario.app else "app"


def import_object(spec: str, base_dir: Path | None = None) -> Any:
    """``module:attr``, imported with the scenario's folder and the working directory on
    ``sys.path`` (as tasks are). ImportError/AttributeError name what is missing."""
    module_name, _, attr = spec.partition(":")
    for folder in (os.getcwd(), str(Path(base_dir).resolve()) if base_dir else None):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the app raised, or exited, as it was imported
        raise ImportError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    if not hasattr(module, attr):
        raise AttributeError(f"{module_name!r} has no {attr!r}")
    return getattr(module, attr)


@dataclass
class AppEngine:
    """What was found behind ``app.engine``."""

    spec: str
    engine: Engine  # the sync engine poolbench listens on (an AsyncEngine's sync_engine)
    async_engine: AsyncEngine | None
    factory: Any  # the app's sessionmaker / async_sessionmaker, or one bound to its engine
    found: PoolSettings  # the pool's settings as the app built them
    pool_class: str  # the app's pool class, by name
    original_pool: Pool = field(repr=False)

    @property
    def url(self) -> URL:
        return self.engine.url


def find_engine(spec: str, base_dir: Path | None = None) -> AppEngine:
    """The app's engine behind ``spec``; TypeError when it is none of the four kinds."""
    obj = import_object(spec, base_dir)
    factory: Any = None
    if isinstance(obj, (sessionmaker, async_sessionmaker)):
        factory = obj
        bind = obj.kw.get("bind")
        if bind is None:
            raise TypeError(f"{spec} is a {type(obj).__name__} without a bind (bind=engine)")
        obj = bind
    if isinstance(obj, AsyncEngine):
        async_engine, engine = obj, obj.sync_engine
    elif isinstance(obj, Engine):
        async_engine, engine = None, obj
    else:
        raise TypeError(
            f"{spec} is a {type(obj).__name__}; expected an Engine, AsyncEngine, sessionmaker "
            "or async_sessionmaker"
        )
    if factory is None:
        factory = _factory_in_module(spec, obj) or (
            async_sessionmaker(bind=obj) if async_engine is not None else sessionmaker(bind=obj)
        )
    pool = engine.pool
    found = settings_of(pool)
    return AppEngine(spec, engine, async_engine, factory, found, type(pool).__name__, pool)


def _factory_in_module(spec: str, bind: Any) -> Any:
    """The app's own session factory bound to ``bind`` in the engine's module, if it has one
    (so tasks get the app's Session class, SQLModel's included)."""
    module = sys.modules.get(spec.partition(":")[0])
    for value in vars(module).values() if module else ():
        if isinstance(value, (sessionmaker, async_sessionmaker)) and value.kw.get("bind") is bind:
            return value
    session_class = _sqlmodel_session(module)
    if session_class is not None and not isinstance(bind, AsyncEngine):
        return sessionmaker(bind=bind, class_=session_class)
    return None


def _sqlmodel_session(module: Any) -> type | None:
    """SQLModel's Session when the app's module uses SQLModel (``Session(engine)``)."""
    sqlmodel = sys.modules.get("sqlmodel")
    if module is None or sqlmodel is None:
        return None
    names = vars(module).values()
    if any(v is sqlmodel or v is getattr(sqlmodel, "Session", None) for v in names):
        return sqlmodel.Session
    return None


def settings_of(pool: Pool) -> PoolSettings:
    """A pool's settings in create_engine() terms. TypeError for a pool class poolbench
    cannot measure as a QueuePool or a NullPool."""
    reset = getattr(pool._reset_on_return, "name", str(pool._reset_on_return)).lower()
    reset = {"reset_rollback": "rollback", "reset_commit": "commit", "reset_none": "none"}.get(
        reset, reset if reset in _RESET else "rollback"
    )
    common: dict[str, Any] = {
        "pool_recycle": pool._recycle,
        "pool_pre_ping": pool._pre_ping,
        "pool_reset_on_return": reset,
    }
    if isinstance(pool, QueuePool):
        return PoolSettings(
            poolclass="QueuePool",
            pool_size=pool.size(),
            max_overflow=pool._max_overflow,
            pool_timeout=pool._timeout,
            pool_use_lifo=pool._pool.use_lifo,
            **common,
        )
    if isinstance(pool, NullPool):
        return PoolSettings(poolclass="NullPool", **common)
    raise TypeError(
        f"the app's engine uses {type(pool).__name__}; poolbench measures a QueuePool (or its "
        "asyncio twin) or a NullPool"
    )


def effective_settings(found: PoolSettings, scenario_pool: PoolSettings) -> PoolSettings:
    """The app's settings with the keys the scenario wrote in their place."""
    written = {k: getattr(scenario_pool, k) for k in scenario_pool.model_fields_set}
    return found.model_copy(update=written)


def rebuild_pool(app: AppEngine, settings: PoolSettings) -> Pool:
    """A new pool with ``settings`` on the app's creator, dialect and listeners."""
    old = app.original_pool
    common: dict[str, Any] = {
        "recycle": settings.pool_recycle,
        "echo": old.echo,
        "logging_name": old._orig_logging_name,
        "reset_on_return": _RESET[settings.pool_reset_on_return],
        "pre_ping": settings.pool_pre_ping,
        "_dispatch": old.dispatch,
        "dialect": old._dialect,
    }
    if settings.poolclass == "NullPool":
        return NullPool(old._creator, **common)
    cls = type(old) if isinstance(old, QueuePool) else _queue_pool_for(app)
    return cls(
        old._creator,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        timeout=settings.pool_timeout,
        use_lifo=settings.pool_use_lifo,
        **common,
    )


def _queue_pool_for(app: AppEngine) -> type[QueuePool]:
    if app.async_engine is not None:
        from sqlalchemy.pool import AsyncAdaptedQueuePool

        return AsyncAdaptedQueuePool
    return QueuePool


@dataclass
class BoundApp:
    """An app made ready for one run: the scenario with the pool as it is, and notes."""

    app: AppEngine
    scenario: Scenario
    notes: list[str]


@contextmanager
def bound_app(scenario: Scenario, base_dir: Path | None = None) -> Iterator[BoundApp]:
    """The app of ``scenario`` ready for a run: its pool as found or rebuilt, its setup run;
    afterwards its teardown run and its own pool put back."""
    settings: AppSettings | None = scenario.app
    assert settings is not None
    try:
        app = find_engine(settings.engine, base_dir)
        setup = import_object(settings.setup, base_dir) if settings.setup else None
        teardown = import_object(settings.teardown, base_dir) if settings.teardown else None
    except (ImportError, AttributeError, TypeError) as exc:
        raise ScenarioError(scenario.name, f"app: {exc}") from None
    effective = effective_settings(app.found, scenario.pool)
    notes = [f"the app's engine ({settings.engine}): {app.pool_class}, {app.found.describe()}"]
    rebuilt = effective != app.found
    if rebuilt:
        app.engine.pool = rebuild_pool(app, effective)
        changed = sorted(scenario.pool.model_fields_set)
        notes.append(
            f"pool rebuilt on the app's creator with {', '.join(changed)} from the scenario: "
            f"{effective.describe()}"
        )
    try:
        if setup is not None:
            _call(setup, settings.setup)
        try:
            yield BoundApp(app, scenario.model_copy(update={"pool": effective}), notes)
        finally:
            if teardown is not None:
                _call(teardown, settings.teardown)
    finally:
        # 0 connections left, the teardown's included; an async pool's connections are
        # closed on its event loop (the load driver did), not here
        if app.async_engine is None:
            app.engine.pool.dispose()
        if rebuilt:
            app.engine.pool = app.original_pool
            if app.async_engine is None:
                app.original_pool.dispose()


def _call(fn: Callable[[], Any], spec: str | None) -> None:
    try:
        result = fn()
        if hasattr(result, "__await__"):
            import asyncio

            asyncio.run(result)  # an async def setup/teardown
    except Exception as exc:
        raise ScenarioError(str(spec), f"failed: {type(exc).__name__}: {exc}") from None


@contextmanager
def app_target(scenario: Scenario, cli_url: str | None = None) -> Iterator[Any]:
    """The database of an app run: where the app's own engine connects. A URL given as
    well is refused (the app's configuration says where it connects)."""
    from ..db.target import Target
    from ..errors import UsageError

    if cli_url is not None:
        raise UsageError(
            f"--url: scenario {scenario.name!r} measures the app's own engine "
            f"({scenario.app.engine if scenario.app else ''}), which connects where the app "
            "is configured to; leave --url out"
        )
    try:
        app = find_engine(scenario.app.engine if scenario.app else "")
    except (ImportError, AttributeError, TypeError) as exc:
        raise ScenarioError(scenario.name, f"app: {exc}") from None
    yield Target(app.url, "app")


def served_scenario(scenario: Scenario) -> Scenario:
    """An ``app.asgi`` scenario with the pool settings the app's process will run with
    (found there, overridden as written); UsageError when the web extra is missing."""
    from ..errors import UsageError
    from .serve import missing_web_extra

    package = missing_web_extra(asgi=scenario.app is not None and scenario.app.asgi is not None)
    if package is not None:
        raise UsageError(
            f"app.{'asgi' if scenario.app and scenario.app.asgi else 'wsgi'} needs {package}: "
            "pip install 'poolbench[web]' (uvicorn and httpx)"
        )
    assert scenario.app is not None
    try:
        app = find_engine(scenario.app.engine)
    except (ImportError, AttributeError, TypeError) as exc:
        raise ScenarioError(scenario.name, f"app: {exc}") from None
    effective = effective_settings(app.found, scenario.pool)
    # the keys the scenario wrote stay the only ones marked written: the app's process
    # rebuilds its pool for those, and its note names them
    pool = PoolSettings.model_construct(
        _fields_set=set(scenario.pool.model_fields_set), **dict(effective)
    )
    return scenario.model_copy(update={"pool": pool})
