"""Shared fixtures: the real loopback servers (never mocks), and a helper to run YAML.

The servers are the ones .ci/servers starts. A test that needs one fails (it does not
skip) when the server is down, so a broken environment can never pass silently.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poolbench.db.target import Target, parse_url
from poolbench.engine.runner import RunOptions, run_scenario
from poolbench.result import RunResult
from poolbench.result.observer import Observer
from poolbench.scenario import parse_scenario

# PyMySQL (1.2 and later) negotiates TLS by default and builds an SSL context for every
# connection; with OpenSSL 3 that loads the whole CA bundle, 140-220 ms of CPU per connect
# on our CI machines, which the loopback test server (no TLS) then declines anyway. The
# suite's expectations are about pools, not about certificate loading, so the tests (and
# the poolbench processes they start) see an empty CA store. poolbench itself leaves the
# driver as the user's application has it: a run shows this cost in connect_ms.
_NO_CA = os.path.join(os.path.dirname(__file__), "data", "no-ca")
os.environ["SSL_CERT_FILE"] = os.path.join(_NO_CA, "none.pem")
os.environ["SSL_CERT_DIR"] = _NO_CA

pytest_plugins = ["pytester"]  # the pytest plugin's own tests (test_pytest_plugin.py)

PG_URL = os.environ.get(
    "POOLBENCH_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("POOLBENCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _require(url: str) -> str:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        pytest.fail(f"test server {url} is not reachable (run .ci/servers): {exc.orig}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_url() -> str:
    return _require(PG_URL)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return _require(MYSQL_URL)


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """Both real servers, one after the other."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return request.getfixturevalue("mysql_url")


class Canary(Observer):
    """Records what the runner told its observer (the SQLAlchemy "canary" idea)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def started(self, header):
        self.events.append(("started", header))

    def sampled(self, sample, progress):
        self.events.append(("sampled", sample))

    def first_timeout(self, t_s, message):
        self.events.append(("first_timeout", (t_s, message)))

    def stopping(self, reason):
        self.events.append(("stopping", reason))

    def finished(self):
        self.events.append(("finished", None))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def run_yaml(
    text: str,
    url: str,
    overrides: tuple[str, ...] = (),
    observer: Observer | None = None,
    options: RunOptions | None = None,
) -> RunResult:
    scenario = parse_scenario(textwrap.dedent(text), "test.yaml", overrides)
    return run_scenario(scenario, Target(parse_url(url, "test"), "--url"), options, observer)


def server_connection_count(url: str, like: str = "poolbench-%") -> int:
    """Connections the server shows: PostgreSQL by application_name, MySQL by user."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if url.startswith("postgresql"):
                return conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE :p"),
                    {"p": like},
                ).scalar_one()
            return conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def outside_connection(db_url: str) -> Iterator[sa.Connection]:
    """A connection opened outside poolbench, to prove poolbench leaves it alone."""
    engine = sa.create_engine(db_url, poolclass=NullPool)
    conn = engine.connect()
    try:
        yield conn
    finally:
        conn.close()
        engine.dispose()
