"""Hostile input: requests a careless or malicious client sends, each of which must get its 4xx
JSON error (the status and code a client can act on) and leave the service healthy, the replica
the same process; and connections that hold the server's resources without sending (a body at
1 byte/s, hundreds of idle connections) while others are served normally.

Probe sizes come from the server's own ``/info`` limits, so they test its actual limits.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from common import texts as corpus

from .load import RecordingLoad, send
from .records import Record, describe_statuses
from .report import Outcome, from_records
from .target import Target, healthy, replica_pid, wait_for

HEALTHY_AFTER_S = 30.0  # the service must answer /health 200 this soon after a probe
BOMB_BYTES = 1 << 30  # a gzip bomb's inflated size: 1 GiB of zeros in about 1 MiB
HOLD_S = 35.0  # slow body and idle connections: past HAProxy's 30 s http-request timeout
IDLE_CONNECTIONS = 200


@dataclass(frozen=True)
class Request:
    path: str
    body: Any  # bytes, or an async iterator of bytes (sent chunked)
    headers: dict[str, str]


@dataclass(frozen=True)
class Probe:
    name: str
    what: str
    expected: tuple[int, ...]  # the statuses that are right for every request of the probe
    requests: list[Request]


def _json(data: Any) -> bytes:
    return orjson.dumps(data)


async def _chunked(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def gzip_bomb(inflated: int = BOMB_BYTES) -> bytes:
    """``inflated`` zero bytes, gzip-compressed a MiB at a time (never all in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(inflated // len(zeros))]
    return b"".join(parts) + packer.flush()


def probes(info: dict[str, Any], auth: dict[str, str]) -> list[Probe]:
    """Every hostile request class, sized to the server's limits."""
    limits = info["limits"]
    json_h = {"content-type": "application/json", **auth}
    oversize = _json({"input": ["a" * (limits["max_body_bytes"] + (1 << 20))]})
    long_text = " ".join(corpus.passages()[:4])  # ~1000 tokens: over any 512-token model
    valid = _json({"input": corpus.sentences()[:4]})

    def post(path: str, body: Any, **headers: str) -> Request:
        return Request(path, body, {**json_h, **headers})

    oa, tei = "/v1/embeddings", "/embed"
    return [
        Probe("malformed-json", "malformed JSON body", (400,),
              [post(oa, b'{"input": ["an unterminated string')]),
        Probe("wrong-types", "wrong types (a number as input, a float token id, a string "
              "for a bool)", (400, 422),
              [post(oa, _json({"input": 42})), post(oa, _json({"input": [[1.5, 2]]})),
               post(tei, _json({"inputs": "x", "truncate": "no"}))]),
        Probe("body-too-large", f"body over the {limits['max_body_bytes']}-byte limit "
              "(declared, and chunked without a length)", (413,),
              [post(oa, oversize), post(oa, _chunked(oversize))]),
        Probe("too-many-inputs", f"{limits['max_inputs'] + 1} inputs (limit "
              f"{limits['max_inputs']})", (413,),
              [post(oa, _json({"input": ["a"] * (limits["max_inputs"] + 1)}))]),
        Probe("too-long-input", "an input over the model's length with truncate=false", (413,),
              [post(tei, _json({"inputs": [long_text], "truncate": False}))]),
        Probe("invalid-token-ids", "token ids outside the vocabulary (too large, negative, "
              "past 64 bits)", (400, 422),
              [post(oa, _json({"input": [[101, 10**9]]})), post(oa, _json({"input": [[-1]]})),
               post(oa, b'{"input": [[101, 123456789012345678901234567890]]}')]),
        Probe("bad-api-key", "a wrong API key, and none", (401,),
              [post(oa, valid, authorization="Bearer wrong-key"),
               Request(oa, valid, {"content-type": "application/json"})]),
        Probe("gzip-body", "a valid body sent with Content-Encoding: gzip", (200, 415),
              [post(oa, gzip.compress(valid), **{"content-encoding": "gzip"})]),
        Probe("gzip-bomb", f"a gzip bomb ({BOMB_BYTES >> 30} GiB of zeros in "
              "about 1 MiB)", (400, 413),
              [post(oa, gzip_bomb(), **{"content-encoding": "gzip"})]),
    ]  # fmt: skip


async def still_healthy(session: aiohttp.ClientSession, target: Target, pid: int) -> list[str]:
    """Problems if the service is not healthy soon, or its replica is another process."""
    try:
        await wait_for("/health 200", lambda: healthy(session, target), HEALTHY_AFTER_S)
    except TimeoutError:
        return [f"not healthy within {HEALTHY_AFTER_S:g} s after the probe"]
    now = await replica_pid(session, target)
    return [] if now == pid else [f"the replica restarted (process {pid} → {now})"]


async def run_probe(
    session: aiohttp.ClientSession, target: Target, probe: Probe, pid: int, name: str
) -> Outcome:
    t0 = time.monotonic()
    records = [await send(session, "POST", target.url + r.path, t0, data=r.body,
                          headers=r.headers) for r in probe.requests]  # fmt: skip
    extra = [f"got {r.status}, expected {'/'.join(map(str, probe.expected))}"
             for r in records if r.status not in probe.expected]  # fmt: skip
    extra += await still_healthy(session, target, pid)
    return from_records(
        records, allowed=probe.expected, name=f"{name}-{probe.name}", scenario=name,
        fault=probe.what, server=target.spec.command(), problems=list(dict.fromkeys(extra)),
    )  # fmt: skip


@dataclass
class Held:
    """What a connection that never finishes its request got, and when (seconds)."""

    answer: str = "no answer, the connection still open"
    at_s: float | None = None


async def slow_body(target: Target, hold_s: float) -> Held:
    """A valid request whose body trickles in at 1 byte/s until the server answers or closes,
    or ``hold_s`` passes (the body is longer: only the server can end it sooner)."""
    host, port = target.url.removeprefix("http://").split(":")
    body = _json({"input": corpus.sentences()[: int(hold_s)]})
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in target.headers.items()) + "\r\n")  # fmt: skip
    reader, writer = await asyncio.open_connection(host, int(port))
    held, start = Held(), time.monotonic()
    try:
        writer.write(head.encode())
        answer = asyncio.create_task(reader.readline())
        for byte in body:
            if answer.done() or time.monotonic() - start > hold_s:
                break
            writer.write(bytes([byte]))
            await asyncio.wait({answer}, timeout=1.0)  # one byte a second
        if answer.done():
            line = answer.result().decode(errors="replace").strip()
            held = Held(line or "connection closed", time.monotonic() - start)
        answer.cancel()
    except ConnectionError as exc:
        held = Held(f"{type(exc).__name__}", time.monotonic() - start)
    finally:
        writer.close()
    return held


