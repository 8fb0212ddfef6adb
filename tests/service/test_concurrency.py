"""Batching over real HTTP: invariance, many concurrent clients, batch sizes, runtime limits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..helpers import cosine, embed


@pytest.fixture(scope="module")
def url(deploy: Callable[..., str]) -> str:
    # fp32, so batch-composition invariance can be held to 1e-5; two CPUs, so two streams.
    # Bursts of 64 clients are admitted whatever this machine's speed: admission is test_qos's.
    # No repeated-input cache: these tests send the same inputs again to watch them batch.
    batching = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "max_queue_wait_s": 600}
    return deploy(precision="fp32", num_cpus=2, batching=batching, cache_mb=0)


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def histogram(client: httpx.Client, name: str) -> dict[str, float]:
    """Cumulative bucket counts of one histogram, by their upper bound."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    raise AssertionError(f"{name} not exposed")


def test_vector_does_not_depend_on_batch_company(client: httpx.Client, corpus) -> None:
    backend = client.get("/info").json()["backend"]
    assert (backend["precision"], backend["streams"], backend["whole_for_lone_inputs"]) == (
        "fp32",
        2,
        True,
    )
    text = "Is the vector of a sentence the same whoever it is batched with?"
    alone = embed(client, [text])[0]
    company = random.Random(0).sample(corpus, 31)  # short and long texts mixed
    batch = embed(client, [*company[:13], text, *company[13:]])
    assert np.abs(batch[13] - alone).max() <= 1e-5


async def _client_job(url: str, texts: list[str]) -> np.ndarray:
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        response = await c.post("/v1/embeddings", json={"input": texts})
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def test_64_concurrent_clients_get_their_own_answers_in_order(
    url: str, client: httpx.Client, minilm, corpus
) -> None:
    pool = corpus[:120] + corpus[-8:]  # sentences and a few long passages
    reference = minilm.encode(pool)
    before = histogram(client, "embedserve_batch_size")
    rng = random.Random(1)
    jobs = [rng.sample(range(len(pool)), rng.randint(1, 24)) for _ in range(64)]

    async def run_all() -> list[np.ndarray]:
        return await asyncio.gather(*(_client_job(url, [pool[i] for i in job]) for job in jobs))

    answers = asyncio.run(run_all())
    for job, served in zip(jobs, answers, strict=True):
        assert served.shape == (len(job), 384)
        assert cosine(served, reference[job]).min() >= 0.9999
    after = histogram(client, "embedserve_batch_size")
    batches = after["+Inf"] - before["+Inf"]
    singles = after["1.0"] - before["1.0"]
    assert batches < sum(len(j) for j in jobs)  # inputs were grouped
    assert singles < batches


def test_batches_reach_the_configured_size_and_no_more(url: str, client: httpx.Client) -> None:
    before = histogram(client, "embedserve_batch_size")
    text = "Identical inputs have equal lengths, so a gathered batch runs as one."

    async def run_all() -> None:
        await asyncio.gather(*(_client_job(url, [text]) for _ in range(48)))

    asyncio.run(run_all())
    after = histogram(client, "embedserve_batch_size")
    count = after["+Inf"] - before["+Inf"]
    at_most_4 = after["4.0"] - before["4.0"]
    at_most_8 = after["8.0"] - before["8.0"]
    assert at_most_8 == count, "a batch went past max_batch_size=8"
    assert at_most_4 < count, "no batch grew past 4: something caps batches below the setting"


def test_inputs_arriving_while_the_worker_is_busy_run_together(
    url: str, client: httpx.Client, corpus
) -> None:
    """Eight passages keep both streams busy; four short requests that arrive one by one
    meanwhile must run as one batch of 8 when a stream frees, not as four batches of 2."""
    passages = corpus[-8:]
    short = [[101, *([2023] * 10), 102]] * 2  # 12 tokens each: one batch of 8 pads to 96 tokens
    before = histogram(client, "embedserve_batch_tokens")

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            busy = asyncio.create_task(c.post("/embed", json={"inputs": passages}))
            await asyncio.sleep(0.1)
            shorts = []
            for _ in range(4):
                shorts.append(asyncio.create_task(c.post("/v1/embeddings", json={"input": short})))
                await asyncio.sleep(0.03)
            assert not busy.done(), "the long job ended too soon to test"
            responses = await asyncio.gather(busy, *shorts)
            assert all(r.status_code == 200 for r in responses)

    asyncio.run(scenario())
    after = histogram(client, "embedserve_batch_tokens")
    alone = (after["64.0"] - after["16.0"]) - (before["64.0"] - before["16.0"])
    together = (after["128.0"] - after["64.0"]) - (before["128.0"] - before["64.0"])
    assert alone == 0, f"{alone} short batches ran on their own instead of together"
    assert together == 1


def test_health_stays_200_under_load(url: str, corpus) -> None:
    passages = corpus[-8:]

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            load = [
                asyncio.create_task(c.post("/embed", json={"inputs": passages})) for _ in range(8)
            ]
            await asyncio.sleep(0.3)  # the queue is full of long inputs now
            health = [(await c.get("/health", timeout=10)).status_code for _ in range(3)]
            # Health answered without waiting behind the queued work.
            assert not all(task.done() for task in load)
            assert all(r.status_code == 200 for r in await asyncio.gather(*load))
            return health

    assert asyncio.run(scenario()) == [200, 200, 200]
