"""The bulk client against real HTTP: the real app (``service.routes``) over a real engine,
served by uvicorn on a real port in this process, and a small aiohttp proxy in front of it that
answers some requests itself (429s, a 400) and forwards the rest.

The client always runs as users run it, ``python -m bulk`` in a subprocess (:func:`bulk`), so
that a SIGKILL kills it and nothing of it lives in the test's process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import uvicorn
from aiohttp import web

from common import texts as corpus
from service.engine import Registry
from service.routes import build_api
from service.settings import ServiceSettings
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
LINES, BATCH = 5000, 64  # the one-shot file; BATCH: the client's default
# An answer the proxy gives itself instead of forwarding: (status, headers, body).
Answer = tuple[int, dict[str, str], bytes]
Policy = Callable[[int], Answer | None]  # request number (1-based) -> its answer, or forward


@contextmanager
def uvicorn_serving(app: object) -> Iterator[str]:
    """``app`` on a free 127.0.0.1 port, served by uvicorn in a thread; its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="package")
def service_url(minilm_artifact: Path) -> Iterator[str]:
    """MiniLM on ONNX Runtime, two threads (the machine's cores), cache off (vectors
    computed, never recalled)."""
    settings = ServiceSettings(
        artifact=minilm_artifact, backend="onnxruntime", num_cpus=2, cache_mb=0
    )
    registry = Registry.from_settings(settings)
    try:
        with uvicorn_serving(build_api(registry)) as url:
            yield url
    finally:
        registry.close()


class Proxy:
    """A real HTTP server that forwards each request to ``target`` unless ``policy`` answers
    it; counts the statuses it answered and the most requests it held at once."""

    def __init__(self, target: str, policy: Policy) -> None:
        self.target, self.policy = target, policy
        self.requests = 0
        self.in_flight = self.most_in_flight = 0
        self.authorizations: list[str | None] = []
        self.statuses: Counter[int] = Counter()
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            answer = await self.answer(request)
        finally:
            self.in_flight -= 1
        status, headers, body = answer
        self.statuses[status] += 1
        return web.Response(status=status, headers=headers, body=body)

    async def answer(self, request: web.Request) -> Answer:
        self.authorizations.append(request.headers.get("authorization"))
        answer = self.policy(self.requests)
        if answer is not None:
            return answer
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
        body = await request.read()
        async with self.session.post(
            self.target + request.path_qs, data=body, headers=headers
        ) as response:
            return response.status, {"content-type": response.content_type}, await response.read()

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.session.close()

    def __enter__(self) -> Proxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(START_TIMEOUT_S)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(START_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


FORWARDED = {"content-type", "authorization"}


def numbered_texts(count: int) -> list[str]:
    """``count`` distinct short texts: the 50 shortest built-in sentences, numbered ("17. The
    bus is packed."; 13 tokens a text with a batch's padding, the cost of a 5,000-line run)."""
    shortest = sorted(corpus.sentences(), key=len)[:50]
    return [f"{i}. {shortest[i % len(shortest)]}" for i in range(count)]


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    return path


def bulk_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "bulk", *map(str, args)]


def bulk(*args: object, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m bulk ARGS`` run to its end, from the project root."""
    return subprocess.run(
        bulk_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.fixture(scope="package")
def lines_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lines(tmp_path_factory.mktemp("bulk") / "lines.txt", numbered_texts(LINES))


@pytest.fixture(scope="package")
def one_shot(service_url: str, lines_file: Path) -> np.ndarray:
    """The 5,000 lines in one uninterrupted run, one request in flight (test_parts says why)."""
    out = lines_file.with_name("one-shot.npy")
    batches = -(-LINES // BATCH)
    done = bulk(lines_file, "--output", out, "--url", service_url, "--concurrency", 1)
    assert done.returncode == 0, done.stderr
    assert f"{batches} batches: 0 resumed, {batches} sent" in done.stderr
    assert not out.with_name("one-shot.npy.parts").exists()  # assembled, then removed
    return np.load(out)
