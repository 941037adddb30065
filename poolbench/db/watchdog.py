"""The embedded server's watchdog: it outlives poolbench, however poolbench ends.

Run as ``python -I -S watchdog.py PARENT_DIR`` in a session of its own (so Ctrl-C in the
terminal does not reach it). It makes the run's directory (``poolbench-pg-*``, mode 0700)
and prints its path, then reads poolbench's lines on stdin: ``pid N`` names a server
process. When stdin ends (poolbench stopped the server and closed it, or poolbench died,
even by SIGKILL, and the kernel closed it) it stops whatever server is still running in
that directory and removes the directory. Standard library only: it starts in a few
milliseconds and imports nothing of poolbench's.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time

PREFIX = "poolbench-pg-"
PID_FILE = "watchdog.pid"  # the watchdog's own pid: a directory without a live one is orphaned


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    run_dir = tempfile.mkdtemp(prefix=PREFIX, dir=argv[1] or None)
    pids: set[int] = set()
    try:
        with open(os.path.join(run_dir, PID_FILE), "w") as f:
            f.write(f"{os.getpid()}\n")
        print(run_dir, flush=True)
        for line in sys.stdin:
            word, _, value = line.partition(" ")
            if word == "pid" and value.strip().isdigit():
                pids.add(int(value))
    finally:
        clean_up(run_dir, pids)
    return 0


def _terminate(*_: object) -> None:
    raise SystemExit(0)  # SIGTERM: clean up as at the end of stdin


def clean_up(run_dir: str, pids: set[int], uid: int | None = None) -> None:
    """Stop the servers that are this directory's (run by ``uid``, if given), then remove
    the directory."""
    found = _postmaster_pid(run_dir)
    if found is not None:
        pids.add(found)
    live = [p for p in pids if _serves(p, run_dir) and (uid is None or _owner(p) == uid)]
    for pid in live:
        _signal(pid, signal.SIGINT)  # fast shutdown: ends sessions, frees shared memory
    deadline = time.monotonic() + 5
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [pid for pid in live if _alive(pid)]
    for pid in live:
        _signal(pid, signal.SIGKILL)
    shutil.rmtree(run_dir, ignore_errors=True)


def sweep(parent: str, uid: int) -> list[str]:
    """Remove the run directories in ``parent`` that provably are poolbench's and orphaned
    (their watchdog was killed too): owned by ``uid``, with a watchdog.pid naming a process
    that is no longer that watchdog. Their server, if still running, is stopped first, but
    only a process of ``uid`` whose command line names the directory. Returns what went."""
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        run_dir = os.path.join(parent, name)
        try:
            if os.lstat(run_dir).st_uid != uid or not os.path.isdir(run_dir):
                continue
            with open(os.path.join(run_dir, PID_FILE)) as f:
                text = f.read().strip()
        except OSError:  # not ours, or a watchdog that has not written its pid yet
            continue
        if text.isdigit() and _is_watchdog(int(text), run_dir):
            continue
        clean_up(run_dir, set(), uid)
        removed.append(run_dir)
    return removed


def _is_watchdog(pid: int, run_dir: str) -> bool:
    if not os.path.isdir("/proc"):
        return _alive(pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    parent = os.path.dirname(run_dir).encode()
    return _alive(pid) and b"watchdog.py" in cmdline and parent in cmdline


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _postmaster_pid(run_dir: str) -> int | None:
    try:
        with open(os.path.join(run_dir, "data", "postmaster.pid")) as f:
            first = f.readline().strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _serves(pid: int, run_dir: str) -> bool:
    """Whether ``pid`` is a live postgres whose command line names ``run_dir`` (a pid
    alone may have been reused by an unrelated process)."""
    if not os.path.isdir("/proc"):  # no /proc (macOS): the pid is all there is
        return _alive(pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and any(run_dir.encode() in arg for arg in args)


def _alive(pid: int) -> bool:
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
