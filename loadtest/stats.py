"""Latency statistics: percentiles defined once, so every report and test agrees on them.

Percentiles use numpy's ``linear`` method (type 7, the default of numpy, R and Excel's
PERCENTILE.INC): the value at rank ``q/100 × (n − 1)``, interpolated between neighbours. It is
continuous in ``q`` and exact on small samples, where nearest-rank methods jump.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

# Points of the stored latency CDF: every percent, plus the tail that matters for objectives.
CDF_PERCENTS: tuple[float, ...] = (*range(100), 99.5, 99.9, 99.99, 100.0)


class LatencyStats(BaseModel):
    """Milliseconds over the successful requests of a run (``count`` of them)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    max: float | None
    mean: float | None
    min: float | None


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation); ``None`` for no data."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return None
    return float(np.percentile(data, q, method="linear"))


def latency_stats(latencies_ms: Sequence[float] | np.ndarray) -> LatencyStats:
    data = np.asarray(latencies_ms, dtype=np.float64)
    if data.size == 0:
        return LatencyStats(
            count=0, p50=None, p90=None, p99=None, p999=None, max=None, mean=None, min=None
        )
    p50, p90, p99, p999 = np.percentile(data, [50, 90, 99, 99.9], method="linear")
    return LatencyStats(
        count=int(data.size),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        p999=float(p999),
        max=float(data.max()),
        mean=float(data.mean()),
        min=float(data.min()),
    )


def latency_cdf(latencies_ms: Sequence[float] | np.ndarray) -> list[tuple[float, float]]:
    """``(percent, ms)`` points of the CDF: enough to redraw it when comparing runs."""
    data = np.asarray(latencies_ms, dtype=np.float64)
    if data.size == 0:
        return []
    values = np.percentile(data, CDF_PERCENTS, method="linear")
    return [(float(p), float(v)) for p, v in zip(CDF_PERCENTS, values, strict=True)]


def per_second(times_s: np.ndarray, horizon_s: float) -> np.ndarray:
    """Events per one-second bin from 0 to ``horizon_s`` (rates for the timeline plot)."""
    bins = max(1, int(np.ceil(horizon_s)))
    counts, _ = np.histogram(times_s, bins=bins, range=(0.0, float(bins)))
    return counts.astype(np.float64)


def median_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    """The median over back-to-back ``(a, b)`` measurements of b / a: how paired comparisons
    (served over offline, one setup over another) are summarised."""
    return float(np.median([b / a for a, b in pairs]))


def spread(values: Sequence[float]) -> float:
    """How far the farthest of ``values`` lies from their median, as a fraction of it: one
    setup's run-to-run variation."""
    middle = float(np.median(values))
    return max(abs(v / middle - 1) for v in values)
