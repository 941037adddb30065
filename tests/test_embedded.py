"""The embedded PostgreSQL leaves the machine as it found it: a private directory, no TCP
port, no new account, no permission changed outside its own directory, nothing left after
a stop, a Ctrl-C during start or a SIGKILL of poolbench."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poolbench.db import pg_install
from poolbench.db.embedded import EmbeddedPostgres
from poolbench.db.pg_install import Account, can_reach
from poolbench.errors import EmbeddedServerError

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow")


@pytest.fixture
def parent() -> Iterator[Path]:
    """A parent directory of the test's own that the server account can reach (pytest's
    tmp_path may sit under a 0700 directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="poolbench-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _modes(paths: list[Path]) -> dict[str, str]:
    return {str(p): oct(p.stat().st_mode) for p in paths}


def _chain(path: Path) -> list[Path]:
    return [*reversed(path.parents), path]


def _digests() -> dict[str, str]:
    return {
        name: hashlib.sha256(Path(name).read_bytes()).hexdigest()
        for name in SYSTEM_FILES
        if os.access(name, os.R_OK)
    }


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _gone(pid: int) -> bool:
    try:
        return _status(pid)["State"].startswith(("Z", "X"))
    except OSError:
        return True


def _servers_in(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (a leftover server would)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and not _gone(int(proc.name)):
            found.append(int(proc.name))
    return found


def _wait_for(condition, seconds: float = 8.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- pure logic --------------------------------------------------------------------------


def test_can_reach_reads_the_mode_bits_of_every_parent(parent):
    inner = parent / "a" / "b"
    inner.mkdir(parents=True)
    program = inner / "postgres"
    program.write_text("")
    program.chmod(0o755)
    outsider = Account("outsider", os.geteuid() + 4242, os.getegid() + 4242)
    assert can_reach(program, outsider, 5)
    (parent / "a").chmod(0o700)  # a directory on the way shuts it out
    assert not can_reach(program, outsider, 5)
    (parent / "a").chmod(0o755)
    program.chmod(0o700)  # the program itself not executable for others
    assert not can_reach(program, outsider, 5)
    owner = Account("owner", os.geteuid(), os.getegid())
    assert can_reach(program, owner, 5) or os.geteuid() == 0


# -- a real server ------------------------------------------------------------------------


@pytest.mark.embedded
def test_the_server_is_private_and_changes_nothing_outside_its_directory(parent):
    package = pg_install.package_dir()
    watched = sorted({*_chain(package / "pginstall" / "bin" / "postgres"), *_chain(parent)})
    modes, digests = _modes(watched), _digests()
    with EmbeddedPostgres(parent_dir=str(parent)) as server:
        (run_dir,) = parent.iterdir()
        assert run_dir.name.startswith("poolbench-pg-") and run_dir == server.run_dir
        info = run_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == server.account.uid
        for driver in ("postgresql+psycopg2", "postgresql+psycopg"):
            engine = sa.create_engine(server.url.set(drivername=driver), poolclass=NullPool)
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW listen_addresses").scalar() == ""
                assert conn.exec_driver_sql("SHOW server_version").scalar().startswith("18")
            engine.dispose()
        if os.geteuid() == 0:  # the server dropped root: its account, no group of root's
            status = _status(server.pid)
            assert set(status["Uid"].split()) == {str(server.account.uid)}
            assert "0" not in status["Gid"].split() and "0" not in status["Groups"].split()
            assert server.account.name in pg_install.SERVER_ACCOUNTS
        pid = server.pid
    assert list(parent.iterdir()) == []
    assert _gone(pid)
    assert _modes(watched) == modes
    assert _digests() == digests


@pytest.mark.embedded
def test_restart_and_max_connections():
    with EmbeddedPostgres(max_connections=7) as server:

        def max_connections() -> str:
            engine = sa.create_engine(server.url, poolclass=NullPool)
            with engine.connect() as conn:
                value = conn.exec_driver_sql("SHOW max_connections").scalar()
            engine.dispose()
            return value

        assert max_connections() == "7"
        first = server.pid
        server.set_max_connections(9)
        assert server.pid != first and _gone(first)
        assert max_connections() == "9"


@pytest.mark.embedded
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another account")
def test_programs_the_account_cannot_reach_are_linked_into_the_run_directory(parent, monkeypatch):
    monkeypatch.setattr(pg_install, "can_reach", lambda *args: False)
    postgres = pg_install.package_dir() / "pginstall" / "bin" / "postgres"
    mode = postgres.stat().st_mode
    with EmbeddedPostgres(parent_dir=str(parent)) as server:
        exe = Path(os.readlink(f"/proc/{server.pid}/exe"))
        assert exe.is_relative_to(server.run_dir / "install")
        engine = sa.create_engine(server.url, poolclass=NullPool)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        engine.dispose()
    assert list(parent.iterdir()) == []
    assert postgres.stat().st_mode == mode


START_AND_WAIT = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with &
    try:
        from poolbench.db.embedded import EmbeddedPostgres

        print("starting", flush=True)
        with EmbeddedPostgres(parent_dir=sys.argv[1]) as server:
            print(server.run_dir, server.pid, flush=True)
            time.sleep(60)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def _start_child(parent: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", START_AND_WAIT, str(parent)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.embedded
def test_sigkill_of_poolbench_stops_the_server_and_removes_its_directory(parent):
    child = _start_child(parent)
    assert child.stdout is not None
    assert child.stdout.readline() == "starting\n"
    run_dir, pid = child.stdout.readline().split()
    assert Path(run_dir).is_dir() and not _gone(int(pid))
    child.kill()
    child.wait()
    assert _wait_for(lambda: _gone(int(pid)) and not Path(run_dir).exists(), 8)
    assert list(parent.iterdir()) == []


@pytest.mark.embedded
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.4, 0.8, None])
def test_ctrl_c_during_start_leaves_nothing(parent, delay):
    """Ctrl-C (SIGINT to the whole foreground group) at several moments of the start (it
    takes about a second: watchdog, initdb, postgres), and once the server runs (None)."""
    child = _start_child(parent)
    assert child.stdout is not None
    assert child.stdout.readline() == "starting\n"
    if delay is None:
        child.stdout.readline()
    else:
        time.sleep(delay)
    os.killpg(child.pid, signal.SIGINT)
    assert child.wait(timeout=30) == 130
    assert _wait_for(lambda: list(parent.iterdir()) == [] and _servers_in(parent) == [], 8)


# -- the same through the command line -----------------------------------------------------


def _poolbench(parent: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(parent)}
    for name in ("POOLBENCH_URL",):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "poolbench", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(parent),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _run_dirs(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith("poolbench-pg-")]


@pytest.mark.embedded
@pytest.mark.parametrize("moment", ["directory made", "server ready"])
def test_ctrl_c_while_poolbench_starts_the_embedded_server(parent, moment):
    child = _poolbench(parent, "closed-sessions", "--duration", "5s", "--progress", "none")
    if moment == "directory made":
        ready = lambda: bool(_run_dirs(parent))  # noqa: E731
    else:
        ready = lambda: any((d / "data" / "postmaster.pid").exists() for d in _run_dirs(parent))  # noqa: E731
    assert _wait_for(ready, 30), "the embedded server never started"
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert _wait_for(lambda: list(parent.iterdir()) == [] and _servers_in(parent) == [], 8)


@pytest.mark.embedded
def test_sigkill_of_a_poolbench_run_leaves_no_server(parent):
    child = _poolbench(parent, "closed-sessions", "--duration", "20s", "--progress", "plain")
    assert child.stdout is not None
    child.stdout.readline()  # the run has begun
    assert _wait_for(lambda: len(_run_dirs(parent)) == 1 and _servers_in(_run_dirs(parent)[0]))
    (run_dir,) = _run_dirs(parent)
    servers = _servers_in(run_dir)
    os.killpg(child.pid, signal.SIGKILL)  # poolbench and everything in its group
    child.wait()
    assert _wait_for(lambda: all(_gone(pid) for pid in servers) and not run_dir.exists(), 8)
    assert list(parent.iterdir()) == []


@pytest.mark.embedded
def test_the_next_start_removes_what_a_killed_watchdog_left(parent):
    """poolbench and its watchdog both SIGKILLed (a container stopped at once): the server
    and its directory stay, and the next start removes them, and nothing else."""
    child = _start_child(parent)
    assert child.stdout is not None
    assert child.stdout.readline() == "starting\n"
    run_dir, pid = child.stdout.readline().split()
    guard = int((Path(run_dir) / "watchdog.pid").read_text())
    os.kill(guard, signal.SIGKILL)
    child.kill()
    child.wait()
    time.sleep(0.5)
    assert Path(run_dir).is_dir() and not _gone(int(pid))  # orphaned, as documented
    stranger = parent / "poolbench-pg-notours"  # no watchdog.pid: not provably ours
    stranger.mkdir()
    with EmbeddedPostgres(parent_dir=str(parent)) as server:
        assert not Path(run_dir).exists() and _gone(int(pid))
        assert sorted(parent.iterdir()) == sorted([server.run_dir, stranger])
    assert list(parent.iterdir()) == [stranger]


def test_an_unusable_temporary_directory_is_one_line_and_leaves_nothing(parent):
    missing = parent / "missing"
    with pytest.raises(EmbeddedServerError) as caught:
        EmbeddedPostgres(parent_dir=str(missing)).start()
    message = str(caught.value)
    assert "\n" not in message
    assert f"{missing} is not a directory that user '" in message and "set TMPDIR" in message
    deep = parent / ("d" * 90)
    deep.mkdir()
    deep.chmod(0o755)
    with pytest.raises(EmbeddedServerError, match="too long for a Unix socket"):
        EmbeddedPostgres(parent_dir=str(deep)).start()
    assert list(parent.iterdir()) == [deep] and list(deep.iterdir()) == []


@pytest.mark.embedded
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another account")
def test_a_temporary_directory_the_account_cannot_reach_falls_back_to_tmp(parent, monkeypatch):
    private = parent / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # TMPDIR=private, as root's
    with EmbeddedPostgres() as server:
        assert server.run_dir.parent == Path("/tmp").resolve()
        assert list(private.iterdir()) == []
    assert not server.run_dir.exists()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


@pytest.mark.embedded
def test_a_server_that_will_not_start_says_why_in_one_line(parent):
    with pytest.raises(EmbeddedServerError) as caught:
        EmbeddedPostgres(parent_dir=str(parent), max_connections=-5).start()
    assert str(caught.value) == (
        "could not start the embedded PostgreSQL: FATAL: -5 is outside the valid range for "
        'parameter "max_connections" (1 .. 262143); give a server with --url or POOLBENCH_URL'
    )
    assert _wait_for(lambda: list(parent.iterdir()) == [] and _servers_in(parent) == [], 8)
