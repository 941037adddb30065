"""Domain exceptions and the exit statuses they map to.

Exceptions are raised where a problem is found; the CLI (``cli.reports_errors``) turns
them into one line of text and their :class:`ExitStatus`, in one place.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What poolbench's exit code means."""

    OK = 0
    CHECKS_FAILED = 1  # a threshold or an expectation was breached
    USAGE = 2  # bad flags or a bad scenario file
    DATABASE = 3  # the database is unreachable, refused us, or is the wrong kind
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; what was measured is still written


class PoolbenchError(Exception):
    """Base class for every error poolbench reports as one line."""

    exit_status = ExitStatus.USAGE


class UsageError(PoolbenchError):
    """A flag or an override is malformed."""


class OutputFileError(PoolbenchError):
    """A result file (--json, --html, --csv, --junit) cannot be written; names the file."""


class OutputsNotWritten(PoolbenchError):
    """One or more result files failed while the others were written; one line each."""

    def __init__(self, failures: list[OutputFileError]):
        self.failures = failures
        super().__init__("\n".join(str(f) for f in failures))


class ScenarioError(PoolbenchError):
    """The scenario file cannot be read or does not validate."""

    def __init__(self, source: str, message: str, path: str = "", line: int | None = None):
        self.source = source
        self.path = path
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DatabaseError(PoolbenchError):
    """The database could not be used for the run."""

    exit_status = ExitStatus.DATABASE


class DatabaseUnreachable(DatabaseError):
    """No connection could be opened to the database (refused, timed out, bad credentials)."""


class UnsupportedDatabase(DatabaseError):
    """The scenario needs a database kind (dialect) other than the one given.

    The message states the facts; what would do instead is data (``example_url``, a URL
    of a database that would; ``embedded``, the embedded server that would), which the
    CLI turns into the flags to use.
    """

    def __init__(
        self, message: str, *, example_url: str | None = None, embedded: str | None = None
    ) -> None:
        super().__init__(message)
        self.example_url = example_url
        self.embedded = embedded


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be started."""


class JoinTimeout(DatabaseError):
    """Not every node of a run joined in time; the message names the missing indexes."""


class NodeConflict(UsageError):
    """This node cannot join the run: its index is taken, --nodes differs, or it started."""


class UnknownBackend(DatabaseError):
    """The URL names a database or a driver poolbench cannot measure (sqlite, oracle, ...)."""


class DriverNotInstalled(DatabaseError):
    """The URL's driver is one poolbench knows, but its package is not installed."""
