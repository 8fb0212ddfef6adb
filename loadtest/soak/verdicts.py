"""The soak's verdicts and summary, computed from its records alone (pure: no server, no clock).

Every window is on the scheduled clock: in an open loop a request belongs to the moment it was
due, whatever the server did with it. Three windows matter:

- warm-up, ``[0, warmup_s)``: left out of both comparisons. The capacity ramp has already
  warmed the replica, but its first minute at a steady rate still settles the allocator's arenas
  and the batcher's measured speed; judging growth from there would charge it to a leak.
- baseline, ``[warmup_s, warmup_s + window_s)``: the first window after the warm-up.
- last, ``[duration_s − window_s, duration_s)``.

The defaults are a tenth of the run each: for the 10-minute soak, the first minute is warm-up,
the second is the baseline, the tenth is compared with it.

Verdicts:

- unexpected errors (limit 0): a good request that did not get 200 with the right number of
  vectors (429, 5xx, a timeout, a connection error, a client-side drop), or a bad request that
  did not get its kind's own 4xx. At 70 % of capacity a 429 is a failure too.
- replica RSS growth (limit < 5 %): median VmRSS of the replica over the last window against
  the baseline window's. Medians, because one sample taken mid-batch holds that batch's tensors.
- p99 drift (limit < 10 %): p99 latency of the good requests of every kind together, last
  window against baseline. Mixed rather than per kind: at 70 % of two cores' capacity a rare
  kind has a few dozen requests a minute, and a p99 of a few dozen is its maximum, noise on a
  shared machine. A p99 that fell passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from ..runner import Sample
from ..stats import LatencyStats, latency_stats, percentile
from ..summary import status_key

MAX_UNEXPECTED = 0
MAX_RSS_GROWTH = 0.05
MAX_P99_DRIFT = 0.10
# Kind name -> its requests, every time in seconds from the soak's start (one clock).
Records = dict[str, list[Sample]]


@dataclass(frozen=True)
class Windows:
    """The warm-up and the two windows compared, in seconds of the scheduled clock."""

    duration_s: float
    warmup_s: float
    window_s: float

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.warmup_s < 0:
            raise ValueError("the window must be positive and the warm-up not negative")
        if self.warmup_s + 2 * self.window_s > self.duration_s:
            raise ValueError(
                f"warm-up {self.warmup_s:g} s + 2 windows of {self.window_s:g} s do not fit in "
                f"{self.duration_s:g} s: lengthen --duration-s or shorten --warmup-s/--window-s"
            )

    @property
    def baseline(self) -> tuple[float, float]:
        return self.warmup_s, self.warmup_s + self.window_s

    @property
    def last(self) -> tuple[float, float]:
        return self.duration_s - self.window_s, self.duration_s


class RssPoint(BaseModel):
    """VmRSS in MiB at ``t_s``: the replica process(es) (None: none found) and the whole tree."""

    t_s: float
    replica_mib: float | None
    tree_mib: float


class Verdict(BaseModel):
    name: str
    passed: bool | None  # None: not measured (e.g. no replica process to read)
    value: float | None  # the number compared with ``limit``
    limit: float
    unit: Literal["count", "fraction"]  # of value and limit: requests, or a relative change
    detail: str  # the numbers behind ``value``, for the operator


class KindStats(BaseModel):
    """One kind of request: what it was offered at, what it got."""

    share: float  # of the requests offered
    rate_rps: float
    expected_status: int
    requests: int
    statuses: dict[str, int]  # summary.status_key -> requests
    unexpected: int
    latency_ms: LatencyStats  # of the answers it was expected to get


class WindowStats(BaseModel):
    """One window of the timeline: good requests' latency and the replica's median RSS."""

    start_s: float
    end_s: float
    good_requests: int
    p50_ms: float | None
    p99_ms: float | None
    replica_mib: float | None


class Capacity(BaseModel):
    """Requests/s of the good mix the server sustained, and how that was found."""

    method: str
    requests_per_s: float
    steps: list[dict[str, Any]]  # concurrency, requests_per_s, inputs_per_s, statuses


class SoakSummary(BaseModel):
    started_at: str
    command: str
    machine: dict[str, Any]
    url: str
    server_info: dict[str, Any] | None
    capacity: Capacity
    load: float  # good requests offered ÷ capacity
    offered_rps: float  # every kind together
    duration_s: float
    warmup_s: float
    window_s: float
    requests: int
    kinds: dict[str, KindStats]
    unexpected_examples: list[str]
    timeline: list[WindowStats]
    rss: list[RssPoint]
    verdicts: list[Verdict]
    passed: bool


def is_unexpected(expected: int, sample: Sample) -> bool:
    """A good request must be OK (200, vectors checked); a bad one must get exactly its 4xx."""
    return sample.outcome != "ok" if expected == 200 else sample.status != expected


def in_window(samples: Sequence[Sample], window: tuple[float, float]) -> list[Sample]:
    return [s for s in samples if window[0] <= s.scheduled < window[1]]


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def replica_mib(points: Sequence[RssPoint], window: tuple[float, float]) -> float | None:
    """Median replica RSS of the samples taken in ``window``."""
    return _median(
        [p.replica_mib for p in points if window[0] <= p.t_s < window[1] and p.replica_mib]
    )


def errors_verdict(records: Records, expected: dict[str, int]) -> Verdict:
    bad = Counter(
        f"{kind} {status_key(s)}"
        for kind, samples in records.items()
        for s in samples
        if is_unexpected(expected[kind], s)
    )
    n = sum(bad.values())
    detail = ", ".join(f"{k}: {v}" for k, v in bad.most_common()) or "none"
    return Verdict(
        name="unexpected errors", passed=n <= MAX_UNEXPECTED, value=n, limit=MAX_UNEXPECTED,
        unit="count", detail=detail,
    )  # fmt: skip


def _change(name: str, before: float | None, after: float | None, limit: float, unit: str,
            missing: tuple[bool | None, str]) -> Verdict:  # fmt: skip
    """after ÷ before − 1 against ``limit``; ``missing`` = (passed, why) without both."""
    if before is None or after is None or before <= 0:
        passed, why = missing
        return Verdict(name=name, passed=passed, value=None, limit=limit, unit="fraction",
                       detail=why)  # fmt: skip
    change = after / before - 1
    return Verdict(name=name, passed=change < limit, value=change, limit=limit,
                   unit="fraction", detail=f"{before:,.1f} → {after:,.1f} {unit}")  # fmt: skip


def rss_verdict(points: Sequence[RssPoint], windows: Windows) -> Verdict:
    """Not measured (``passed=None``) when no replica process was found, or no sample fell in
    a window (the CLI keeps three samples per window)."""
    before, after = replica_mib(points, windows.baseline), replica_mib(points, windows.last)
    found = any(p.replica_mib for p in points)
    why = "not measured: " + (
        "no RSS sample in a compared window" if found
        else "no replica process found (with --url, give --pid)"
    )  # fmt: skip
    return _change("replica RSS growth", before, after, MAX_RSS_GROWTH, "MiB", (None, why))


def drift_verdict(good: Sequence[Sample], windows: Windows) -> Verdict:
    """Fails without an OK answer in either window (the errors verdict then says why)."""

    def p99(window: tuple[float, float]) -> float | None:
        return percentile([s.latency_ms for s in in_window(good, window) if s.outcome == "ok"], 99)

    before, after = p99(windows.baseline), p99(windows.last)
    why = "no OK answer in a window"
    return _change("p99 drift (good requests, mixed)", before, after, MAX_P99_DRIFT, "ms",
                   (False, why))  # fmt: skip


def timeline(
    good: Sequence[Sample], points: Sequence[RssPoint], width_s: float, duration_s: float
) -> list[WindowStats]:
    """Good requests' p50/p99 and the replica's median RSS per ``width_s`` from the start (the
    last window cut at ``duration_s``)."""
    out = []
    for start in np.arange(0.0, duration_s, width_s):
        window = (float(start), min(float(start) + width_s, duration_s))
        ok = [s.latency_ms for s in in_window(good, window) if s.outcome == "ok"]
        out.append(WindowStats(start_s=window[0], end_s=window[1], good_requests=len(ok),
                               p50_ms=percentile(ok, 50), p99_ms=percentile(ok, 99),
                               replica_mib=replica_mib(points, window)))  # fmt: skip
    return out


def kind_stats(samples: Sequence[Sample], share: float, rate: float, expected: int) -> KindStats:
    answered = [s.latency_ms for s in samples if not is_unexpected(expected, s)]
    return KindStats(
        share=share,
        rate_rps=rate,
        expected_status=expected,
        requests=len(samples),
        statuses=dict(Counter(status_key(s) for s in samples)),
        unexpected=len(samples) - len(answered),
        latency_ms=latency_stats(answered),
    )


def judge(
    records: Records, expected: dict[str, int], points: Sequence[RssPoint], windows: Windows
) -> list[Verdict]:
    good = [s for kind, samples in records.items() if expected[kind] == 200 for s in samples]
    return [
        errors_verdict(records, expected),
        rss_verdict(points, windows),
        drift_verdict(good, windows),
    ]


def unexpected_examples(records: Records, expected: dict[str, int], n: int = 5) -> list[str]:
    """The first few distinct unexpected answers, with what the server (or client) said."""
    seen = (
        f"{kind}: {status_key(s)}: {s.error}"
        for kind, samples in records.items()
        for s in samples
        if is_unexpected(expected[kind], s)
    )
    return list(dict.fromkeys(seen))[:n]


def passed(verdicts: Sequence[Verdict]) -> bool:
    """Every measured verdict passed (one not measured is reported, not failed)."""
    return all(v.passed is not False for v in verdicts)
