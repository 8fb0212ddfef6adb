"""The open-loop schedule: Poisson-like, seeded, at exactly the asked rate, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.schedule import poisson_offsets


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    a = poisson_offsets(50, 10, None, seed=1)
    assert np.array_equal(a, poisson_offsets(50, 10, None, seed=1))
    assert not np.array_equal(a[:20], poisson_offsets(50, 10, None, seed=2)[:20])


def test_rate_is_kept_and_gaps_are_exponential() -> None:
    offsets = poisson_offsets(200, 100, None, seed=0)
    assert len(offsets) == 20_000  # exactly rate × duration: the offered rate is the one asked
    assert offsets.min() >= 0 and offsets.max() < 100
    gaps = np.diff(offsets)
    assert gaps.min() >= 0
    assert gaps.mean() == pytest.approx(1 / 200, rel=0.03)
    # Exponential gaps: standard deviation equals the mean (a fixed pace would have none),
    # and about e^-1 of the gaps exceed the mean.
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
    assert (gaps > gaps.mean()).mean() == pytest.approx(np.exp(-1), abs=0.02)
    # Bursts as in a Poisson process: counts per second vary as much as they average
    # (dispersion index ≈ 1; a fixed pace would have ≈ 0).
    per_second = np.bincount(offsets.astype(int))
    assert per_second.var() / per_second.mean() == pytest.approx(1.0, abs=0.3)


def test_bounded_by_duration_and_by_count() -> None:
    assert poisson_offsets(100, 2.0, None).max() < 2.0
    assert len(poisson_offsets(100, None, 37)) == 37
    first = poisson_offsets(100, 1000.0, 37)  # the count binds first: a 0.37 s window
    assert len(first) == 37 and first.max() < 0.37
    assert len(poisson_offsets(10.0, 2.0, 1000)) == 20  # the duration binds first


def test_a_schedule_needs_a_bound_and_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="duration or a request count"):
        poisson_offsets(10, None, None)
    with pytest.raises(ValueError, match="positive"):
        poisson_offsets(0, 1, None)
