"""The pytest plugin: fail (or warn about) the test that leaks a pooled connection.

Off until asked: ``pytest --poolbench-leaks`` (``=fail``, the default, or ``=warn``) or
``poolbench_leaks = fail|warn`` in the ini file. Then every pool and Session in the test
process is watched (checkouts.py); after each test's teardown, the connections checked
out during that test and never returned are reported with the site in the user's code,
and the session's summary lists every leak once. Connections checked out while a fixture
of a wider scope was being set up belong to that fixture, not to the test that happened
to trigger it. The ``pool_watch`` fixture gives a test the pool figures for its own
assertions.

Nothing heavy is imported unless the plugin is switched on or ``pool_watch`` is used:
pytest loads this module in every run of every project that has poolbench installed.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .checkouts import CheckoutTracker, Figures, Leak, Owner

MODES = ("fail", "warn")
_WATCH = "poolbench-leakwatch"


class PoolLeakWarning(UserWarning):
    """A test left a pooled connection checked out (``--poolbench-leaks=warn``)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poolbench", "poolbench: pooled connection leaks")
    group.addoption(
        "--poolbench-leaks",
        nargs="?",
        action=_LeakModeAction,
        default=None,
        metavar="fail|warn",
        help="fail (default) or warn when a test leaves a pooled connection checked out",
    )
    parser.addini(
        "poolbench_leaks",
        "fail or warn when a test leaves a pooled connection checked out (empty: off)",
        default="",
    )


class _LeakModeAction(argparse.Action):
    """``--poolbench-leaks [fail|warn]``. argparse hands an optional value the next word
    even when it is a path (``pytest --poolbench-leaks tests/``); such a word is kept
    aside and given back to pytest's paths at configure time."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        if values is None or values in MODES:
            setattr(namespace, self.dest, values or "fail")
            return
        setattr(namespace, self.dest, "fail")
        taken = getattr(namespace, "poolbench_paths", None) or []
        namespace.poolbench_paths = [*taken, values]


def leak_mode(config: pytest.Config) -> str | None:
    """``fail``, ``warn`` or None (off): the option wins over the ini file."""
    mode = config.getoption("poolbench_leaks") or str(config.getini("poolbench_leaks")).strip()
    if not mode:
        return None
    if mode not in MODES:
        raise pytest.UsageError(f"poolbench_leaks = {mode!r}: expected fail or warn")
    return mode


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    paths = getattr(config.option, "poolbench_paths", None)
    if paths:  # words --poolbench-leaks took that were paths for pytest
        if config.args_source == pytest.Config.ArgsSource.ARGS:
            config.args = [*paths, *config.args]
        else:  # they were the only paths given: not the testpaths or the directory
            config.args = list(paths)
            config.args_source = pytest.Config.ArgsSource.ARGS
    mode = leak_mode(config)
    if mode is not None:
        _watch(config).mode = mode


def pytest_unconfigure(config: pytest.Config) -> None:
    watch = config.pluginmanager.get_plugin(_WATCH)
    if watch is not None:
        watch.tracker.remove()
        config.pluginmanager.unregister(watch, _WATCH)


def _watch(config: pytest.Config) -> LeakWatch:
    watch = config.pluginmanager.get_plugin(_WATCH)
    if watch is None:
        from .checkouts import CheckoutTracker

        watch = LeakWatch(CheckoutTracker(), config)
        watch.tracker.install()
        config.pluginmanager.register(watch, _WATCH)
    return watch


class PoolWatch:
    """The pools' figures since this test began (every pool in the process)."""

    def __init__(self, tracker: CheckoutTracker) -> None:
        self._tracker = tracker

    @property
    def checked_out(self) -> int:
        """Connections out of their pools right now."""
        return self._tracker.figures.checked_out

    @property
    def peak(self) -> int:
        """The most connections out at once since the test began."""
        return self._tracker.figures.peak

    @property
    def checkouts(self) -> int:
        return self._tracker.figures.checkouts

    @property
    def waits(self) -> int:
        """Checkouts that found their pool exhausted and waited (timeouts included)."""
        return self._tracker.figures.waits

    @property
    def timeouts(self) -> int:
        """Checkouts that gave up with sqlalchemy.exc.TimeoutError."""
        return self._tracker.figures.timeouts

    @property
    def longest_wait_s(self) -> float:
        return self._tracker.figures.longest_wait_s

    def figures(self) -> Figures:
        """A copy of every figure, to compare or print."""
        from dataclasses import replace

        return replace(self._tracker.figures)

    def __repr__(self) -> str:
        return f"<pool_watch {self.figures()}>"


