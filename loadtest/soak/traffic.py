"""The soak's traffic: what each kind of request sends and must get back, the capacity ramp, and
the open-loop run with the replica's memory sampled beside it.

Each kind is its own ``LoadRunner`` open loop on one ``qos.Scenario`` (one session, one clock)
at its share of the offered rate. Independent Poisson streams add up to one Poisson stream of
the total rate, so the server sees a single mixed stream while every sample keeps its kind.
The good kinds are the ``mixed`` workload's shapes in its shares, so the capacity measured with
that workload is the capacity of exactly this mix.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common import texts as corpus

from ..bench.qos import TIMEOUT_S, FixedPool, Scenario, scenario, server_rss
from ..runner import LoadRunner, Phase
from ..summary import status_key
from ..workload import MIXED_LONG_INPUTS, MIXED_SHARES
from .verdicts import Capacity, Records, RssPoint

log = logging.getLogger(__name__)

BAD_SHARE = 0.01  # of all requests, for each of the four bad kinds
MALFORMED = b'{"input": ["an unterminated string'
UNKNOWN_MODEL = "no-such-model"
RAMP = (2, 4, 8)  # closed-loop clients per capacity step
PROGRESS_EVERY_S = 30.0


@dataclass(frozen=True)
class Kind:
    """One kind of request: its share of all requests and the status its answer must have."""

    name: str
    share: float
    expected: int
    shape: dict[str, Any] = field(default_factory=dict)  # LoadConfig fields of its runner
    requests: list[list[str]] | None = None  # fixed requests instead of the workload's walk
    body: bytes | None = None  # sent as is instead of the JSON of ``requests``

    @property
    def good(self) -> bool:
        return self.expected == 200


def kinds(max_inputs: int) -> list[Kind]:
    """Single sentences, 32-sentence requests and passages in the ``mixed`` workload's shares of
    the good traffic; then four kinds of bad request at ``BAD_SHARE`` each, every one refused by
    a different check (JSON parsing, the input count both ways, the model name)."""
    good = 1 - 4 * BAD_SHARE
    single, batch, long = MIXED_SHARES
    one = [corpus.sentences()[0]]
    return [
        Kind("sentence", good * single, 200, {"workload": "short"}),
        Kind("32 sentences", good * batch, 200, {"workload": "batch", "batch_size": 32}),
        Kind(f"{MIXED_LONG_INPUTS} passages", good * long, 200,
             {"workload": "long", "batch_size": MIXED_LONG_INPUTS}),
        Kind("malformed JSON", BAD_SHARE, 400, requests=[one], body=MALFORMED),
        Kind("empty input", BAD_SHARE, 400, requests=[[]]),
        Kind("unknown model", BAD_SHARE, 404, {"model": UNKNOWN_MODEL}, requests=[one]),
        Kind("too many inputs", BAD_SHARE, 413, requests=[one * (max_inputs + 1)]),
    ]  # fmt: skip


def kind_runner(sc: Scenario, kind: Kind, rate: float, seed: int) -> LoadRunner:
    # As in qos.overload: no client-side drops below what the timeout bounds anyway.
    cap = max(64, math.ceil(rate * TIMEOUT_S) + 1)
    pool = FixedPool(kind.requests) if kind.requests is not None else None
    runner = sc.runner(pool, **kind.shape, max_in_flight=cap, seed=seed)
    if kind.body is not None:
        runner.bodies = [kind.body]  # the pool now only says how many inputs a request counts
    return runner


def _step(concurrency: int, phase: Phase) -> dict[str, Any]:
    ok = [s for s in phase.samples if s.outcome == "ok"]
    elapsed = max(phase.elapsed_s, 1e-9)
    return {
        "concurrency": concurrency,
        "seconds": round(phase.elapsed_s, 2),
        "requests_per_s": len(ok) / elapsed,
        "inputs_per_s": sum(s.inputs for s in ok) / elapsed,
        "statuses": dict(Counter(status_key(s) for s in phase.samples)),
    }


async def measure_capacity(url: str, step_s: float) -> Capacity:
    """A closed-loop ramp of the good mix (the ``mixed`` workload): one discarded step at the
    first concurrency to warm up, then a step at each of ``RAMP``; the best step's OK answers per
    second is the capacity. Closed loops saturate the server without overloading it (its queue
    never holds more than the clients' requests), and every step runs: on a shared machine one
    step can dip, so stopping at the first that gains nothing would stop at the noise."""
    async with scenario(url) as sc:
        mixed = sc.runner(workload="mixed")
        await mixed.closed_loop(RAMP[0], step_s, None)
        steps: list[dict[str, Any]] = []
        for concurrency in RAMP:
            steps.append(_step(concurrency, await mixed.closed_loop(concurrency, step_s, None)))
            log.info("capacity: %d clients, %.1f requests/s (%s)", concurrency,
                     steps[-1]["requests_per_s"], steps[-1]["statuses"])  # fmt: skip
    shares = " / ".join(f"{s:.0%}" for s in MIXED_SHARES)
    method = (
        f"Closed-loop ramp of the good mix ({shares} single sentences / 32 sentences / "
        f"{MIXED_LONG_INPUTS} passages by count): a {step_s:g} s warm-up at {RAMP[0]} clients, "
        f"then {step_s:g} s at each of {', '.join(map(str, RAMP))} clients; capacity is the best "
        "step's OK requests/s"
    )
    best = max(s["requests_per_s"] for s in steps)
    return Capacity(method=method, requests_per_s=best, steps=steps)


def kind_rates(all_kinds: list[Kind], good_rps: float, duration_s: float) -> dict[str, float]:
    """Requests/s of each kind when the good kinds together are offered ``good_rps``: at least
    one request of every kind in the run, however short (a floor the 10-minute soak never
    reaches)."""
    total = good_rps / sum(k.share for k in all_kinds if k.good)
    return {k.name: max(total * k.share, 1.0 / duration_s) for k in all_kinds}


@dataclass
class SoakRun:
    records: Records
    rss: list[RssPoint]


async def soak(
    url: str,
    all_kinds: list[Kind],
    rates: dict[str, float],
    duration_s: float,
    launcher: int | None,
    rss_every_s: float,
) -> SoakRun:
    """Every kind's open loop for ``duration_s`` at its rate, the replica's RSS every
    ``rss_every_s`` (from the launcher's process tree) until the last answer is in."""
    points: list[RssPoint] = []
    async with scenario(url) as sc:
        runners = [kind_runner(sc, k, rates[k.name], seed) for seed, k in enumerate(all_kinds)]
        done = asyncio.Event()

        async def sample_rss(pid: int) -> None:
            next_log = PROGRESS_EVERY_S
            while not done.is_set():
                rss = await asyncio.to_thread(server_rss, pid)
                points.append(RssPoint(t_s=sc.now(), replica_mib=rss.replica_mib,
                                       tree_mib=rss.tree_mib))  # fmt: skip
                if sc.now() >= next_log:
                    next_log += PROGRESS_EVERY_S
                    log.info("soak: %.0f / %.0f s, replica RSS %s MiB", sc.now(), duration_s,
                             f"{rss.replica_mib:,.0f}" if rss.replica_mib else "?")  # fmt: skip
                try:  # the period, cut short when the traffic is over
                    await asyncio.wait_for(done.wait(), rss_every_s)
                except TimeoutError:
                    pass

        # The runners' clocks start 10 ms after this one (open_loop's t0), within a millisecond
        # of each other: they compute their schedules before their first await.
        sc.start = sc.loop.time()
        sampler = asyncio.create_task(sample_rss(launcher)) if launcher is not None else None
        phases = await asyncio.gather(
            *(
                r.open_loop(rates[k.name], duration_s, None)
                for r, k in zip(runners, all_kinds, strict=True)
            )
        )
        done.set()
        if sampler is not None:
            await sampler
    return SoakRun({k.name: p.samples for k, p in zip(all_kinds, phases, strict=True)}, points)
