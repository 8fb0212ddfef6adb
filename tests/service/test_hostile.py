"""Hostile clients: compressed bodies (bombs and corrupt streams included) and slow clients.

Bodies are decoded by ``service.bodies`` as they arrive and refused as soon as the decoded size
passes the limit (checked on the app in this process); the slow-client test needs sockets, so it
runs over the deployed service (Ray's Python proxy, uvicorn) while one client trickles its body a
byte a second and 200 connections sit idle.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from starlette.requests import Request
from starlette.types import Message

from service.bodies import read_body
from service.errors import ApiError

from ..helpers import cosine, embed

TEXTS = ["compressed bodies", "are read like plain ones"]
PLAIN = json.dumps({"input": TEXTS}).encode()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """100 MiB of zeros, gzipped to ~100 kB on the wire."""
    return gzip.compress(b"\0" * (100 * 1024 * 1024))


def multi_member(data: bytes) -> bytes:
    """Two gzip members back to back, as ``cat a.gz b.gz`` makes (RFC 1952 §2.2)."""
    return gzip.compress(data[:10]) + gzip.compress(data[10:])


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZip", gzip.compress),
        ("deflate", zlib.compress),
        ("gzip", multi_member),
        ("identity", bytes),
    ],
)
def test_compressed_bodies_embed_like_plain_ones(
    client: httpx.Client, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    plain = embed(client, TEXTS)
    headers = {"Content-Encoding": encoding}
    response = client.post("/v1/embeddings", content=compress(PLAIN), headers=headers)
    assert response.status_code == 200, response.text
    served = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
    assert cosine(served, plain).min() >= 0.9999


@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, gzip"])
def test_other_encodings_are_415_in_the_routes_dialect(client: httpx.Client, encoding: str) -> None:
    headers = {"Content-Encoding": encoding}
    openai = client.post("/v1/embeddings", content=PLAIN, headers=headers)
    assert openai.status_code == 415, openai.text
    assert openai.json()["error"]["code"] == "unsupported_encoding"
    tei = client.post("/embed", content=PLAIN, headers=headers)
    assert tei.status_code == 415 and set(tei.json()) == {"error", "error_type"}


@pytest.mark.parametrize(
    ("encoding", "content"),
    [
        ("gzip", PLAIN),  # not gzip at all
        ("gzip", gzip.compress(PLAIN)[:-6]),  # cut short
        ("gzip", gzip.compress(PLAIN)[:20]),
        ("gzip", b""),
        ("deflate", zlib.compress(PLAIN) + b"trailing"),
        ("deflate", gzip.compress(PLAIN)),  # gzip framing where zlib's is declared
    ],
)
def test_corrupt_compressed_bodies_are_400(
    client: httpx.Client, encoding: str, content: bytes
) -> None:
    response = client.post(
        "/v1/embeddings", content=content, headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_encoding"


def test_a_gzip_bomb_is_413_and_the_service_stays_healthy(
    client: httpx.Client, bomb: bytes
) -> None:
    headers = {"Content-Encoding": "gzip"}
    openai = client.post("/v1/embeddings", content=bomb, headers=headers)
    assert openai.status_code == 413, openai.text
    assert openai.json()["error"]["code"] == "body_too_large"
    for path in ("/embed_all", "/rerank", "/predict", "/"):
        tei = client.post(path, content=bomb, headers=headers)
        assert tei.status_code == 413 and set(tei.json()) == {"error", "error_type"}, path
    cohere = client.post("/v1/rerank", content=bomb, headers=headers)
    assert cohere.status_code == 413 and cohere.json()["error"]["code"] == "body_too_large"
    assert client.get("/health").status_code == 200
    assert embed(client, ["after the bomb"]).shape == (1, 384)


@pytest.mark.parametrize(
    ("body", "headers", "statuses"),
    [
        # JSON allows ids past int64; they overflowed the engine's arrays into a 500.
        ({"input": [18446744073709551615]}, {}, {400}),
        ({"input": [[101, 1e300]]}, {}, {400}),
        # JSON Schema's integers include 101.0: the document says integer, so it is taken.
        ({"input": [101.0, 7592, 102.0], "dimensions": 8.0}, {}, {200}),
        # A positive deadline too small for seconds (5e-327 s == 0.0) was refused as not positive.
        ({"input": "x"}, {"x-request-timeout-ms": "5e-324"}, {200, 504}),
    ],
)
def test_edge_values_that_were_bugs(
    client: httpx.Client, body: dict, headers: dict[str, str], statuses: set[int]
) -> None:
    response = client.post("/v1/embeddings", json=body, headers=headers)
    assert response.status_code in statuses, response.text
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "invalid_token_id"


def request_of(chunks: list[bytes], headers: dict[str, str]) -> tuple[Request, list[int]]:
    """A Starlette request whose body arrives in ``chunks``, and a counter of those read."""
    read = [0]

    async def receive() -> Message:
        index = read[0]
        read[0] += 1
        return {"type": "http.request", "body": chunks[index], "more_body": index + 1 < len(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive), read


def chunked(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_decoding_stops_at_the_limit_without_reading_the_rest_of_a_bomb(bomb: bytes) -> None:
    chunks = chunked(bomb)
    request, read = request_of(chunks, {"Content-Encoding": "gzip"})
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_body(request, 1024 * 1024))
    assert refused.value.status == 413 and refused.value.code == "body_too_large"
    assert read[0] <= 2 < len(chunks)  # 1 MiB of zeros inflates from the first ~1 kB


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_decoded_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(
    encoding: str,
) -> None:
    limit = 64 * 1024
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    exact = bytes(range(256)) * (limit // 256)
    request, _ = request_of(chunked(compress(exact), 100), {"Content-Encoding": encoding})
    assert asyncio.run(read_body(request, limit)) == exact
    request, _ = request_of(chunked(compress(exact + b"!"), 100), {"Content-Encoding": encoding})
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_body(request, limit))
    assert refused.value.status == 413


TRICKLED = 8  # bytes sent one a second: the request is in flight for ~8 s
IDLE_CONNECTIONS = 200


async def slow_and_idle_clients(url: httpx.URL) -> tuple[int, bytes, bytes]:
    """Open 200 idle connections and trickle one request's last bytes a second at a time; a
    normal client meanwhile sends requests one after another until the trickle is done.
    Returns the normal answers that came while the trickle was still sending, the trickled
    request's response, and the response to a request finally sent on an idle connection."""
    host, port = url.host, url.port
    idle = [await asyncio.open_connection(host, port) for _ in range(IDLE_CONNECTIONS)]
    body = json.dumps({"input": "sent a byte a second"}).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head + body[:-TRICKLED])
    await writer.drain()
    sending = True

    async def trickle() -> bytes:
        nonlocal sending
        for byte in body[-TRICKLED:]:
            await asyncio.sleep(1.0)  # the workload's pace, not a wait for anything
            writer.write(bytes([byte]))
            await writer.drain()
        sending = False
        return await reader.read()  # the whole response: the server closes after it

    trickled = asyncio.create_task(trickle())
    answered_meanwhile = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as normal:
        while sending:
            response = await normal.post("/v1/embeddings", json={"input": ["a normal client"]})
            assert response.status_code == 200, response.text
            answered_meanwhile += sending
    slow_response = await trickled
    writer.close()
    probe_reader, probe_writer = idle[0]
    probe_writer.write(
        f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    )
    await probe_writer.drain()
    probe_response = await asyncio.wait_for(probe_reader.read(), 30)
    for _, idle_writer in idle:
        idle_writer.close()
    return answered_meanwhile, slow_response, probe_response


def test_slow_and_idle_clients_do_not_keep_others_from_being_served(
    ray_client: httpx.Client,
) -> None:
    url = ray_client.base_url
    answered, slow_response, probe_response = asyncio.run(slow_and_idle_clients(url))
    assert answered >= 1, "no normal request was answered while the slow body was arriving"
    assert slow_response.startswith(b"HTTP/1.1 200"), slow_response[:200]
    assert b'"object":"list"' in slow_response
    assert probe_response.startswith(b"HTTP/1.1 200"), probe_response[:200]
    assert ray_client.get("/health").status_code == 200
