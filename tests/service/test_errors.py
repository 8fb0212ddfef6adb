"""Every client mistake gets a JSON error with the right status; the service stays healthy.

The app's own answers are checked in this process; Ray's router backpressure, replicas that die
or stop, and the proxy's deadline over the deployed service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from ..helpers import embed
from .conftest import ClientFactory, InProcessClient

LONG = "word " * 600


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"input": 5}, 422),
        ({"input": [1, "a"]}, 422),
        ({"input": [["a"]]}, 422),
        ({}, 422),
        ({"input": "x", "encoding_format": "hex"}, 422),
        ({"input": "x", "dimensions": 0}, 422),
        ({"input": "x", "dimensions": "ten"}, 422),
        ({"input": "x", "dimensions": 385}, 400),
        ({"input": ""}, 400),
        ({"input": ["fine", ""]}, 400),
        ({"input": []}, 400),
        ({"input": [[]]}, 400),
        ({"input": [101, 99999, 102]}, 400),
        ({"input": [101, -1, 102]}, 400),
        ({"input": ["x"] * 2049}, 413),
        ({"input": "x", "model": "gpt-4"}, 404),
    ],
)
def test_openai_client_mistakes(client: httpx.Client, body: dict, status: int) -> None:
    error = openai_error(client.post("/v1/embeddings", json=body), status)
    if error["param"] is not None:
        assert error["param"] in ("input", "encoding_format", "dimensions", "model")


def test_malformed_json(client: httpx.Client) -> None:
    error = openai_error(client.post("/v1/embeddings", content=b'{"input": ["a",'), 400)
    assert error["code"] == "invalid_json"
    tei = client.post("/embed", content=b"not json")
    assert tei.status_code == 400 and set(tei.json()) == {"error", "error_type"}


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    body = b'{"input": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    error = openai_error(client.post("/v1/embeddings", content=body), 413)
    assert error["code"] == "body_too_large"


def test_too_long_without_truncation_is_413_with_the_count(client: httpx.Client) -> None:
    response = client.post("/embed", json={"inputs": [LONG], "truncate": False})
    assert response.status_code == 413
    assert "602 tokens" in response.json()["error"]
    assert client.post("/embed", json={"inputs": [LONG]}).status_code == 200  # default: cut


def test_unknown_routes_and_methods_answer_json(client: httpx.Client) -> None:
    openai_error(client.post("/v2/nothing", json={}), 404)
    openai_error(client.get("/v1/embeddings"), 405)
    for path in ("/", "/rerank", "/predict"):  # TEI's routes answer in TEI's shape
        tei = client.get(path)
        assert tei.status_code == 405 and set(tei.json()) == {"error", "error_type"}, path


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rerank", {"query": "q", "texts": ["a"]}),
        ("/predict", {"inputs": "a"}),
    ],
)
def test_an_embedder_asked_to_score_says_what_it_is(
    client: httpx.Client, path: str, body: dict
) -> None:
    """TEI's status and error type for a route the model cannot serve (server.rs: Backend)."""
    response = client.post(path, json=body)
    assert response.status_code == 424, response.text
    error = response.json()
    assert error["error_type"] == "Backend" and "embedding model" in error["error"]
    ours = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
    assert openai_error(ours, 400)["code"] == "task_not_served"


def test_service_is_healthy_after_all_that(client: httpx.Client, minilm) -> None:
    assert client.get("/health").status_code == 200
    served = embed(client, ["still answering correctly"])
    assert abs(float(served[0] @ minilm.encode(["still answering correctly"])[0]) - 1) < 1e-4


async def copies(client: httpx.AsyncClient, body: dict, n: int) -> list[httpx.Response]:
    """``n`` copies of one request, all at once."""
    return list(await asyncio.gather(*(client.post("/v1/embeddings", json=body) for _ in range(n))))


def burst(url: str, body: dict, n: int) -> list[httpx.Response]:
    """``copies`` sent to the service at ``url``."""

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            return await copies(c, body, n)

    return asyncio.run(send())


