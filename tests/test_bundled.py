"""Every bundled scenario is itself a test: run it (shortened where its story allows) and
require every one of its ``expect`` conditions to hold."""

import pytest
import sqlalchemy as sa

from poolbench import database_for, run_planned
from poolbench.checks import failure_line
from poolbench.db.target import Target, parse_url
from poolbench.scenario import bundled_scenarios, load_scenario
from poolbench.scenario.variants import plan
from poolbench.units import parse_duration

# scenario -> (duration for the test, or None for the full run; servers to run it on)
BUNDLED = {
    "leaky-sessions": ("5s", ("postgresql", "mysql")),
    "closed-sessions": ("4s", ("postgresql", "mysql")),
    "rare-leak": ("12s", ("postgresql",)),
    "seed-defaults": (None, ("postgresql",)),  # the literal 30 s pool_timeout
    "nullpool": ("3s", ("postgresql", "mysql")),
    "unclosed-sessions": ("6s", ("postgresql", "mysql")),
    "bursts": ("6s", ("postgresql",)),
    "stale-mysql": (None, ("mysql", "mysql+aiomysql")),
    "stale-postgres": (None, ("embedded", "postgresql+asyncpg")),  # its default: no URL
    "failover": (None, ("postgresql", "postgresql+asyncpg")),  # MariaDB: test_faults.py
    "your-code": ("6s", ("postgresql", "mysql")),
    "fleet-max-connections": ("5s", ("embedded",)),
    "sizing": ("4s", ("postgresql",)),  # max_connections 20: the embedded's
    "async-leaky-sessions": ("5s", ("postgresql", "embedded")),  # its driver: asyncpg
    "async-gc": ("4s", ("postgresql", "mysql+aiomysql")),
    "async-cancellation": ("2s", ("postgresql",)),
    "fastapi-get-db": ("4s", ("postgresql",)),  # the app's own engine, over HTTP
    "fastapi-threadpool": ("4s", ("postgresql",)),
    "fastapi-streaming": ("4s", ("postgresql",)),
    "flask-scoped-session": ("4s", ("postgresql",)),
}
# the apps read their database from their own setting, as a service does, and bring
# their framework
APPS = {
    "fastapi-get-db": "fastapi",
    "fastapi-threadpool": "fastapi",
    "fastapi-streaming": "fastapi",
    "flask-scoped-session": "flask",
}
MARKS = {
    "postgresql": pytest.mark.postgres,
    "mysql": pytest.mark.mysql,
    "mysql+aiomysql": pytest.mark.mysql,
    "postgresql+asyncpg": pytest.mark.postgres,
    "embedded": pytest.mark.embedded,
}

CASES = [
    pytest.param(
        name,
        duration,
        kind,
        id=f"{name}-{kind}",
        marks=MARKS[kind],
    )
    for name, (duration, kinds) in BUNDLED.items()
    for kind in kinds
]


def test_every_bundled_scenario_is_tested():
    on_disk = set(bundled_scenarios())
    assert {"fastapi-get-db", "leaky-sessions"} <= on_disk  # folders and files
    assert on_disk - set(BUNDLED) == set(), "add the new scenario to BUNDLED"
    assert set(BUNDLED) - on_disk == set()


@pytest.mark.parametrize(("name", "duration", "kind"), CASES)
def test_bundled_scenario_does_what_it_says(name, duration, kind, request):
    if name in APPS:
        pytest.importorskip(APPS[name])
        request.getfixturevalue("monkeypatch").setenv(
            "DATABASE_URL", request.getfixturevalue("pg_url")
        )
    scenario = load_scenario(name)
    if duration:  # shortened on purpose (the story holds): not a user's change, so the
        scenario = scenario.with_duration(parse_duration(duration))  # expectations count
    assert scenario.description.strip(), f"{name} must say what it shows"
    assert scenario.expect, f"{name} must declare what it expects"
    if kind == "embedded":
        with database_for(scenario, environ={}) as target:
            results = run_planned(plan(scenario), target)
    else:
        url = request.getfixturevalue("pg_url" if kind.startswith("postgresql") else "mysql_url")
        if scenario.database.driver is not None or "+" in kind:
            # the test servers' URLs name a sync driver; name the scenario's (or the
            # kind's) instead, as a user's postgresql:// URL would get it
            driver = kind.split("+")[1] if "+" in kind else scenario.database.driver
            base = sa.make_url(url)
            url = base.set(drivername=f"{base.get_backend_name()}+{driver}")
            url = url.render_as_string(hide_password=False)
        results = run_planned(plan(scenario), Target(parse_url(url, "test"), "--url"))
    assert len(results) == max(1, len(scenario.variants))
    failed = [
        f"{r.variant_name or 'run'}: {c.metric} {c.condition} (measured {c.value!r})"
        for r in results
        for c in r.summary.expectations
        if not c.ok
    ]
    assert not failed, f"{name} on {kind}: {failed}"
    # and their own work does not fail: no error of a kind they did not set out to cause
    unexpected = [
        f"{r.variant_name or 'run'}: {failure_line(r.summary)}"
        for r in results
        if failure_line(r.summary) is not None
    ]
    assert not unexpected, f"{name} on {kind}: {unexpected}"
