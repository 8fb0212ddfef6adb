"""The open-loop sweep: raise the offered rate until p99 breaks the objective or errors appear.

Rates grow geometrically (``--sweep-factor``) so the knee is found in a few steps whatever the
server's scale; a few bisection steps between the last rate that held and the first that broke
then narrow it down. The answer is the highest *offered* rate that held.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .runner import Phase, latencies_ms
from .server import ServerSplit
from .stats import latency_stats
from .summary import SweepResult, SweepStep

Measure = Callable[[float, str], Awaitable[tuple[Phase, ServerSplit | None]]]


@dataclass
class Measured:
    rate: float
    phase: Phase
    server: ServerSplit | None
    step: SweepStep


def judge(rate: float, phase: Phase, slo_p99_ms: float) -> SweepStep:
    """A step holds when every request succeeded and p99 is within the objective."""
    lat = latency_stats(latencies_ms(phase.samples))
    ok = lat.count
    errors = len(phase.samples) - ok
    elapsed = max(phase.elapsed_s, 1e-9)
    inputs = sum(s.inputs for s in phase.samples if s.outcome == "ok")
    if ok == 0:
        held, reason = False, "no successful request"
    elif errors:
        held, reason = False, f"{errors} errors"
    elif lat.p99 is not None and lat.p99 > slo_p99_ms:
        held, reason = False, f"p99 {lat.p99:.1f} ms > {slo_p99_ms:g} ms"
    else:
        held, reason = True, f"p99 {lat.p99:.1f} ms ≤ {slo_p99_ms:g} ms, no errors"
    return SweepStep(
        offered_rps=rate,
        throughput_rps=ok / elapsed,
        inputs_per_s=inputs / elapsed,
        latency_ms=lat,
        errors=errors,
        held=held,
        reason=reason,
    )


async def run_sweep(
    measure: Measure,
    start_rps: float,
    factor: float,
    max_steps: int,
    refine: int,
    slo_p99_ms: float,
    stopped: Callable[[], bool],
) -> tuple[SweepResult, Measured]:
    """Returns the sweep and the step to summarise: the best that held, else the first."""
    done: list[Measured] = []

    async def step(rate: float) -> Measured:
        label = f"[{len(done) + 1} @ {rate:.3g}/s] "
        phase, server = await measure(rate, label)
        done.append(Measured(rate, phase, server, judge(rate, phase, slo_p99_ms)))
        return done[-1]

    rate = start_rps
    good: Measured | None = None
    bad: float | None = None
    for _ in range(max_steps):
        result = await step(rate)
        if stopped():
            break
        if not result.step.held:
            bad = rate
            break
        good = result
        rate = round(rate * factor, 3)
    for _ in range(refine):
        if stopped() or bad is None:
            break
        low = good.rate if good is not None else 0.0
        mid = round((low + bad) / 2, 3)
        if mid <= 0 or (good is not None and mid - low < 0.02 * low):
            break
        result = await step(mid)
        if result.step.held:
            good = result
        else:
            bad = mid
    best = good or done[0]
    sweep = SweepResult(
        slo_p99_ms=slo_p99_ms,
        max_rate_rps=good.rate if good is not None else None,
        steps=[m.step for m in done],
    )
    return sweep, best
