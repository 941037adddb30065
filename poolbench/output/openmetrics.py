"""``poolbench run --metrics-port``: the pool, live, in OpenTelemetry's names for it.

The OpenTelemetry semantic conventions name a database client's pool metrics
``db.client.connection.*``; in their Prometheus form (dots to underscores, ``_total`` on
counters, the unit on histograms) dashboards built for HikariCP, pgx or node-postgres
read them as they are. Figures the conventions have no name for (the server's own count
of connections by state, stale connections, leaked sessions, errors) carry a
``poolbench_`` prefix. docs/results.md maps every figure.

The exporter is an :class:`Observer`: it keeps the latest sample and running totals, and
a prometheus-client collector turns them into metric families at each scrape. A fleet's
figures are the processes' merged readings, served once by the parent process.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ..errors import UsageError
from ..result.observer import Observer

if TYPE_CHECKING:
    from ..engine.readings import PoolReading
    from ..result import FaultEvent, Progress, RunHeader, Sample

# seconds; OpenTelemetry's HTTP duration buckets, below 5 ms made finer: pool waits and
# holds are mostly sub-millisecond until the pool runs dry
BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_BUCKETS_US = tuple(round(b * 1e6) for b in BUCKETS_S)

POOL = "db_client_connection_pool_name"
STATE = "db_client_connection_state"


class Histogram:
    """Cumulative buckets of durations arriving as ``{micros: how many}``."""

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS_US) + 1)  # the last one: above every bound
        self.sum_s = 0.0

    def add(self, values: Mapping[int, int]) -> None:
        for micros, count in values.items():
            self.counts[bisect_left(_BUCKETS_US, micros)] += count
            self.sum_s += micros * count / 1e6

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(repr, BUCKETS_S), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class PoolFigures:
    """The latest sample and the run's running totals; written by the runner's thread,
    read by the scrape thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._zero()

    def _zero(self) -> None:
        self.pool_name = ""
        self.max: int | None = None
        self.idle_max: int | None = None
        self.sample: Sample | None = None
        self.timeouts = 0
        self.errors = 0
        self.disconnects = 0
        self.operations = 0
        self.connects = 0
        self.wait = Histogram()
        self.use = Histogram()
        self.create = Histogram()

    def start(self, header: RunHeader) -> None:
        with self.lock:
            self._zero()  # a new run (a variant) starts from zero
            name = header.scenario
            if header.variant_name:
                name += f" [{header.variant_name}]"
            self.pool_name = name
            self.max = header.capacity
            self.idle_max = header.pool_size if header.capacity is not None else None

    def read(self, reading: PoolReading) -> None:
        with self.lock:
            self.wait.add(reading.interval_wait)
            self.use.add(reading.interval_hold)
            self.create.add(reading.interval_create)

    def sampled(self, sample: Sample) -> None:
        with self.lock:
            self.sample = sample
            self.timeouts += sample.timeouts
            self.errors += sample.errors
            self.disconnects += sample.disconnects or 0  # None only in older results
            self.operations += sample.operations
            self.connects += sample.connects


