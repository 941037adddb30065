"""Passwords never shown: the one place that knows every form a password takes.

A database password reaches poolbench in the URL's userinfo (``user:pw@host``, with an
unencoded ``@`` inside the password too: ``user:p@ss@host``), in the query string
(``?password=…``), in a URL too malformed to parse (``postgresql//user:pw@host``), and
quoted back by drivers in their messages. Everything poolbench prints or writes that may
hold a URL or a driver's message passes through :func:`mask_text` (any text) or
:class:`Masker` (text about one known URL, whose secrets it also removes verbatim).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

from sqlalchemy.engine import URL

HIDDEN = "***"

# query-string keys that carry a secret (libpq's and the MySQL drivers' spellings)
SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "ssl_key_password", "passfile")

# scheme, then "//" (":" optional: the malformed "postgresql//" form), user, ":", the
# password up to the LAST "@" of the token (an unencoded "@" in the password), the host
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][\w+.-]*:?//[^\s:/@'\"]*):(?P<pw>[^\s'\"]*)@(?P<host>[^\s@'\"]*)"
)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;\s](?:" + "|".join(SECRET_KEYS) + r")\s*=\s*)(?P<value>'[^']*'|[^&\s'\"]+)",
    re.IGNORECASE,
)
MIN_VERBATIM = 3  # shorter secrets would garble every message if replaced verbatim


def mask_text(text: str) -> str:
    """``text`` with the password of every URL in it, and every ``password=``, hidden."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@{m['host']}", text)
    return _QUERY_SECRET.sub(_hide_value, text)


def _hide_value(match: re.Match[str]) -> str:
    value = match["value"]
    kept = value[len(HIDDEN) :] if value.startswith(HIDDEN) else ""  # hidden once already
    return f"{match['key']}{HIDDEN}{kept}"


def url_secrets(url: URL) -> list[str]:
    """The secrets a parsed URL holds: its password and any secret in its query."""
    found = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if key.lower() in SECRET_KEYS:
            found += [value] if isinstance(value, str) else list(value)
    return found


def show_url(url: URL) -> str:
    """The URL as it may be shown: password and secret query values hidden."""
    return mask_text(url.render_as_string(hide_password=True))


class Masker:
    """Masks text about one URL: its secrets verbatim (also where a driver quotes them
    outside a URL), then every URL form (:func:`mask_text`)."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_VERBATIM}, key=len)[::-1]

    @classmethod
    def of(cls, url: URL) -> Masker:
        return cls(url_secrets(url))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        return mask_text(text)


def repair_userinfo(text: str) -> str:
    """A URL whose password holds an unencoded ``@`` (``user:p@ss@host``), with it encoded.

    A host name cannot hold ``@``, so the userinfo ends at the authority's last ``@``; read
    otherwise (as SQLAlchemy does, at the first) the rest of the password becomes the host,
    and the driver quotes it in its error."""
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    before_query, sep, query = rest.partition("?")
    if before_query.count("@") < 2:
        return text
    userinfo, host = before_query.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    if not colon:
        return text
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}{sep}{query}"


__all__ = ["HIDDEN", "Masker", "mask_text", "repair_userinfo", "show_url", "url_secrets"]
