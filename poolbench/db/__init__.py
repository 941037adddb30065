"""Where the database comes from, and what the server says about this run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ..errors import UnsupportedDatabase
from .embedded import EmbeddedPostgres
from .target import Target, choose_url, mask_url, parse_url


@contextmanager
def open_target(
    cli_url: str | None,
    scenario_url: str | None,
    environ: Mapping[str, str] | None = None,
    needs: str | None = None,
    max_connections: int | None = None,
) -> Iterator[Target]:
    """The run's database: a URL by precedence, or an embedded PostgreSQL stopped on exit.

    ``needs`` ("mysql") refuses to start an embedded PostgreSQL for a scenario that
    cannot use it. ``max_connections`` configures the embedded server only.
    """
    chosen = choose_url(cli_url, scenario_url, environ)
    if chosen is not None:
        text, source = chosen
        yield Target(parse_url(text, source), source)
        return
    if needs not in (None, "postgresql"):
        raise UnsupportedDatabase(
            f"this scenario needs a {'MySQL or MariaDB' if needs == 'mysql' else needs} "
            "server and none was given: pass --url (e.g. mysql+pymysql://root@127.0.0.1:3306/test)"
            " or set POOLBENCH_URL"
        )
    server = EmbeddedPostgres()
    server.start()
    try:
        if max_connections is not None:
            server.set_max_connections(max_connections)
        yield Target(server.url, "embedded", embedded=server)
    finally:
        server.stop()


__all__ = ["EmbeddedPostgres", "Target", "mask_url", "open_target"]
