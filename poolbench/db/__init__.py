"""Where the database comes from, and what the server says about this run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ..errors import UnsupportedDatabase
from . import backends
from .embedded import EmbeddedPostgres
from .target import Target, choose_url, mask_url, parse_url


@contextmanager
def open_target(
    cli_url: str | None,
    scenario_url: str | None,
    environ: Mapping[str, str] | None = None,
    needs: str | None = None,
    max_connections: int | None = None,
    driver: str | None = None,
) -> Iterator[Target]:
    """The run's database: a URL by precedence, or an embedded PostgreSQL stopped on exit.

    ``needs`` (a backend's name) refuses to start an embedded PostgreSQL for a scenario that
    cannot use it. ``max_connections`` configures the embedded server only. ``driver``
    (a scenario's ``database.driver``) is the driver of a URL that names none, and the
    embedded server's.
    """
    chosen = choose_url(cli_url, scenario_url, environ)
    if chosen is not None:
        text, source = chosen
        yield Target(parse_url(text, source, driver), source)
        return
    if needs is not None and needs != EmbeddedPostgres.backend.name:
        needed = backends.named(needs)
        raise UnsupportedDatabase(
            f"this scenario needs a {needed.title} server and none was given: "
            f"pass --url (e.g. {needed.example_url}) or set POOLBENCH_URL"
        )
    server = EmbeddedPostgres(max_connections=max_connections)
    server.start()
    try:
        url = server.url
        if driver is not None:
            url = url.set(drivername=f"{url.get_backend_name()}+{driver}")
            backends.backend_for(url)  # a driver poolbench knows, installed
        yield Target(url, "embedded", embedded=server)
    finally:
        server.stop()


__all__ = ["EmbeddedPostgres", "Target", "mask_url", "open_target"]
