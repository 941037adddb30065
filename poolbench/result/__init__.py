"""Plain data that flows out of a run, and the only thing renderers read.

``run.py`` the whole run (timeline, faults, the live view's header and progress);
``settings.py`` what it was set up with (pool, load, scenario, database, processes);
``summary.py`` the figures it is judged by; ``nodes.py`` a node's place in a run across
hosts. Every class has ``to_dict()`` and
``from_dict()`` (codec.py); derived facts (a pool's capacity, a run's label) are
properties here, so no renderer computes them again.
"""

from .codec import Record
from .nodes import GroupLatencies, MergeInfo, NodeFigures, NodeInfo
from .run import SCHEMA_VERSION, FaultEvent, Progress, RunHeader, RunResult
from .settings import (
    DatabaseInfo,
    DistributionInfo,
    LoadInfo,
    PhaseInfo,
    PoolInfo,
    ProcessInfo,
    ScenarioInfo,
    WorkloadInfo,
    pool_capacity,
    settings_label,
)
from .summary import (
    CANCEL_OUTCOMES,
    ERROR_KINDS,
    CheckResult,
    ClientLoad,
    ErrorExample,
    ErrorKindStats,
    Errors,
    GroupSummary,
    Holder,
    HttpEndpoint,
    Latencies,
    Leaks,
    LeakSite,
    Peaks,
    Percentiles,
    PoolEvents,
    ServerFigures,
    Summary,
)
from .timeline import Sample, TimelineRow

__all__ = [
    "CANCEL_OUTCOMES",
    "ERROR_KINDS",
    "SCHEMA_VERSION",
    "CheckResult",
    "ClientLoad",
    "DatabaseInfo",
    "DistributionInfo",
    "ErrorExample",
    "ErrorKindStats",
    "Errors",
    "FaultEvent",
    "GroupLatencies",
    "GroupSummary",
    "Holder",
    "HttpEndpoint",
    "Latencies",
    "LeakSite",
    "Leaks",
    "LoadInfo",
    "MergeInfo",
    "NodeFigures",
    "NodeInfo",
    "Peaks",
    "Percentiles",
    "PhaseInfo",
    "PoolEvents",
    "PoolInfo",
    "ProcessInfo",
    "Progress",
    "Record",
    "RunHeader",
    "RunResult",
    "Sample",
    "ScenarioInfo",
    "ServerFigures",
    "Summary",
    "TimelineRow",
    "WorkloadInfo",
    "pool_capacity",
    "settings_label",
]
