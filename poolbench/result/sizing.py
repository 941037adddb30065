"""What ``poolbench size`` found: the model's predictions, the trials, the recommendation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import Record, build
from .run import SCHEMA_VERSION, RunResult, check_version
from .settings import pool_capacity


@dataclass
class Prediction(Record):
    """What Erlang C predicts for ``c`` connections (None where it predicts no bound)."""

    OMIT_NONE = frozenset({"meets_slo"})

    c: int
    offered_load: float
    utilisation: float
    wait_probability: float
    mean_wait_ms: float | None
    wait_p99_ms: float | None
    timeout_probability: float | None
    meets_slo: bool | None = None  # in the table of candidates: the model says it meets the SLO


@dataclass
class Measured(Record):
    """What a trial measured, in the terms the model predicts."""

    wait_probability: float | None
    checkout_wait_p50_ms: float | None
    checkout_wait_p90_ms: float | None
    checkout_wait_p99_ms: float | None
    timeouts: int
    errors: int
    error_rate: float
    throughput_ops_s: float
    dropped_arrivals: int
    connects: int


@dataclass
class Trial(Record):
    """One measured pool size, beside the model's prediction."""

    role: str  # "steady" or "peak"
    pool_size: int
    max_overflow: int
    rate_per_s: float
    predicted: Prediction
    measured: Measured
    slo_met: bool
    failed: list[str]
    run_id: str


@dataclass
class Recommendation(Record):
    pool_size: int
    max_overflow: int
    pool_timeout_s: float
    processes: int
    fleet_connections: int
    available_connections: int | None
    fits_server: bool | None
    create_engine: str
    notes: list[str] = field(default_factory=list)
    measured_minimum: int | None = None  # the smallest size a trial found meeting the SLO
    model_minimum: int | None = None  # the smallest size Erlang C says meets it

    @property
    def capacity(self) -> int | None:
        """Most connections each process's recommended pool holds."""
        return pool_capacity("QueuePool", self.pool_size, self.max_overflow)


@dataclass
class SizingResult(Record):
    """Everything ``poolbench size`` did, as written to --json."""

    scenario: str
    slo: dict[str, float]
    processes: int
    rate_per_s: float
    declared_rate_per_s: float
    peak_rate_per_s: float | None
    mean_hold_ms: float
    hold_p99_ms: float | None
    offered_load: float
    predictions: list[Prediction]
    trials: list[Trial]
    recommendation: Recommendation | None  # None: nothing tried met the SLO
    runs: list[RunResult]
    no_recommendation: str | None = None  # why nothing is recommended (exit 1)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "kind": "size", **super().to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SizingResult:
        """A sizing result read back from its JSON form (``poolbench report``)."""
        check_version(data)
        return build(cls, data)  # type: ignore[no-any-return]
