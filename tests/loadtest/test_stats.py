"""Percentiles, CDF points and per-second rates on data whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.stats import latency_cdf, latency_stats, per_second, percentile


def test_linear_percentiles_of_one_to_hundred() -> None:
    data = np.arange(1, 101, dtype=float)  # rank of q is q/100 × 99, interpolated
    stats = latency_stats(data)
    assert stats.count == 100
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.p999 == pytest.approx(99.901)
    assert (stats.min, stats.max, stats.mean) == (1.0, 100.0, pytest.approx(50.5))


def test_percentiles_of_small_and_skewed_samples() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([10, 20], 25) == pytest.approx(12.5)
    assert percentile([7], 99) == 7.0
    # 999 fast requests and one very slow one: the mean moves, p99 does not, p99.9 sees it.
    data = [10.0] * 999 + [5000.0]
    stats = latency_stats(data)
    assert stats.p99 == pytest.approx(10.0)
    assert stats.p999 == pytest.approx(10.0 + 0.001 * 4990.0)  # rank 998.001
    assert stats.max == 5000.0
    assert stats.mean == pytest.approx(14.99)


def test_order_does_not_matter() -> None:
    rng = np.random.default_rng(3)
    data = rng.exponential(20.0, 5000)
    assert latency_stats(data) == latency_stats(rng.permutation(data))


def test_no_data_gives_none_not_zero() -> None:
    stats = latency_stats([])
    assert stats.count == 0 and stats.p99 is None and stats.mean is None
    assert percentile([], 50) is None
    assert latency_cdf([]) == []


def test_cdf_points_are_monotone_from_min_to_max() -> None:
    data = np.random.default_rng(0).lognormal(3, 1, 2000)
    points = latency_cdf(data)
    pct = [p for p, _ in points]
    ms = [v for _, v in points]
    assert pct[0] == 0 and pct[-1] == 100
    assert ms[0] == pytest.approx(data.min()) and ms[-1] == pytest.approx(data.max())
    assert all(a <= b for a, b in zip(ms, ms[1:], strict=False))
    assert dict(points)[50.0] == pytest.approx(np.median(data))


def test_per_second_bins() -> None:
    counts = per_second(np.array([0.1, 0.2, 0.9, 1.5, 3.99]), 4.0)
    assert counts.tolist() == [3, 1, 0, 1]