@pytest.fixture
def pool_watch(request: pytest.FixtureRequest) -> PoolWatch:
    """The pool figures poolbench measures (checked_out, peak, checkouts, waits, timeouts,
    longest_wait_s), counted from the start of this test."""
    watch = _watch(request.config)
    if watch.running is None:  # switched on by this fixture, mid-test
        watch.start(request.node.nodeid)
    return PoolWatch(watch.tracker)


class LeakWatch:
    """The hooks that tell the tracker what runs, and report what each test left behind."""

    def __init__(self, tracker: CheckoutTracker, config: pytest.Config) -> None:
        self.tracker = tracker
        self.config = config
        self.mode: str | None = None  # None: pool_watch only, no leak reports
        self.running: Owner | None = None
        self.reported: list[Leak] = []

    def start(self, nodeid: str) -> None:
        from .checkouts import Owner

        self.running = Owner("test", nodeid)
        self.tracker.begin(self.running)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        self.start(item.nodeid)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Iterator[Any]:
        if fixturedef.scope == "function":
            return (yield)
        from .checkouts import Owner

        # a wider-scope fixture holds its connections on purpose, for many tests
        previous = self.tracker.owner
        self.tracker.owner = Owner("fixture", f"{fixturedef.argname} ({fixturedef.scope})")
        try:
            return (yield)
        finally:
            self.tracker.owner = previous

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        report = yield
        if call.when != "teardown" or self.running is None:
            return report
        owner, self.running = self.running, None
        self.tracker.end()
        if self.mode is None:
            return report
        if self.tracker.outstanding(owner):
            gc.collect()  # a Session in a reference cycle returns its connection here
        leaks = self.tracker.leaks_of(owner)
        if not leaks:
            return report
        self.reported += leaks
        message = describe(owner.name, leaks)
        if self.mode == "warn":
            item.warn(PoolLeakWarning(message))
        elif report.passed:
            report.outcome = "failed"
            report.longrepr = message
        else:  # the teardown failed already: add the leak to what it says
            report.sections.append(("poolbench leaks", message))
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.mode is None:
            return
        gc.collect()
        left = self.tracker.unreturned()
        self.reported += left
        if left and self.mode == "fail" and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.mode is None or not self.reported:
            return
        terminalreporter.section("poolbench: connection leaks", yellow=True)
        by_owner: dict[Owner, list[Leak]] = {}
        for leak in self.reported:
            by_owner.setdefault(leak.owner, []).append(leak)
        for owner, leaks in by_owner.items():
            terminalreporter.write_line(describe(owner.label(), leaks))
        total = len(self.reported)
        terminalreporter.write_line(
            f"{total} leaked connection{'s' if total != 1 else ''} in {len(by_owner)} "
            f"place{'s' if len(by_owner) != 1 else ''} (poolbench_leaks = {self.mode})"
        )


def describe(who: str, leaks: list[Leak]) -> str:
    """One block: ``<who> leaked 1 connection: checked out at app/crud.py:30 in get_items``."""
    count = f"{len(leaks)} connection{'s' if len(leaks) != 1 else ''}"
    if len(leaks) == 1:
        return f"{who} leaked {count}: {leaks[0].describe()}"
    return f"{who} leaked {count}:\n" + "\n".join(f"  {leak.describe()}" for leak in leaks)
