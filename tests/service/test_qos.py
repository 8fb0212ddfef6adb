"""Quality of service over real HTTP: fair shares between requests, bounded tokenizing,
deadlines and dropped work. Asserts on order and counts, never on timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..helpers import cosine, embed
from .test_errors import openai_error


@pytest.fixture(scope="module")
def url(deploy: Callable[..., str]) -> str:
    # fp32 for exact comparisons; an idle worker waits up to a second for company, so a lone
    # request stays queued long enough for its deadline or its client to go first.
    return deploy(precision="fp32", num_cpus=2, batching={"batch_wait_timeout_s": 1.0})


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def counters(client: httpx.Client) -> dict[str, float]:
    """Dropped inputs by reason, and micro-batches run (the batch-size histogram's count)."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == "embedserve_dropped_inputs_total":
                out[s.labels["reason"]] = s.value
            elif s.name == "embedserve_batch_size_count":
                out["micro_batches"] = s.value
    return out


def test_a_small_request_sent_after_a_big_one_is_answered_first(url: str, corpus) -> None:
    passages = corpus[-48:]
    big = [passages[i % len(passages)] for i in range(96)]

    async def scenario() -> list[str]:
        order: list[str] = []
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:

            async def send(name: str, texts: list[str]) -> None:
                response = await c.post("/v1/embeddings", json={"input": texts})
                assert response.status_code == 200, response.text
                order.append(name)

            bulk = asyncio.create_task(send("big", big))
            await asyncio.sleep(0.5)  # the big request is queued and running
            await send("small", ["Is a sentence answered before the bulk is done?"])
            await bulk
        return order

    assert asyncio.run(scenario()) == ["small", "big"]


def test_a_5_mb_input_is_cut_cheaply_and_exactly(client: httpx.Client, url: str, reference) -> None:
    """Tokenizing a window of the text gives the tokens of the whole text, truncated: the vector
    matches sentence-transformers on the text's first 5,000 characters (256 tokens lie well
    inside them); a small request sent meanwhile is answered."""
    words = "The river rose slowly through the night, and by morning the bridge was closed. "
    huge = words * (5 * 1024 * 1024 // len(words))

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            big = asyncio.create_task(c.post("/v1/embeddings", json={"input": huge}))
            small = c.post("/v1/embeddings", json={"input": "and a short one"})
            return list(await asyncio.gather(big, small))

    big, small = asyncio.run(scenario())
    assert big.status_code == small.status_code == 200, big.text
    assert big.json()["usage"]["total_tokens"] == 256
    served = np.array(big.json()["data"][0]["embedding"], dtype=np.float32)
    expected = reference.encode([huge[:5000]], normalize_embeddings=True)[0]
    assert float(cosine(served, expected)) >= 0.9999


def test_an_expired_deadline_answers_504_and_never_reaches_inference(
    client: httpx.Client,
) -> None:
    before = counters(client)
    headers = {"x-request-timeout-ms": "100"}
    texts = ["queued past its deadline", "and this one too"]
    response = client.post("/v1/embeddings", json={"input": texts}, headers=headers)
    assert openai_error(response, 504)["code"] == "deadline_exceeded"
    tei = client.post("/embed", json={"inputs": "and on TEI's route"}, headers=headers)
    assert tei.status_code == 504 and set(tei.json()) == {"error", "error_type"}
    after = counters(client)
    assert after["micro_batches"] == before["micro_batches"]  # nothing ran
    assert after["deadline"] - before["deadline"] == 3
    statuses = client.get("/metrics").text
    expected = 'model="all-MiniLM-L6-v2",route="/v1/embeddings",status="504"'
    assert f"embedserve_requests_total{{{expected}}}" in statuses
    assert embed(client, ["a request without a deadline still runs"]).shape == (1, 384)


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_deadline_header_is_400(client: httpx.Client, value: str) -> None:
    response = client.post(
        "/v1/embeddings", json={"input": "x"}, headers={"x-request-timeout-ms": value}
    )
    assert openai_error(response, 400)["param"] == "x-request-timeout-ms"


def test_a_gone_clients_inputs_are_counted_as_dropped(client: httpx.Client, url: str) -> None:
    before = counters(client)
    with pytest.raises(httpx.ReadTimeout):  # the client leaves while its inputs are queued
        httpx.post(f"{url}/v1/embeddings", json={"input": ["a", "b", "c", "d"]}, timeout=0.3)
    deadline = time.monotonic() + 30
    while counters(client)["client_gone"] - before["client_gone"] < 4:
        assert time.monotonic() < deadline, "the gone client's inputs were not dropped"
        time.sleep(0.2)
    assert counters(client)["micro_batches"] == before["micro_batches"]
