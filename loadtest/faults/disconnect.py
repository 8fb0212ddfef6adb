"""Clients that give up: requests whose connections close while their inputs wait in the
replica's queue. The server must notice, drop the abandoned inputs (counted in
``embedserve_dropped_inputs_total{reason="client_gone"}``) instead of computing them for nobody,
and stay healthy, the same replica process, serving W2's clients afterwards.

The clients leave once the replica's ``embedserve_queue_depth`` shows their inputs queued, not
after a fixed time: a client that leaves while its request is still being tokenized cancels it
before it is queued, so nothing is dropped (or counted), and how long tokenizing takes depends
on the machine. Admission (``max_queue_wait_s``) bounds what can queue to a few seconds of work,
so the abandoned requests are sized to about that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from common import texts as corpus

from .hostile import still_healthy
from .load import RecordingLoad, send
from .records import describe_statuses
from .report import Outcome, from_records
from .target import Target, replica_pid, wait_for

ABANDONED = 8  # requests whose clients leave
INPUTS = 32  # passages each (~250 tokens): about 5 s of work in all on two cores
QUEUED_WITHIN_S = 30.0  # their inputs must show in the queue by then
DROPS_WITHIN_S = 30.0  # the counter must have risen by then
SERVED_AFTER = 8  # W2 requests that must be answered 200 afterwards


async def metric(session: aiohttp.ClientSession, target: Target, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` on ``/metrics`` (all replicas)."""
    async with session.get(f"{target.url}/metrics") as response:
        text = await response.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def dropped(session: aiohttp.ClientSession, target: Target) -> float:
    return await metric(session, target, "embedserve_dropped_inputs_total", reason="client_gone")


async def abandon(session: aiohttp.ClientSession, target: Target, bodies: list[bytes]) -> list[str]:
    """Send ``bodies`` at once; close every connection still waiting once half their inputs
    are queued. What each client saw: an answer (``"429"``, ...) or ``"left"``."""
    headers = {"content-type": "application/json", **target.headers}
    url = f"{target.url}/v1/embeddings"

    async def one(body: bytes) -> str:
        # A session each: cancelling the request closes its connection, as a client leaving does.
        async with aiohttp.ClientSession() as own:
            record = await send(own, "POST", url, 0.0, data=body, headers=headers)
        return str(record.status)

    tasks = [asyncio.create_task(one(body)) for body in bodies]

    async def queued() -> bool:
        depth = await metric(session, target, "embedserve_queue_depth")
        return depth >= ABANDONED * INPUTS / 2 or all(t.done() for t in tasks)

    try:  # never queued: they leave anyway, and the missing drops say so
        with suppress(TimeoutError):
            await wait_for("abandoned inputs to queue", queued, QUEUED_WITHIN_S, every_s=0.05)
    finally:
        for task in tasks:
            task.cancel()
        seen = await asyncio.gather(*tasks, return_exceptions=True)
    return [s if isinstance(s, str) else "left" for s in seen]


async def run(target: Target, name: str) -> list[Outcome]:
    passages = corpus.passages()
    bodies = [orjson.dumps({"input": [passages[(i * INPUTS + j) % len(passages)]
                                      for j in range(INPUTS)]})
              for i in range(ABANDONED)]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        pid = await replica_pid(session, target)
        before = await dropped(session, target)
        seen = await abandon(session, target, bodies)

        async def risen() -> float:
            return await dropped(session, target) - before

        problems: list[str] = []
        try:
            count = await wait_for("client_gone drops", risen, DROPS_WITHIN_S)
        except TimeoutError:
            count = 0.0
            problems.append(f"no client_gone drops counted within {DROPS_WITHIN_S:g} s")
        async with RecordingLoad(target) as load:  # the others are served as before
            await wait_for("W2 answers", _answered(load), DROPS_WITHIN_S)
        problems += await still_healthy(session, target, pid)
    left = seen.count("left")
    answered = [s for s in seen if s != "left"]
    return [
        from_records(
            load.records, name=name, scenario=name,
            fault=f"{ABANDONED} clients close their connections while their {INPUTS}-passage "
                  "requests are queued",
            server=target.spec.command(), problems=problems,
            notes=[f"{left} of {ABANDONED} left before an answer"
                   + (f"; answered first: {', '.join(answered)}" if answered else ""),
                   f"client_gone drops counted: +{count:g} inputs",
                   f"statuses are W2's clients' right after: {describe_statuses(load.records)}"],
            details={"dropped_client_gone": count, "abandoned": seen},
        )
    ]  # fmt: skip


def _answered(load: RecordingLoad) -> Callable[[], Awaitable[bool]]:
    """A :func:`wait_for` check: ``SERVED_AFTER`` of the load's requests have been answered."""

    async def check() -> bool:
        return len(load.records) >= SERVED_AFTER

    return check
