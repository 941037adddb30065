"""Erlang C (M/M/c) predictions for a connection pool: how often and how long callers wait.

The model
---------
Requests ask the pool for a connection at random (Poisson) times, ``rate_per_s`` of them a
second on average. Each holds its connection for an exponentially distributed time with mean
``mean_hold_s``, then returns it. ``c`` connections exist (for SQLAlchemy's ``QueuePool``, the
most it will hand out: ``pool_size + max_overflow``). A request that finds every connection
checked out waits in a first-come, first-served queue for as long as it takes. The offered load
``a = rate_per_s * mean_hold_s`` erlangs is, by Little's law, the mean number of connections
checked out; the pool keeps up only while ``a < c``, and at ``a >= c`` the queue grows without
bound (every function here then answers "always waits" / ``math.inf``).

Under those assumptions the waiting time W has an atom at zero and an exponential tail::

    P(W > 0) = C(c, a)                                   (Erlang C)
    P(W > t) = C(c, a) * exp(-(c - a) * t / S)
    E[W]     = C(c, a) * S / (c - a)

Erlang C is computed from Erlang B with the recursion ``B(k) = a B(k-1) / (k + a B(k-1))``,
which never forms ``a**c`` or ``c!`` and so stays finite for thousands of connections.

Where real pools differ
-----------------------
Treat the numbers as a first estimate to check with a measured run, not as a guarantee:

* Connect time. A connection opened on demand (the first checkouts, every overflow connection,
  any connection replaced after ``pool_recycle`` or a failed ``pool_pre_ping``) costs a TCP and
  authentication round trip that the model does not see. Overflow connections are closed when
  returned, so a pool that lives in overflow pays that cost again and again.
* Hold times are not exponential. Query times are often nearly constant (waits are then shorter
  than predicted) or heavy-tailed (a few long holds make the tail of W much longer).
* ``QueuePool`` is not FIFO-fair. A thread that returns a connection and at once asks again can
  take it before the waiter it just woke gets to run. The chance of waiting and the mean wait are
  roughly unaffected, but some callers wait far longer than in FIFO order, so the predicted
  percentiles and timeout probability are optimistic.
* The GIL. Python threads holding connections also compete for the interpreter, so the hold time
  grows with concurrency instead of being fixed, and a woken waiter may not run for a switch
  interval (5 ms by default).
* Callers give up. The model's callers wait forever; real ones leave at ``pool_timeout`` with a
  TimeoutError, which shortens the queue for the rest. When timeouts are common the model
  overstates everyone else's wait.
* Arrivals are not always Poisson. A fixed number of workers that each wait for their previous
  request (a closed loop) can never queue more than that many callers, and waits less than an
  open Poisson stream of the same rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass


def _check_connections(c: object) -> int:
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"connections (c) must be a positive integer, got {c!r}")
    return c


def _check_non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_probability(name: str, value: object) -> float:
    p = _check_non_negative(name, value)
    if p > 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return p


def _is_unstable(c: int, a: float) -> bool:
    return a >= c


def _erlang_b_step(k: int, a: float, previous: float) -> float:
    return a * previous / (k + a * previous)


def _erlang_c_from_b(c: int, a: float, b: float) -> float:
    # Same as B / (1 - (a/c)(1 - B)), rearranged so that c - a is formed directly; close to
    # saturation that keeps the digits 1 - a/c would lose.
    return min(1.0, c * b / (c - a + a * b))


def _tail(wait_probability: float, c: int, a: float, mean_hold_s: float, t_s: float) -> float:
    if t_s == 0 or wait_probability == 0:
        return wait_probability
    if mean_hold_s == 0:
        return 0.0  # zero-length holds drain any queue instantly
    return wait_probability * math.exp(-(c - a) * t_s / mean_hold_s)


def _quantile(wait_probability: float, c: int, a: float, mean_hold_s: float, q: float) -> float:
    if wait_probability <= 1 - q:
        return 0.0
    return mean_hold_s / (c - a) * math.log(wait_probability / (1 - q))


def offered_load(rate_per_s: float, mean_hold_s: float) -> float:
    """Offered load in erlangs: the mean number of connections checked out (Little's law)."""
    rate = _check_non_negative("rate_per_s", rate_per_s)
    hold = _check_non_negative("mean_hold_s", mean_hold_s)
    return rate * hold


def utilisation(c: int, a: float) -> float:
    """Share of the c connections busy on average (above 1 means the pool cannot keep up)."""
    return _check_non_negative("offered load (a)", a) / _check_connections(c)


def erlang_b(c: int, a: float) -> float:
    """Probability that all c connections are busy when callers who find none give up."""
    c = _check_connections(c)
    a = _check_non_negative("offered load (a)", a)
    b = 1.0
    for k in range(1, c + 1):
        b = _erlang_b_step(k, a, b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that a request has to wait for a connection; 1.0 when a >= c."""
    c = _check_connections(c)
    a = _check_non_negative("offered load (a)", a)
    if _is_unstable(c, a):
        return 1.0
    return _erlang_c_from_b(c, a, erlang_b(c, a))


def wait_tail(c: int, a: float, mean_hold_s: float, t_s: float) -> float:
    """Probability that a request waits longer than t_s seconds; 1.0 when a >= c."""
    p_wait = erlang_c(c, a)
    hold = _check_non_negative("mean_hold_s", mean_hold_s)
    t_s = _check_non_negative("t_s", t_s)
    if _is_unstable(c, a):
        return 1.0
    return _tail(p_wait, c, a, hold, t_s)


def mean_wait(c: int, a: float, mean_hold_s: float) -> float:
    """Mean wait for a connection in seconds, over all requests; math.inf when a >= c."""
    p_wait = erlang_c(c, a)
    hold = _check_non_negative("mean_hold_s", mean_hold_s)
    if _is_unstable(c, a):
        return math.inf
    return p_wait * hold / (c - a)


def wait_percentile(c: int, a: float, mean_hold_s: float, q: float) -> float:
    """The q-quantile (0 < q < 1) of the wait in seconds; math.inf when a >= c."""
    p_wait = erlang_c(c, a)
    hold = _check_non_negative("mean_hold_s", mean_hold_s)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
        raise ValueError(f"q must be a number strictly between 0 and 1, got {q!r}")
    if _is_unstable(c, a):
        return math.inf
    return _quantile(p_wait, c, a, hold, q)


def timeout_probability(c: int, a: float, mean_hold_s: float, pool_timeout_s: float) -> float:
    """Probability that a request waits past pool_timeout_s and gets QueuePool's TimeoutError."""
    _check_non_negative("pool_timeout_s", pool_timeout_s)
    return wait_tail(c, a, mean_hold_s, pool_timeout_s)


def smallest_pool(
    a: float,
    mean_hold_s: float,
    *,
    max_wait_probability: float | None = None,
    wait_p99_ms: float | None = None,
    max_wait_ms: Mapping[float, float] | None = None,
    timeout_s: float | None = None,
    max_timeout_probability: float | None = None,
    limit: int = 10000,
) -> int:
    """The smallest number of connections c > a that meets every target given.

    With no target this is the smallest pool that keeps up at all. ``max_wait_ms`` maps
    quantiles of the wait to their limits, e.g. {0.5: 5, 0.99: 50} (``wait_p99_ms`` is
    short for {0.99: ...}). ``timeout_s`` and ``max_timeout_probability`` go together.
    Raises ValueError if no c up to ``limit`` will do.
    """
    a = _check_non_negative("offered load (a)", a)
    hold = _check_non_negative("mean_hold_s", mean_hold_s)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if max_wait_probability is not None:
        max_wait_probability = _check_probability("max_wait_probability", max_wait_probability)
    quantiles = dict(max_wait_ms or {})
    if wait_p99_ms is not None:
        quantiles[0.99] = min(quantiles.get(0.99, math.inf), wait_p99_ms)
    for q, limit_ms in quantiles.items():
        if not 0 < q < 1:
            raise ValueError(f"a wait quantile must be between 0 and 1, got {q!r}")
        _check_non_negative("a wait limit in ms", limit_ms)
    if (timeout_s is None) != (max_timeout_probability is None):
        raise ValueError("timeout_s and max_timeout_probability must be given together")
    if timeout_s is not None:
        timeout_s = _check_non_negative("timeout_s", timeout_s)
        max_timeout_probability = _check_probability(
            "max_timeout_probability", max_timeout_probability
        )

    # Walk c upwards carrying Erlang B along, so the search costs O(limit), not O(limit**2).
    # Every target only gets easier as c grows, so the first c that meets them all is the answer.
    b = 1.0
    for c in range(1, limit + 1):
        b = _erlang_b_step(c, a, b)
        if _is_unstable(c, a):
            continue
        p_wait = _erlang_c_from_b(c, a, b)
        if max_wait_probability is not None and p_wait > max_wait_probability:
            continue
        if any(_quantile(p_wait, c, a, hold, q) * 1000 > ms for q, ms in quantiles.items()):
            continue
        if timeout_s is not None and max_timeout_probability is not None:
            p_timeout = _tail(p_wait, c, a, hold, timeout_s)
            if p_timeout > max_timeout_probability:
                continue
        return c
    raise ValueError(
        f"no pool of up to {limit} connections meets the targets for an offered load of "
        f"{a:g} erlangs and a mean hold of {hold:g}s"
    )


@dataclass(frozen=True)
class Prediction:
    """What the Erlang C model predicts for one pool size, load and timeout."""

    c: int
    offered_load: float
    utilisation: float
    wait_probability: float
    mean_wait_ms: float
    wait_p99_ms: float
    timeout_probability: float

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain values for JSON, with None where the model predicts an unbounded wait."""
        return {k: None if v == math.inf else v for k, v in asdict(self).items()}


def predict(c: int, rate_per_s: float, mean_hold_s: float, pool_timeout_s: float) -> Prediction:
    """The Erlang C prediction for c connections at rate_per_s requests holding mean_hold_s."""
    a = offered_load(rate_per_s, mean_hold_s)
    return Prediction(
        c=_check_connections(c),
        offered_load=a,
        utilisation=utilisation(c, a),
        wait_probability=erlang_c(c, a),
        mean_wait_ms=mean_wait(c, a, mean_hold_s) * 1000,
        wait_p99_ms=wait_percentile(c, a, mean_hold_s, 0.99) * 1000,
        timeout_probability=timeout_probability(c, a, mean_hold_s, pool_timeout_s),
    )
