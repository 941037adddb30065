"""--metrics-port: the endpoint scraped during a real run against PostgreSQL, its values
checked against the run's own timeline; the port released; the one-line errors."""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolbench.output.openmetrics import Histogram, MetricsObserver, MetricsServer, PoolFigures

from .conftest import Canary, run_yaml
from .test_cli import invoke

SCENARIO = """
name: metered
pool: {pool_size: 2, max_overflow: 1, pool_timeout: 0.3s}
load: {workers: 5}
workload: {session: closed, hold: 20ms}
duration: 2s
interval: 200ms
seed: 1
"""


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, labels): value}, read with prometheus-client's
    own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped, name: str, **labels: str) -> float:
    key = (name, tuple(sorted({"db_client_connection_pool_name": "metered", **labels}.items())))
    return scraped[key]


@pytest.mark.postgres
def test_scraped_during_a_run_and_matching_its_timeline(pg_url: str) -> None:
    figures = PoolFigures()
    server = MetricsServer(figures, 0)
    port = server.port
    during: list[dict] = []

    def scrape_while_running() -> None:
        while not during:
            scraped = scrape(port)
            if scraped:
                during.append(scraped)
            time.sleep(0.1)

    scraper = threading.Thread(target=scrape_while_running, daemon=True)
    scraper.start()
    canary = Canary()
    try:
        result = run_yaml(SCENARIO, pg_url, observer=MetricsObserver(canary, figures))
        scraper.join(5)
        after = scrape(port)
    finally:
        server.close()

    assert during, "nothing was served while the run lasted"
    assert value(during[0], "db_client_connection_max") == 3
    samples = [payload for name, payload in canary.events if name == "sampled"]
    last = samples[-1]
    assert value(after, "db_client_connection_count", db_client_connection_state="used") == (
        last.checked_out
    )
    assert value(after, "db_client_connection_count", db_client_connection_state="idle") == (
        last.checked_in
    )
    assert value(after, "db_client_connection_pending_requests") == last.waiting
    assert value(after, "db_client_connection_idle_max") == 2
    assert value(after, "db_client_connection_timeouts_total") == sum(s.timeouts for s in samples)
    assert value(after, "db_client_connection_timeouts_total") == result.summary.timeouts > 0
    # every request waited for a connection once; the ones that got one used it once
    assert value(after, "db_client_connection_wait_time_seconds_count") == (
        result.summary.operations
    )
    assert value(after, "db_client_connection_use_time_seconds_count") == result.summary.ok
    p50 = result.summary.latencies.hold_ms.p50 / 1000
    below = [
        value(after, "db_client_connection_use_time_seconds_bucket", le=le)
        for le in ("0.01", "0.025", "0.05")
    ]
    assert below[0] < result.summary.ok / 2 <= below[2]  # holds of 20 ms: p50 in (10, 50] ms
    assert 0.01 < p50 <= 0.05
    assert value(after, "poolbench_operations_total") == result.summary.operations
    assert value(after, "poolbench_connects_total") == result.summary.pool_events.connects
    assert value(after, "db_client_connection_create_time_seconds_count") == (
        result.summary.pool_events.connects
    )
    assert 0 < value(after, "db_client_connection_create_time_seconds_sum") < 5
    server = {
        dict(labels)["state"]: v
        for (name, labels), v in after.items()
        if name == "poolbench_server_connections"
    }
    assert sum(server.values()) == last.server_connections.pop("total") > 0
    assert server == last.server_connections

    # the port is free again: another endpoint can listen on it
    MetricsServer(PoolFigures(), port).close()


def test_a_port_in_use_is_a_one_line_error_before_the_run() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # no database at that URL: the port is refused before any connection is tried
        result = invoke(
            "run",
            "seed-defaults",
            "--url",
            "postgresql://nobody@127.0.0.1:1/none",
            "--metrics-port",
            str(port),
        )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"poolbench: error: --metrics-port {port}: cannot listen on 127.0.0.1:{port} "
        "(Address already in use)"
    ]


def test_without_prometheus_client_the_error_names_the_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    result = invoke("run", "seed-defaults", "--metrics-port", "9464")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "poolbench: error: --metrics-port needs the prometheus-client package: "
        "pip install 'poolbench[metrics]'"
    )


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    histogram = Histogram()
    histogram.add({50: 2, 100: 1, 101: 1})
    histogram.add({20_000_000: 1})  # 20 s: above every bound
    buckets = dict(histogram.buckets())
    assert buckets["0.0001"] == 3  # 100 us counts as <= 0.1 ms
    assert buckets["0.00025"] == 4
    assert buckets["10.0"] == 4 and buckets["+Inf"] == 5 == histogram.count
    assert histogram.sum_s == pytest.approx((50 * 2 + 100 + 101 + 20_000_000) / 1e6)
