"""Load during a fault: W2's shape (closed-loop clients, 32 real sentences a request, as
``loadtest.bench.served.workloads`` defines it), every answer recorded whole.

The load generator's ``LoadRunner`` keeps a status and 200 characters of an error; a fault's
verdict needs what a client would act on (content type, the whole body, ``Retry-After``), so
requests here go through :func:`send`, which records exactly that. Bodies and headers still come
from the load generator (``RequestPool``, ``loadtest.api``): the same bytes W2 sends.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from ..api import BadResponse, parse_response, request_body, request_headers
from ..bench.served import workloads
from ..config import LoadConfig
from ..workload import RequestPool
from .records import BODY_CHARS, HANG_S, Record
from .target import Target


def w2_config(target: Target) -> LoadConfig:
    """W2 as the benchmark runs it, against ``target`` (with its API key)."""
    config = workloads(target.url, None, Path(), 1.0, {"w2": 1.0})["w2"]
    key = SecretStr(target.spec.api_key) if target.spec.api_key else None
    return config.model_copy(update={"api_key": key})


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    t0: float,
    *,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
    check: tuple[LoadConfig, int] | None = None,
    timeout_s: float = HANG_S,
) -> Record:
    """One request, recorded as the client saw it; ``check = (config, inputs)`` also checks a
    2xx carries that many embeddings (a fast wrong answer is a failure too)."""
    start = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    status = None  # known once the headers are in: a failure after them cut the body short
    try:
        async with session.request(
            method, url, data=data, headers=headers, timeout=timeout
        ) as response:
            status = response.status
            raw = await response.read()
            record = Record(start - t0, time.monotonic() - start, status)
            if 200 <= response.status < 300 and check is not None:
                parse_response(check[0], response.headers, raw, check[1])
            elif not 200 <= response.status < 300:
                record.content_type = response.headers.get("content-type")
                record.body = raw[:BODY_CHARS].decode("utf-8", "replace")
                record.headers = {k.lower(): v for k, v in response.headers.items()}
    except BadResponse as exc:
        record.error = f"BadResponse: {exc}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        record = Record(start - t0, time.monotonic() - start, status, error)
    return record


class RecordingLoad:
    """W2's clients sending back to back until stopped; ``records`` in completion order.

    Use as ``async with``: leaving stops the clients and waits for requests in flight, each
    bounded by ``timeout_s``, so leaving is bounded too.
    """

    def __init__(self, target: Target, timeout_s: float = HANG_S) -> None:
        self.config = w2_config(target)
        pool = RequestPool(self.config)
        self.requests = [(request_body(self.config, texts), len(texts)) for texts in pool.requests]
        self.headers = request_headers(self.config)
        self.timeout_s = timeout_s
        self.records: list[Record] = []
        self.t0 = time.monotonic()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def clients(self) -> int:
        return self.config.concurrency

    def now(self) -> float:
        return time.monotonic() - self.t0

    def answered_since(self, t: float) -> list[Record]:
        """Requests sent at ``t`` or later that have finished."""
        return [r for r in self.records if r.start_s >= t]

    async def __aenter__(self) -> RecordingLoad:
        connector = aiohttp.TCPConnector(limit=self.clients)
        self._session = aiohttp.ClientSession(connector=connector)
        self.t0 = time.monotonic()
        counter = itertools.count()
        self._tasks = [asyncio.create_task(self._client(counter)) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            assert self._session is not None
            await self._session.close()

    async def _client(self, counter: itertools.count) -> None:
        assert self._session is not None
        while not self._stop.is_set():
            body, inputs = self.requests[next(counter) % len(self.requests)]
            record = await send(
                self._session, "POST", self.config.endpoint, self.t0, data=body,
                headers=self.headers, check=(self.config, inputs), timeout_s=self.timeout_s,
            )  # fmt: skip
            self.records.append(record)
