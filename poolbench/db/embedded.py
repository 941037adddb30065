"""A throwaway PostgreSQL for machines without a database server (the ``pgserver`` package).

It lives in a temporary directory, listens only on a Unix socket, and is stopped and
deleted by :meth:`EmbeddedPostgres.stop` (also at interpreter exit, as a safety net).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

from sqlalchemy.engine import URL

from ..errors import EmbeddedServerError


def _quiet_import():  # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


class EmbeddedPostgres:
    """Start with :meth:`start`, always :meth:`stop`; usable as a context manager."""

    def __init__(self, parent_dir: str | None = None) -> None:
        self._parent_dir = parent_dir
        self._server = None
        self.data_dir: Path | None = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="poolbench-pg-", dir=self._parent_dir))
        try:
            pgserver = _quiet_import()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = pgserver.get_server(self.data_dir, cleanup_mode="delete")
        except Exception as exc:  # initdb or pg_ctl failed: say so in one line
            shutil.rmtree(self.data_dir, ignore_errors=True)
            detail = " ".join(str(exc).split())[:200]
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL ({detail}); "
                "give a server with --url or POOLBENCH_URL"
            ) from None

    @property
    def url(self) -> URL:
        assert self._server is not None, "start() first"
        info = self._server.get_postmaster_info()
        query = {"host": str(info.socket_dir)} if info.socket_dir else {}
        return URL.create(
            "postgresql+psycopg2",
            username="postgres",
            host=None if info.socket_dir else info.hostname,
            port=None if info.socket_dir else info.port,
            database="postgres",
            query=query,
        )

    def restart(self) -> None:
        """Stop and start the server on the same data directory (a failover, in miniature)."""
        assert self._server is not None, "start() first"
        pgserver = _quiet_import()
        pgserver.pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=self.data_dir,
            user=self._server.system_user,
            timeout=30,
        )
        # Starts it again and refreshes pgserver's record of the new postmaster, so
        # that stop() later stops the new process rather than the old, gone one.
        self._server.ensure_postgres_running()

    def set_max_connections(self, limit: int) -> None:
        """Change max_connections (it needs a restart to take effect)."""
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        engine = sa.create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"ALTER SYSTEM SET max_connections = {int(limit)}")
        finally:
            engine.dispose()
        self.restart()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.cleanup()
            finally:
                if self.data_dir is not None:
                    shutil.rmtree(self.data_dir, ignore_errors=True)
