"""A stub embedding server on 127.0.0.1: instant, or deliberately slow, and self-observing.

It answers OpenAI (``/v1/embeddings``) and TEI (``/embed``) requests with the right number of
constant vectors after ``delay_s``, and TEI ``/rerank`` with each document's :func:`stub_score`,
sorted by score as TEI sorts them; with ``serial=True`` one request at a time, so its
capacity is exactly ``1 / delay_s`` requests/s. It records how many requests it held at once
and when each arrived and left.

Two uses: the tests run it in a thread to check the load loops against a server whose behaviour
is known, and the benchmark runs it as a process (``python -m loadtest.stub --port P``) to
measure the load generator's own cost per request with no model behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from dataclasses import dataclass, field

import orjson

from service.ingress import free_port


@dataclass
class StubServer:
    delay_s: float = 0.0
    serial: bool = False
    dim: int = 2  # vector size of the answers: 384 makes the client parse what MiniLM returns
    port: int = field(default_factory=free_port)
    in_flight: int = 0
    max_in_flight: int = 0
    handled: int = 0
    intervals: list[tuple[float, float]] = field(default_factory=list)  # (arrived, answered)
    models: set[str] = field(default_factory=set)  # x-model headers seen
    _writers: set = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mean_concurrency(self) -> float:
        """Requests in the server's hands, averaged over time from first arrival to last answer."""
        start = min(a for a, _ in self.intervals)
        end = max(b for _, b in self.intervals)
        return sum(b - a for a, b in self.intervals) / (end - start)

    # -- in a thread (tests) ---------------------------------------------------------------
    def __enter__(self) -> StubServer:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve_thread, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "stub server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve_thread(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.serve())
        self._loop.close()

    # -- the server ------------------------------------------------------------------------
    async def serve(self, stop_on_signal: bool = False) -> None:
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        if stop_on_signal:
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, self._stop.set)
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=1024)
        if hasattr(self, "_ready"):
            self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for writer in list(self._writers):
                writer.close()
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "x-model":
                        self.models.add(value.strip())
                body = await reader.readexactly(length) if length else b""
                status, payload = await self._handle(method, path, body)
                writer.write(
                    f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method != "POST":
            return 404, b'{"error": "no such route"}'
        data = orjson.loads(body)
        texts = data.get("input", data.get("inputs", data.get("texts")))
        n = 1 if isinstance(texts, str) else len(texts)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        arrived = time.monotonic()
        try:
            if self.serial:
                async with self._lock:
                    await asyncio.sleep(self.delay_s)
            elif self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        self.intervals.append((arrived, time.monotonic()))
        self.handled += 1
        if path == "/rerank":
            ranks = [{"index": i, "score": stub_score(i)} for i in range(n)]
            return 200, orjson.dumps(sorted(ranks, key=lambda r: -r["score"]))
        vectors = [[0.05] * self.dim] * n
        if path == "/embed":
            return 200, orjson.dumps(vectors)
        items = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": 7 * n}
        return 200, orjson.dumps({"object": "list", "data": items, "usage": usage})


def stub_score(index: int) -> float:
    """The stub's score for the document at ``index``: not in index order, so a client that
    reads a sorted answer back into input order is tested."""
    return (index * 37 % 101) / 100


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.stub", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--serial", action="store_true")
    p.add_argument("--dim", type=int, default=384)
    args = p.parse_args(argv)
    stub = StubServer(args.delay_ms / 1000, args.serial, args.dim, args.port)
    asyncio.run(stub.serve(stop_on_signal=True))


if __name__ == "__main__":
    main()
