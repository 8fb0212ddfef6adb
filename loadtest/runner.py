"""The load loops: open (a fixed schedule of arrivals) and closed (N clients back to back).

Open loop: every arrival time is computed before the run; each request is launched as its own
task when its time comes, whether or not earlier ones have answered, and its latency is counted
from its *scheduled* time. A server that stalls therefore sees arrivals keep coming and is
charged for the queueing it causes (no coordinated omission). Arrivals beyond the in-flight cap
are recorded as ``dropped`` errors instead of piling up without bound.

Closed loop: ``N`` workers each send a request, wait for it, and send the next; latency is from
send to answer, and exactly ``N`` requests are in flight until the end.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from .api import BadResponse, parse_response, request_body, request_headers
from .config import LoadConfig
from .progress import Progress
from .schedule import poisson_offsets
from .workload import RequestPool

OUTCOMES = ("ok", "http_error", "bad_response", "timeout", "connection_error", "dropped")


@dataclass(slots=True)
class Sample:
    """One request. Times are seconds from the phase start; latency counts from ``scheduled``."""

    index: int
    scheduled: float
    sent: float
    done: float
    status: int  # HTTP status; 0 when there was no answer
    outcome: str  # one of OUTCOMES
    inputs: int
    tokens: int | None = None
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.done - self.scheduled) * 1000.0


@dataclass
class Recorder:
    """Samples of a phase, and live counters for the progress line and the in-flight cap."""

    samples: list[Sample] = field(default_factory=list)
    ok_latencies_ms: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    sent: int = 0

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        if sample.outcome == "ok":
            self.ok_latencies_ms.append(sample.latency_ms)

    @property
    def errors(self) -> int:
        return len(self.samples) - len(self.ok_latencies_ms)


@dataclass
class Phase:
    """What one measured (or warm-up) phase produced."""

    samples: list[Sample]
    elapsed_s: float
    offered_rps: float | None
    max_in_flight: int
    client_cpu_s: float
    interrupted: bool


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects the process already holds out of the garbage collections of a phase.

    A full collection walks every object in the process and stops the event loop meanwhile: in
    one that has loaded torch, Ray and a test suite that was 0.6-0.7 s here, which an open loop
    records as a burst of late sends and a closed one as a latency spike that is the client's,
    not the server's. Frozen, a collection during the phase walks only what the phase allocated;
    the heap goes back to the oldest generation afterwards.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class LoadRunner:
    """Sends the pool's requests to one endpoint over one connection pool."""

    def __init__(
        self,
        config: LoadConfig,
        pool: RequestPool,
        session: aiohttp.ClientSession,
        stop: asyncio.Event,
    ) -> None:
        self.config = config
        self.pool = pool
        self.session = session
        self.stop = stop
        self.headers = request_headers(config)
        # Bodies are serialised once, before any clock starts.
        self.bodies = [request_body(config, texts) for texts in pool.requests]

    async def _send(self, index: int, scheduled: float, t0: float, rec: Recorder) -> None:
        loop = asyncio.get_running_loop()
        slot = index % len(self.bodies)
        inputs = self.pool.inputs(slot)
        sent = loop.time()
        rec.sent += 1
        rec.in_flight += 1
        rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        status, outcome, tokens, error = 0, "ok", None, None
        try:
            async with self.session.post(
                self.config.endpoint, data=self.bodies[slot], headers=self.headers
            ) as response:
                body = await response.read()
                status = response.status
                if 200 <= status < 300:
                    tokens = parse_response(self.config, response.headers, body, inputs).tokens
                else:
                    outcome, error = "http_error", body[:200].decode("utf-8", "replace")
        except BadResponse as exc:
            outcome, error = "bad_response", str(exc)
        except TimeoutError:
            outcome, error = "timeout", f"no answer within {self.config.timeout_s} s"
        except aiohttp.ClientError as exc:
            outcome, error = "connection_error", f"{type(exc).__name__}: {exc}"
        finally:
            rec.in_flight -= 1
        done = loop.time() - t0
        times = (scheduled - t0, sent - t0, done)
        rec.add(Sample(index, *times, status, outcome, inputs, tokens, error))

    async def _finish(self, tasks: list[asyncio.Task]) -> bool:
        """Wait for in-flight requests (each bounded by the timeout); on stop, cancel them."""
        pending = set(tasks)
        while pending and not self.stop.is_set():
            _, pending = await asyncio.wait(pending, timeout=0.1)
        interrupted = self.stop.is_set()
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:  # a bug in a client task must not pass silently
            if isinstance(result, Exception):
                raise result
        return interrupted

    async def open_loop(
        self, rate: float, duration_s: float | None, requests: int | None, label: str = ""
    ) -> Phase:
        loop = asyncio.get_running_loop()
        offsets = poisson_offsets(rate, duration_s, requests, self.config.seed)
        cap = self.config.in_flight_cap()
        rec = Recorder()
        launched: list[asyncio.Task] = []
        live: set[asyncio.Task] = set()  # launched and not finished: what the cap counts
        cpu0 = time.process_time()
        t0 = loop.time() + 0.01
        with frozen_heap():
            async with Progress(rec, label, t0, self.config.progress, rate):
                for index, offset in enumerate(offsets):
                    target = t0 + float(offset)
                    while not self.stop.is_set() and (delay := target - loop.time()) > 0:
                        await asyncio.sleep(min(delay, 0.1))
                    if self.stop.is_set():
                        break
                    if len(live) >= cap:
                        rec.add(Sample(index, offset, offset, offset, 0, "dropped", 0, None, "cap"))
                        continue
                    task = asyncio.create_task(self._send(index, target, t0, rec))
                    launched.append(task)
                    live.add(task)
                    task.add_done_callback(live.discard)
                interrupted = await self._finish(launched)
        window = duration_s if duration_s is not None else float(offsets[-1]) if len(offsets) else 0
        return self._phase(rec, window, rate, cpu0, interrupted)

    async def closed_loop(
        self, concurrency: int, duration_s: float | None, requests: int | None, label: str = ""
    ) -> Phase:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        counter = itertools.count()
        cpu0 = time.process_time()
        t0 = loop.time()
        end = t0 + duration_s if duration_s is not None else float("inf")

        async def client() -> None:
            while not self.stop.is_set() and (now := loop.time()) < end:
                index = next(counter)
                if requests is not None and index >= requests:
                    return
                await self._send(index, now, t0, rec)

        with frozen_heap():
            async with Progress(rec, label, t0, self.config.progress, None):
                tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
                interrupted = await self._finish(tasks)
        return self._phase(rec, 0.0, None, cpu0, interrupted)

    def _phase(
        self, rec: Recorder, window: float, rate: float | None, cpu0: float, interrupted: bool
    ) -> Phase:
        last = max((s.done for s in rec.samples), default=0.0)
        return Phase(
            samples=sorted(rec.samples, key=lambda s: s.scheduled),
            elapsed_s=max(window, last),
            offered_rps=rate,
            max_in_flight=rec.max_in_flight,
            client_cpu_s=time.process_time() - cpu0,
            interrupted=interrupted,
        )


def latencies_ms(samples: Sequence[Sample], outcome: str = "ok") -> np.ndarray:
    return np.array([s.latency_ms for s in samples if s.outcome == outcome], dtype=np.float64)
