"""What the pytest plugin costs per test: a suite of small database tests run with and
without ``--poolbench-leaks``, alternated over several rounds (docs/ci.md).

Each generated test checks out a connection through a Session and runs ``SELECT 1``
against the real PostgreSQL, the smallest test a service's suite has. The suite runs in a
fresh pytest process per round, measured as that process's CPU time (user + system:
on a shared machine wall time swings with the other tenants, CPU time much less); the
cheapest round of each side is compared, with the median of the per-pair differences.
The plugin is loaded on both sides (it is off until asked), so only the watching differs.

With ``--instructions`` the suite runs under callgrind instead, at two sizes, so the
per-test cost is separated from start-up and repeatable to the instruction (slow: minutes
a run). With ``--in-process`` only what the plugin adds to a test is timed, in one
process: the test's Session and checkout with the tracker installed, and the look at what
is still out afterwards, against the same without it (CPU time, cheapest of 7 rounds).

Usage: python bench/plugin_overhead.py [--url URL] [--tests 300] [--rounds 5]
                                       [--instructions | --in-process]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

engine = sa.create_engine({url!r}, pool_size=5, max_overflow=0)


@pytest.fixture
def db():
    with Session(engine) as session:
        yield session
"""

TESTS = """
import sqlalchemy as sa

{tests}
"""

TEST = """
def test_{i}(db):
    assert db.execute(sa.text("SELECT {i}")).scalar_one() == {i}
"""


def write_suite(where: Path, url: str, count: int) -> None:
    (where / "conftest.py").write_text(textwrap.dedent(CONFTEST).format(url=url))
    per_file = 50
    for start in range(0, count, per_file):
        tests = "".join(
            textwrap.dedent(TEST).format(i=i) for i in range(start, min(count, start + per_file))
        )
        (where / f"test_{start // per_file}.py").write_text(TESTS.format(tests=tests))


def count_instructions(where: Path, leaks: bool) -> int:
    """Instructions the pytest process executed (callgrind's Ir)."""
    out = where / "callgrind.out"
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    run_suite(where, leaks, wrapper)
    for line in out.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit("callgrind wrote no totals")


def instructions(url: str, small: int, large: int) -> None:
    counted: dict[tuple[int, bool], int] = {}
    for size in (small, large):
        with tempfile.TemporaryDirectory(prefix="poolbench-plugin-") as tmp:
            write_suite(Path(tmp), url, size)
            for leaks in (False, True):
                counted[size, leaks] = count_instructions(Path(tmp), leaks)
    n = large - small
    per_test_off = (counted[large, False] - counted[small, False]) / n
    per_test_on = (counted[large, True] - counted[small, True]) / n
    fixed = counted[small, True] - counted[small, False] - small * (per_test_on - per_test_off)
    print(f"instructions (callgrind), suites of {small} and {large} tests")
    print(f"  a test, plugin off  {per_test_off:12,.0f}")
    print(f"  a test, plugin on   {per_test_on:12,.0f}  ({per_test_on / per_test_off - 1:+.1%})")
    print(f"  once a session (start-up, final collection)  {fixed:+,.0f}")


def in_process(url: str, tests: int, rounds: int) -> None:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from poolbench.checkouts import CheckoutTracker, Owner

    engine = sa.create_engine(url, pool_size=5, max_overflow=0)
    tracker = CheckoutTracker()
    query = sa.text("SELECT 1")

    def one_test(i: int, watched: bool) -> None:
        owner = Owner("test", f"test_x.py::test_{i}")
        if watched:
            tracker.begin(owner)
        with Session(engine) as session:
            session.execute(query).scalar_one()
        if watched:  # what the plugin does at teardown
            tracker.end()
            tracker.outstanding(owner)
            tracker.leaks_of(owner)

    def timed(watched: bool) -> float:
        started = time.process_time()
        for i in range(tests):
            one_test(i, watched)
        return (time.process_time() - started) / tests * 1e6

    for i in range(50):  # connect, and warm SQLAlchemy's caches
        one_test(i, False)
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        off.append(timed(False))
        tracker.install()
        on.append(timed(True))
        tracker.remove()
    engine.dispose()
    pairs = sorted(b - a for a, b in zip(off, on, strict=True))
    print(f"{tests} tests in one process, {rounds} rounds, CPU time (cheapest round)")
    print(f"  a test's Session + SELECT  {min(off):6.0f} us")
    print(f"  with the plugin watching   {min(on):6.0f} us")
    print(
        f"  the plugin's part {min(on) - min(off):+.0f} us a test; "
        f"median of the pairs {pairs[len(pairs) // 2]:+.0f} us"
    )


def run_suite(where: Path, leaks: bool, wrapper: list[str] | None = None) -> float:
    args = [*(wrapper or []), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    installed = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    if "poolbench" not in installed:  # an install that predates the entry point
        args += ["-p", "poolbench.pytest_plugin"]
    if leaks:
        args.append("--poolbench-leaks")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, cwd=where, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"the suite failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "POOLBENCH_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--in-process", action="store_true", help="time the plugin's part")
    options = parser.parse_args()
    if options.in_process:
        in_process(options.url, options.tests, max(options.rounds, 7))
        return
    if options.instructions:
        instructions(options.url, max(10, options.tests // 3), options.tests)
        return
    with tempfile.TemporaryDirectory(prefix="poolbench-plugin-") as tmp:
        where = Path(tmp)
        write_suite(where, options.url, options.tests)
        off: list[float] = []
        on: list[float] = []
        for _ in range(options.rounds):
            off.append(run_suite(where, leaks=False))
            on.append(run_suite(where, leaks=True))
    n = options.tests
    best_off, best_on = min(off), min(on)
    pairs = sorted((b - a) / n * 1e6 for a, b in zip(off, on, strict=True))
    print(f"{n} tests, {options.rounds} rounds, CPU time of the pytest process (cheapest round)")
    print(f"  off  {best_off:6.2f} s  ({best_off / n * 1e3:.2f} ms a test, start-up included)")
    print(f"  on   {best_on:6.2f} s  ({best_on / n * 1e3:.2f} ms a test, start-up included)")
    print(
        f"  overhead {(best_on - best_off) / n * 1e6:.0f} us a test "
        f"({(best_on / best_off - 1) * 100:+.1f} %); median of the pairs "
        f"{pairs[len(pairs) // 2]:.0f} us"
    )


if __name__ == "__main__":
    main()
