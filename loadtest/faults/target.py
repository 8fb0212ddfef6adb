"""The service under test: started as operators start it, its replica process found, its health
polled with a deadline.

Scenarios that need the same settings share one server, started once (``ServerSpec`` is the
key): a start takes 20 s to over a minute on two shared cores, more than most scenarios.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp

from service.settings import Ingress

from ..bench.cpu import REPLICA, process_kind
from ..bench.served import embedserve

log = logging.getLogger("loadtest.faults")
T = TypeVar("T")
HEALTH_PROBE_TIMEOUT_S = 2.0  # a /health that takes longer is "not healthy" for this probe
POLL_S = 0.25


@dataclass(frozen=True)
class ServerSpec:
    """How a scenario's server is started: ``python -m service`` flags, and settings given as
    ``EMBEDSERVE_*`` variables (none: the service's defaults)."""

    ingress: Ingress = "haproxy"
    api_key: str | None = None
    settings: tuple[tuple[str, float], ...] = ()

    def flags(self) -> list[str]:
        flags = ["--ingress", self.ingress]
        return flags + (["--api-key", self.api_key] if self.api_key else [])

    def env(self) -> dict[str, str]:
        return {f"EMBEDSERVE_{name.upper()}": f"{value:g}" for name, value in self.settings}

    def command(self) -> str:
        """The start command in words (the API key elided)."""
        flags = ["--ingress", self.ingress] + (["--api-key", "KEY"] if self.api_key else [])
        env = [f"{k}={v}" for k, v in self.env().items()]
        return " ".join([*env, "python -m service", *flags])


@dataclass
class Target:
    """A running server as scenarios see it."""

    url: str
    launcher: int  # pid; Ray's processes are its descendants
    spec: ServerSpec
    log_file: Path  # the launcher's stderr: Ray's and the service's start-up messages

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}


@contextmanager
def started(spec: ServerSpec, artifact: Path, log_dir: Path) -> Iterator[Target]:
    """``spec``'s server on a free port, every core its replica's (the launcher's default)."""
    name = f"server-{spec.ingress}{'-settings' if spec.settings else ''}.log"
    cores, start = os.cpu_count() or 1, time.monotonic()
    flags, env = spec.flags(), spec.env()
    flags, env = spec.flags(), spec.env()
    with embedserve(artifact, cores, log_dir / name, flags, settings_env=env) as server:
        log.info("%s is up after %.0f s", spec.command(), time.monotonic() - start)
        yield Target(server.url, server.pid, spec, log_dir / name)


async def wait_for(
    what: str, check: Callable[[], Awaitable[T | None]], timeout_s: float, every_s: float = POLL_S
) -> T:
    """Poll ``check`` until it returns something truthy; ``TimeoutError`` past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(every_s)


async def replica_pid(session: aiohttp.ClientSession, target: Target) -> int:
    """The replica's process (``/info`` → ``process``), checked to be a Serve replica: a signal
    meant for it must never reach another process."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with session.get(f"{target.url}/info", headers=target.headers, timeout=timeout) as r:
        r.raise_for_status()
        pid = int((await r.json())["process"])
    kind = process_kind(pid, os.getpid())
    if kind != REPLICA:
        raise RuntimeError(f"/info names process {pid}, a {kind}, not a replica")
    return pid


@dataclass(frozen=True)
class HealthProbe:
    at_s: float  # on the caller's clock
    seconds: float
    status: int | None  # None: no answer within HEALTH_PROBE_TIMEOUT_S, or connection refused


async def probe_health(session: aiohttp.ClientSession, url: str, at_s: float) -> HealthProbe:
    start = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=HEALTH_PROBE_TIMEOUT_S)
    try:
        async with session.get(f"{url}/health", timeout=timeout) as response:
            await response.read()
            status: int | None = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = None
    return HealthProbe(at_s, time.monotonic() - start, status)


async def healthy(session: aiohttp.ClientSession, target: Target) -> bool:
    return (await probe_health(session, target.url, 0.0)).status == 200
