"""Which database a run uses, and how it is shown without its password.

Precedence: ``--url`` > ``POOLBENCH_URL`` > the scenario's ``database.url`` > an
embedded PostgreSQL started for the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import UsageError

ENV_VAR = "POOLBENCH_URL"

# Bare dialect names pick a driver poolbench ships with.
_DEFAULT_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


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

    @property
    def kind(self) -> str:
        """``postgresql``, ``mysql`` (MariaDB included) or the dialect name."""
        name = self.url.get_backend_name()
        return "mysql" if name in ("mysql", "mariadb") else name

    def scrub(self, text: str) -> str:
        """``text`` with the password replaced, for messages that may quote the URL."""
        return scrub(text, self.url)


def mask_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def scrub(text: str, url: URL) -> str:
    password = url.password
    if password and len(str(password)) >= 3:  # shorter ones would garble every message
        text = text.replace(str(password), "***")
    return text


def choose_url(
    cli_url: str | None, scenario_url: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(url, source)`` by precedence, or None when the run needs an embedded server."""
    environ = os.environ if environ is None else environ
    if cli_url:
        return cli_url, "--url"
    if environ.get(ENV_VAR):
        return environ[ENV_VAR], ENV_VAR
    if scenario_url:
        return scenario_url, "scenario"
    return None


def parse_url(text: str, source: str) -> URL:
    """A SQLAlchemy URL with a driver poolbench ships; UsageError if it is not one."""
    try:
        url = make_url(text)
    except ArgumentError:
        shown = text
        if "@" in text and "://" in text:
            scheme, rest = text.split("://", 1)
            shown = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        raise UsageError(
            f"{source}: not a database URL: {shown!r} "
            "(expected e.g. postgresql://user@host:5432/db or mysql://root@127.0.0.1/test)"
        ) from None
    if url.drivername in _DEFAULT_DRIVERS:
        url = url.set(drivername=_DEFAULT_DRIVERS[url.drivername])
    return url
