"""Which database a run uses, and how it is shown without its password.

Precedence: ``--url`` > ``POOLBENCH_URL`` > the scenario's ``database.url`` > an
embedded PostgreSQL started for the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import UsageError
from ..masking import Masker, mask_text, repair_userinfo, show_url
from .backends import BACKENDS, Backend, backend_for, with_default_driver

ENV_VAR = "POOLBENCH_URL"


@dataclass(frozen=True)
class Target:
    """A database URL (password included) and where it came from."""

    url: URL
    source: str  # "--url", "POOLBENCH_URL", "scenario" or "embedded"
    embedded: Any = field(default=None, compare=False)  # the EmbeddedPostgres, if any

    @property
    def masked(self) -> str:
        if self.embedded is not None:
            return f"embedded PostgreSQL (socket in {self.url.query.get('host', '?')})"
        return mask_url(self.url)

    @cached_property
    def backend(self) -> Backend:
        """The database and driver: what to ask the server, what its errors mean."""
        return backend_for(self.url)

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the URL hidden, for messages that may quote it."""
        return scrub(text, self.url)


def mask_url(url: URL) -> str:
    """The URL as poolbench shows it (poolbench/masking.py: no password in any form)."""
    return show_url(url)


def scrub(text: str, url: URL) -> str:
    """``text`` (a driver's message, say) with ``url``'s secrets and any URL's password hidden."""
    return Masker.of(url)(text)


def choose_url(
    cli_url: str | None, scenario_url: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(url, source)`` by precedence, or None when the run needs an embedded server."""
    environ = os.environ if environ is None else environ
    if cli_url is not None:
        if not cli_url.strip():
            raise UsageError(
                "--url is empty: give a database URL, or leave --url out to use an embedded "
                "PostgreSQL"
            )
        return cli_url, "--url"
    if environ.get(ENV_VAR):
        return environ[ENV_VAR], ENV_VAR
    if scenario_url:
        return scenario_url, "scenario"
    return None


def _port_problem(exc: ValueError) -> str:
    return "the port is not a number" if "int()" in str(exc) else str(exc).splitlines()[0]


def parse_url(text: str, source: str, driver: str | None = None) -> URL:
    """A SQLAlchemy URL with a driver poolbench knows: UsageError if it is not a URL,
    UnknownBackend or DriverNotInstalled (db/backends) if poolbench cannot use it."""
    try:
        url = make_url(repair_userinfo(text))
    except ValueError as exc:  # "h:abc", "[::1": make_url's int() of the port
        raise UsageError(
            f"{source}: not a database URL: {mask_text(text)!r} ({_port_problem(exc)})"
        ) from None
    except ArgumentError:
        shown = mask_text(text)
        examples = " or ".join(b.example_url for b in BACKENDS)
        raise UsageError(
            f"{source}: not a database URL: {shown!r} (expected e.g. {examples})"
        ) from None
    url = with_default_driver(url, driver=driver)
    backend_for(url)
    return url
