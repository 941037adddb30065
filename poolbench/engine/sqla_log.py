"""What SQLAlchemy itself logs and warns during a run, counted instead of printed.

Under load SQLAlchemy may log an error per broken connection ("Exception during reset
or similar", with a traceback) or warn once per garbage-collected connection. Left
alone these interleave with the live view; here they are counted by message and the
first examples are kept verbatim for the summary.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from time import perf_counter
from types import TracebackType
from typing import Any

from sqlalchemy import exc as sa_exc

from ..result import ErrorExample

MAX_KINDS = 8
# Connection reprs and addresses differ per message; fold them so one kind counts once.
_NOISE = re.compile(r"<[^<>]*at 0x[0-9a-f]+[^<>]*>|0x[0-9a-f]+")


class SqlaMessages:
    """Context manager capturing ``sqlalchemy`` log records (WARNING+) and SAWarnings."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self._lock = threading.Lock()
        self._examples: dict[str, ErrorExample] = {}
        self._handler = _Handler(self)
        self._logger = logging.getLogger("sqlalchemy")
        self._saved: dict[str, Any] = {}
        self._active = False

    def add(self, message: str) -> None:
        key = _NOISE.sub("<...>", message)
        with self._lock:
            example = self._examples.get(key)
            if example is not None:
                example.count += 1
            elif len(self._examples) < MAX_KINDS:
                t_s = round(perf_counter() - self.started_at, 3)
                self._examples[key] = ErrorExample(None, message, 1, t_s)

    def examples(self) -> list[ErrorExample]:
        with self._lock:
            return [ErrorExample(**vars(e)) for e in self._examples.values()]

    def __enter__(self) -> SqlaMessages:
        if self._active:
            return self
        self._active = True
        self._saved = {
            "propagate": self._logger.propagate,
            "showwarning": warnings.showwarning,
        }
        self._logger.addHandler(self._handler)
        self._logger.propagate = False
        original = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, sa_exc.SAWarning):
                self.add(f"SAWarning: {message}")
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        self._active = False
        self._logger.removeHandler(self._handler)
        self._logger.propagate = self._saved["propagate"]
        warnings.showwarning = self._saved["showwarning"]


class _Handler(logging.Handler):
    def __init__(self, sink: SqlaMessages) -> None:
        super().__init__(level=logging.WARNING)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message += f" ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
        self._sink.add(f"{record.levelname}: {message}")