def burst_in_process(client: InProcessClient, body: dict, n: int) -> list[httpx.Response]:
    """``copies`` sent to the in-process app, on the event loop its engine runs on."""

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url=client.base_url) as c:
            return await copies(c, body, n)

    return client.portal.call(send)


def test_queue_full_is_429_with_retry_after(make_client: ClientFactory) -> None:
    c = make_client(batching={"max_queued_tokens": 64, "batch_wait_timeout_s": 0.05})

    responses = burst_in_process(c, {"input": [LONG] * 8}, 12)
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    assert set(statuses) <= {200, 429}
    for r in responses:
        if r.status_code == 429:  # the queue's drain time, in whole seconds
            assert int(r.headers["retry-after"]) >= 1
            assert openai_error(r, 429)["code"] == "queue_full"
    assert c.get("/health").status_code == 200
    assert embed(c, ["after the burst"]).shape == (1, 384)


def test_ray_router_backpressure_is_429_with_retry_after(deploy: Callable[..., str]) -> None:
    url = deploy(max_ongoing_requests=2, max_queued_requests=1)

    responses = burst(url, {"input": [LONG] * 4}, 12)
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    assert set(statuses) <= {200, 429}
    for r in responses:
        if r.status_code == 429:  # answered by Ray's proxy, made JSON by service.proxy
            assert r.headers["retry-after"] == "1"
            openai_error(r, 429)
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/health").status_code == 200


def test_lost_replica_answers_503_json_with_retry_after(deploy: Callable[..., str]) -> None:
    """Requests in flight when their replica dies get 503 + Retry-After in JSON; then recovery."""
    import time

    import ray
    from ray import serve

    # Every request held, none refused; no cache, so the same passages all run.
    url = deploy(batching={"max_queue_wait_s": 600}, cache_mb=0)
    serve_client = serve.context._get_global_client()
    assert serve_client is not None, "Serve is not started"
    details = serve_client.get_serve_details()
    deployment = details["applications"]["embedserve"]["deployments"]["EmbeddingServer"]
    replica = ray.get_actor(deployment["replicas"][0]["actor_name"], namespace="serve")

    async def burst_and_kill() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            body = {"input": [LONG] * 8}
            load = [asyncio.create_task(c.post("/v1/embeddings", json=body)) for _ in range(6)]
            await asyncio.sleep(1.0)  # requests are queued and running in the replica
            ray.kill(replica)
            return await asyncio.gather(*load)

    responses = asyncio.run(burst_and_kill())
    failed = [r for r in responses if r.status_code != 200]
    assert failed, "killing the replica should have failed the requests it held"
    for r in failed:
        assert openai_error(r, 503)["type"] == "service_unavailable"
        assert r.headers["retry-after"] == "1"
    with httpx.Client(base_url=url, timeout=60) as c:
        deadline = time.monotonic() + 120
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the replica was not replaced"
            time.sleep(1)
        assert embed(c, ["after the replica came back"]).shape == (1, 384)


def test_a_silent_replica_fails_requests_by_their_deadline_with_504_json(
    deploy: Callable[..., str],
) -> None:
    """A replica that holds its connections but answers nothing (a stopped process, a partition)
    is Ray's blind spot: service.proxy turns the client's deadline into the proxy's timeout, so
    the client gets a JSON 504 one grace second after its deadline instead of waiting forever."""
    import os
    import signal
    import time

    url = deploy()
    with httpx.Client(base_url=url, timeout=60) as c:
        pid = c.get("/info").json()["process"]
        os.kill(pid, signal.SIGSTOP)
        try:
            headers = {"x-request-timeout-ms": "1500"}
            response = c.post("/v1/embeddings", json={"input": ["anyone?"]}, headers=headers)
            tei = c.post("/embed", json={"inputs": "anyone?"}, headers=headers)
        finally:
            os.kill(pid, signal.SIGKILL)  # Ray replaces it
        assert openai_error(response, 504)["code"] == "deadline_exceeded"
        assert response.headers["retry-after"] == "1"
        assert tei.status_code == 504 and tei.json()["error_type"] == "Overloaded"
        deadline = time.monotonic() + 120
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the stopped replica was not replaced"
            time.sleep(1)
        assert embed(c, ["after the replica came back"]).shape == (1, 384)
