"""Overload: an open-loop flood of W2's requests at several times W2's measured capacity, kept
short, then recovery. The benchmark's own scenario (``loadtest.bench.qos.overload``) runs it;
this adds what reliability asks of it: every refusal a JSON 429 with ``Retry-After`` (checked
on a witness client's whole answers), no 5xx, no request left unanswered, and the replica the
same process afterwards (a health check that times out under load would have replaced it).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from ..bench.qos import OVERLOAD_FACTOR, SECONDS, TIMEOUT_S
from ..bench.qos import overload as flood
from ..driver import run as run_load
from .load import RecordingLoad, w2_config
from .records import describe_statuses
from .report import Outcome, from_records
from .target import Target, probe_health, replica_pid

SCALE = 0.25  # of the benchmark's 60 s flood: 15 s
CAPACITY_S = 6.0  # W2 closed loop, after a 1 s warm-up
HEALTH_EVERY_S = 0.5


async def capacity_rps(target: Target) -> float:
    """W2's requests/s on this server right now (the load generator's own closed loop)."""
    config = w2_config(target).model_copy(
        update={"duration_s": CAPACITY_S, "warmup_s": 1.0, "progress": False, "out": None}
    )
    result = await asyncio.to_thread(run_load, config)  # driver.run owns its event loop
    return result.summary.throughput_rps


async def watch_health(target: Target, stop: asyncio.Event) -> list[float]:
    """Seconds each ``/health`` took while the flood ran (an unanswered one: its 2 s timeout)."""
    seconds: list[float] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            probe = await probe_health(session, target.url, 0.0)
            seconds.append(probe.seconds)
            await asyncio.sleep(HEALTH_EVERY_S)  # the sampling interval
    return seconds


async def run(target: Target, name: str) -> list[Outcome]:
    if target.spec.api_key:
        raise ValueError("the overload scenario's flood sends no API key: use a keyless server")
    async with aiohttp.ClientSession() as session:
        pid = await replica_pid(session, target)
    capacity = await capacity_rps(target)
    stop = asyncio.Event()
    health = asyncio.create_task(watch_health(target, stop))
    t0 = time.monotonic()
    async with RecordingLoad(target) as witness:  # whole answers, for their bodies and headers
        result, clients = await flood(target.url, target.launcher, capacity, SCALE)
    stop.set()
    health_s = await health
    async with aiohttp.ClientSession() as session:
        restarted = await replica_pid(session, target) != pid
    judged = from_records(witness.records, allowed=(429, 503), name=name, scenario=name,
                          fault="", server="")  # fmt: skip
    problems = list(judged.problems)
    if result.recovery_s is None:
        problems.append(f"not recovered within {result.recovery_bound_s:g} s")
    if result.server_errors:
        problems.append(f"{result.server_errors} flood requests got a 5xx")
    if result.statuses.get("timeout"):
        problems.append(
            f"{result.statuses['timeout']} flood requests unanswered in {TIMEOUT_S:g} s"
        )
    if restarted:
        problems.append("the replica was restarted during the flood")
    slowest = max((s.latency_ms for s in clients["flood"]), default=None)
    return [
        judged.model_copy(
            update=dict(
                fault=f"overload: Poisson flood of W2 requests at {OVERLOAD_FACTOR:g}× capacity "
                f"({result.offered_rps:.1f} req/s against {capacity:.1f}) for "
                f"{SECONDS['flood'] * SCALE:g} s",
                server=target.spec.command(),
                requests=len(clients["flood"]),
                ok=result.admitted.count,
                statuses=", ".join(f"{k}×{v}" for k, v in sorted(result.statuses.items())),
                recovery_s=result.recovery_s,
                recovery_bound_s=result.recovery_bound_s,
                slowest_s=None if slowest is None else slowest / 1000,
                problems=problems,
                notes=[
                    f"witness clients (W2, closed loop) during the flood: "
                    f"{describe_statuses(witness.records)}",
                    f"`GET /health` during the flood: slowest {max(health_s, default=0):.2f} s of "
                    f"{len(health_s)} probes (2 s probe timeout)",
                    f"replica restarted: {'yes' if restarted else 'no'}; flood latency counts from "
                    "each request's scheduled arrival",
                    f"{time.monotonic() - t0:.0f} s in all",
                ],
            )
        )
    ]
