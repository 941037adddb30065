"""A password never reaches the terminal, an error line or any result file, in any of the
forms a user writes it (issue: three forms leaked)."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from poolbench.cli import main
from poolbench.db.target import parse_url
from poolbench.masking import Masker, mask_text, repair_userinfo, show_url


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:Secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql//u:Secret@h/db", "postgresql//u:***@h/db"),  # malformed: no ':'
        ("mysql+pymysql://root:p@ss@w0rd@h:3306/t", "mysql+pymysql://root:***@h:3306/t"),
        ("postgresql://u@h/db?password=Secret&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://u@h/db?sslmode=require&PASSWD=Secret", "postgresql://u@h/db?sslmode=require&PASSWD=***"),
        ("dsn: host=h password=Secret dbname=t", "dsn: host=h password=*** dbname=t"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)  # fmt: skip
def test_mask_text_hides_every_form(text, shown):
    assert mask_text(text) == shown


def test_an_unencoded_at_sign_belongs_to_the_password():
    repaired = repair_userinfo("postgresql://u:pw@Secret@127.0.0.1:5432/t?x=1")
    url = make_url(repaired)
    assert (url.password, url.host, url.port) == ("pw@Secret", "127.0.0.1", 5432)
    assert parse_url("postgresql+psycopg2://u:pw@Secret@h/t", "--url").host == "h"


def test_the_masker_also_hides_a_secret_a_driver_quotes_outside_the_url():
    url = make_url("postgresql://u:LongSecret@h/db?password=QuerySecret")
    mask = Masker.of(url)
    assert mask('host name "LongSecret.h" and QuerySecret') == 'host name "***.h" and ***'
    assert "Secret" not in show_url(url)


SCENARIO = """\
name: secrets
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.5s}
workload: {session: closed, hold: 5ms}
load: {workers: 2}
duration: 1s
interval: 250ms
"""


def _with_secret(url: str, form: str) -> str:
    """The test server's URL (trust auth: any password is accepted) with a password."""
    parsed = make_url(url)
    base = f"{parsed.drivername}://{parsed.username}:"
    rest = f"{parsed.host}:{parsed.port}/{parsed.database}"
    return {
        "userinfo": f"{base}Hunter2Secret@{rest}",
        "unencoded-at": f"{base}pw@Hunter2Secret@{rest}",
        "query": f"{parsed.drivername}://{parsed.username}@{rest}?password=Hunter2Secret",
    }[form]


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["userinfo", "unencoded-at", "query"])
def test_no_output_holds_the_password(form, pg_url, tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(textwrap.dedent(SCENARIO))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["run", str(scenario), "--url", _with_secret(pg_url, form), "--progress", "plain",
         "--json", str(out / "r.json"), "--html", str(out / "r.html"),
         "--csv", str(out / "r"), "--junit", str(out / "r.xml")],
        env={"POOLBENCH_URL": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Secret" not in result.output
    files = sorted(out.iterdir())
    assert len(files) == 5
    for path in files:
        assert "Hunter2" not in path.read_text(), path.name
    assert "***" in (out / "r.json").read_text()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql//postgres:Hunter2Secret@127.0.0.1/test",  # malformed
        "postgresql+psycopg2://postgres:pw@Hunter2Secret@127.0.0.1:9/test",  # refused
        "postgresql+psycopg2://postgres@127.0.0.1:9/test?password=Hunter2Secret",
        "postgresql+psycopg2://postgres:Hunter2Secret@no-such-host.invalid/test",
    ],
)
def test_no_error_line_holds_the_password(url, tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(textwrap.dedent(SCENARIO))
    result = CliRunner().invoke(
        main, ["run", str(scenario), "--url", url], env={"POOLBENCH_URL": ""}
    )
    assert result.exit_code in (2, 3), result.output
    assert result.output.startswith("poolbench: error: ") and result.output.count("\n") == 1
    assert "Hunter2" not in result.output