class PoolCollector:
    """prometheus-client's custom collector over :class:`PoolFigures`."""

    def __init__(self, figures: PoolFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        f = self.figures
        with f.lock:
            sample, name = f.sample, f.pool_name
            if sample is None:
                return
            count = GaugeMetricFamily(
                "db_client_connection_count",
                "The number of connections that are currently in state described by the "
                "state attribute",
                labels=[POOL, STATE],
            )
            count.add_metric([name, "idle"], sample.checked_in)
            count.add_metric([name, "used"], sample.checked_out)
            yield count
            yield _gauge(
                GaugeMetricFamily,
                "db_client_connection_pending_requests",
                "The number of current pending requests for an open connection",
                name,
                sample.waiting,
            )
            if f.max is not None:
                yield _gauge(
                    GaugeMetricFamily,
                    "db_client_connection_max",
                    "The maximum number of open connections allowed (pool_size + max_overflow)",
                    name,
                    f.max,
                )
            if f.idle_max is not None:
                yield _gauge(
                    GaugeMetricFamily,
                    "db_client_connection_idle_max",
                    "The maximum number of idle open connections allowed (pool_size)",
                    name,
                    f.idle_max,
                )
                yield _gauge(
                    GaugeMetricFamily,
                    "db_client_connection_idle_min",
                    "The minimum number of idle open connections allowed (QueuePool keeps none)",
                    name,
                    0,
                )
            yield _gauge(
                CounterMetricFamily,
                "db_client_connection_timeouts",
                "The number of connection timeouts that have occurred trying to obtain a "
                "connection from the pool",
                name,
                f.timeouts,
            )
            for metric, doc, histogram in (
                (
                    "db_client_connection_create_time",
                    "The time it took to create a new connection",
                    f.create,
                ),
                (
                    "db_client_connection_wait_time",
                    "The time it took to obtain an open connection from the pool",
                    f.wait,
                ),
                (
                    "db_client_connection_use_time",
                    "The time between borrowing a connection and returning it to the pool",
                    f.use,
                ),
            ):
                family = HistogramMetricFamily(metric, doc, labels=[POOL], unit="seconds")
                family.add_metric([name], histogram.buckets(), histogram.sum_s)
                yield family
            yield from _own(f, sample, name, GaugeMetricFamily, CounterMetricFamily)


def _gauge(family_type: Any, metric: str, doc: str, pool: str, value: float) -> Any:
    family = family_type(metric, doc, labels=[POOL])
    family.add_metric([pool], value)
    return family


def _own(f: PoolFigures, sample: Sample, name: str, gauge: Any, counter: Any) -> Iterable[Any]:
    """poolbench's figures the conventions have no name for."""
    yield _gauge(gauge, "poolbench_overflow", "Connections beyond pool_size", name, sample.overflow)
    yield _gauge(
        gauge,
        "poolbench_leaked_sessions_open",
        "Sessions leaked and still holding a connection",
        name,
        sample.leaked_open,
    )
    yield _gauge(counter, "poolbench_operations", "Requests finished", name, f.operations)
    yield _gauge(counter, "poolbench_errors", "Requests that failed, every kind", name, f.errors)
    yield _gauge(
        counter, "poolbench_disconnects", "Requests that lost their connection", name, f.disconnects
    )
    yield _gauge(counter, "poolbench_connects", "DBAPI connections opened", name, f.connects)
    if sample.stale is not None:
        yield _gauge(
            gauge,
            "poolbench_stale_connections",
            "Connections the pool holds that the server has closed",
            name,
            sample.stale,
        )
    if sample.server_connections is not None:
        family = gauge(
            "poolbench_server_connections",
            "This run's connections as the server counts them, by state",
            labels=[POOL, "state"],
        )
        for state, value in sorted(sample.server_connections.items()):
            if state != "total":  # the states add up to it
                family.add_metric([name, state], value)
        yield family


class MetricsObserver(Observer):
    """Feeds :class:`PoolFigures` and passes every call on to ``inner`` (the live view)."""

    def __init__(self, inner: Observer, figures: PoolFigures) -> None:
        self.inner = inner
        self.figures = figures

    def started(self, header: RunHeader) -> None:
        self.figures.start(header)
        self.inner.started(header)

    def read(self, reading: object) -> None:
        self.figures.read(cast("PoolReading", reading))
        self.inner.read(reading)

    def sampled(self, sample: Sample, progress: Progress) -> None:
        self.figures.sampled(sample)
        self.inner.sampled(sample, progress)

    def first_timeout(self, t_s: float, message: str) -> None:
        self.inner.first_timeout(t_s, message)

    def stopping(self, reason: str) -> None:
        self.inner.stopping(reason)

    def fault(self, event: FaultEvent) -> None:
        self.inner.fault(event)

    def finished(self) -> None:
        self.inner.finished()


class MetricsServer:
    """The /metrics endpoint in a daemon thread; ``close()`` releases the port."""

    def __init__(self, figures: PoolFigures, port: int, host: str = "127.0.0.1") -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise UsageError(
                "--metrics-port needs the prometheus-client package: "
                "pip install 'poolbench[metrics]'"
            ) from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PoolCollector(figures))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise UsageError(
                f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None
        self.port = self._server.server_port
        self.host = host

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
