"""Open-loop arrival schedules, fixed before the first request is sent.

Arrivals are Poisson conditioned on their count: exactly ``round(rate × window)`` arrivals, at
times drawn uniformly in the window and sorted, which is what a Poisson process looks like once
its count is known. Gaps are exponential in all but name (bursts and lulls included), while the
offered rate is exactly the one asked for: a plain Poisson draw over ten seconds at 30/s offers
anywhere from ~27 to ~33, which would blur every step of a sweep. The generator is seeded, so
two runs (or two servers) receive the same sequence. Because the schedule exists up front, a
slow server cannot delay the next arrival; the load generator only follows it.
"""

from __future__ import annotations

import numpy as np


def poisson_offsets(
    rate: float, duration_s: float | None, max_requests: int | None, seed: int = 0
) -> np.ndarray:
    """Arrival times in seconds from the start, ascending, within ``duration_s`` and the count.

    At least one bound is required: a schedule never runs forever. When the count binds first,
    the window shrinks to ``max_requests / rate`` so the rate is still ``rate``.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if duration_s is None and max_requests is None:
        raise ValueError("a schedule needs a duration or a request count")
    count = round(rate * duration_s) if duration_s is not None else max_requests
    assert count is not None
    if max_requests is not None:
        count = min(count, max_requests)
    window = count / rate
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0.0, window, size=count))