async def idle_connections(target: Target, n: int, hold_s: float) -> list[Held]:
    """``n`` connections that send nothing; when (if) the server closes each."""
    host, port = target.url.removeprefix("http://").split(":")
    start = time.monotonic()
    pairs = [await asyncio.open_connection(host, int(port)) for _ in range(n)]

    async def watch(reader: asyncio.StreamReader) -> Held:
        try:
            data = await asyncio.wait_for(reader.read(1024), hold_s)
        except TimeoutError:
            return Held()
        except ConnectionError as exc:
            return Held(type(exc).__name__, time.monotonic() - start)
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        return Held(line or "closed", time.monotonic() - start)

    try:
        return list(await asyncio.gather(*(watch(r) for r, _ in pairs)))
    finally:
        for _, writer in pairs:
            writer.close()


def _span(seconds: list[float]) -> str:
    low, high = min(seconds), max(seconds)
    return f" after {low:.1f} s" if high - low < 0.05 else f" after {low:.1f}-{high:.1f} s"


def _held_note(what: str, held: list[Held]) -> str:
    groups: dict[str, list[float]] = {}
    for h in held:
        groups.setdefault(h.answer, []).append(h.at_s or 0.0)
    parts = [f"{answer} ×{len(ts)}" + (_span(ts) if any(ts) else "")
             for answer, ts in groups.items()]  # fmt: skip
    return f"{what}: " + ", ".join(parts)


async def hold(
    target: Target, name: str, pid: int, session: aiohttp.ClientSession
) -> list[Outcome]:
    """A slow body and idle connections for ``HOLD_S`` while W2's clients are served."""
    async with RecordingLoad(target) as load:
        slow, idle = await asyncio.gather(
            slow_body(target, HOLD_S), idle_connections(target, IDLE_CONNECTIONS, HOLD_S)
        )
    records: list[Record] = load.records
    after = await still_healthy(session, target, pid)
    load_note = f"W2 load meanwhile: {describe_statuses(records)}"
    rows = [
        ("slow-body", "a body sent at 1 byte/s", _held_note("the slow client got", [slow])),
        ("idle-connections", f"{IDLE_CONNECTIONS} idle connections (nothing sent)",
         _held_note("the idle connections got", idle)),
    ]  # fmt: skip
    return [
        from_records(records, name=f"{name}-{key}", scenario=name,
                     fault=f"{what}, for {HOLD_S:g} s while W2's clients are served",
                     server=target.spec.command(), problems=after, notes=[note, load_note])
        for key, what, note in rows
    ]  # fmt: skip


async def run(target: Target, name: str) -> list[Outcome]:
    async with aiohttp.ClientSession() as session:
        pid = await replica_pid(session, target)
        async with session.get(f"{target.url}/info", headers=target.headers) as response:
            info = await response.json()
        outcomes = [
            await run_probe(session, target, probe, pid, name)
            for probe in probes(info, target.headers)
        ]
        outcomes += await hold(target, name, pid, session)
    return outcomes
