"""Three models in one service, in this process: the MiniLM embedder (the default), a tiny BERT
reranker and a tiny XLM-R classifier, behind the real HTTP app and one real engine.

What several models add: a request reaches the model it names (the body's ``model`` on OpenAI
and Cohere routes, the ``x-model`` header on TEI's, the default otherwise), a route the model
cannot serve is an error naming what it does, in the route's dialect; each model has its own
batcher, so one model's flood does not hold up another's requests; and every request is
counted under the model it reached.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tokenizers import Tokenizer

from common import texts
from export.artifact import load_artifact
from service.settings import ModelEntry, ServiceSettings

from .conftest import InProcessClient, in_process

EMBEDDER, RERANKER, CLASSIFIER = "all-MiniLM-L6-v2", "reranker", "classifier"
QUERY = "How do vaccines train the immune system?"
DOCUMENTS = texts.passages()[:4]
SENTENCES = texts.sentences()[:3]
Call = tuple[str, dict[str, Any], dict[str, str]]  # path, JSON body, headers
COPIES = 3  # how many of each call are sent at once


def to(model: str) -> dict[str, str]:
    return {"x-model": model}


@pytest.fixture(scope="module")
def artifacts(
    minilm_artifact: Path, reranker_artifact: Path, classifier_artifact: Path
) -> dict[str, Path]:
    return {EMBEDDER: minilm_artifact, RERANKER: reranker_artifact, CLASSIFIER: classifier_artifact}


@pytest.fixture(scope="module")
def client(artifacts: dict[str, Path]) -> Iterator[InProcessClient]:
    models = [
        ModelEntry(artifact=artifacts[EMBEDDER]),
        ModelEntry(artifact=artifacts[RERANKER], name=RERANKER),
        ModelEntry(artifact=artifacts[CLASSIFIER], name=CLASSIFIER),
    ]
    with in_process(ServiceSettings(models=models, backend="onnxruntime", num_cpus=1)) as c:
        yield c


def test_every_model_is_listed_and_described(client: InProcessClient) -> None:
    listed = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in listed] == [EMBEDDER, RERANKER, CLASSIFIER]
    info = client.get("/info").json()
    assert info["model_id"] == EMBEDDER  # the default, as a one-model service describes itself
    described = [(m["model_id"], m["task"], m["labels"]) for m in info["models"]]
    assert described == [
        (EMBEDDER, "embedding", []),
        (RERANKER, "rerank", ["LABEL_0"]),
        (CLASSIFIER, "classify", ["negative", "neutral", "positive"]),
    ]


def test_a_request_reaches_the_model_it_names_or_the_default(client: InProcessClient) -> None:
    for model in (None, EMBEDDER):
        response = client.post("/v1/embeddings", json={"input": SENTENCES, "model": model})
        assert response.status_code == 200 and response.json()["model"] == EMBEDDER
    assert len(client.post("/embed", json={"inputs": SENTENCES}).json()[0]) == 384
    cohere = client.post(
        "/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": DOCUMENTS}
    )
    assert cohere.json()["model"] == RERANKER
    tei = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS}, headers=to(RERANKER))
    assert [r["index"] for r in tei.json()] == [r["index"] for r in cohere.json()["results"]]
    predicted = client.post("/predict", json={"inputs": "fine"}, headers=to(CLASSIFIER)).json()
    assert sorted(p["label"] for p in predicted) == ["negative", "neutral", "positive"]
    relevance = client.post("/predict", json={"inputs": [QUERY, "x"]}, headers=to(RERANKER)).json()
    assert [p["label"] for p in relevance] == ["LABEL_0"]


@pytest.mark.parametrize(
    ("path", "body", "model", "does"),
    [
        ("/v1/rerank", {"query": QUERY, "documents": DOCUMENTS}, None, "an embedding model"),
        ("/v1/embeddings", {"input": "x"}, RERANKER, "a reranker"),
        ("/v1/embeddings", {"input": "x"}, CLASSIFIER, "a classifier"),
        ("/v1/rerank", {"query": QUERY, "documents": DOCUMENTS}, CLASSIFIER, "a classifier"),
        ("/rerank", {"query": QUERY, "texts": DOCUMENTS}, None, "an embedding model"),
        ("/predict", {"inputs": "x"}, None, "an embedding model"),
        ("/embed", {"inputs": "x"}, RERANKER, "a reranker"),
        ("/embed_all", {"inputs": "x"}, CLASSIFIER, "a classifier"),
        ("/rerank", {"query": QUERY, "texts": DOCUMENTS}, CLASSIFIER, "a classifier"),
    ],
)
def test_a_task_the_model_cannot_serve_is_an_error_naming_what_it_does(
    client: InProcessClient, path: str, body: dict, model: str | None, does: str
) -> None:
    """400 on our routes (the body names the model); TEI's 424 on TEI's (the header does)."""
    tei = not path.startswith("/v1/")
    if tei:
        response = client.post(path, json=body, headers=to(model) if model else {})
        assert response.status_code == 424, response.text
        assert response.json()["error_type"] == "Backend"
        message = response.json()["error"]
    else:
        response = client.post(path, json={**body, "model": model})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "task_not_served"
        message = response.json()["error"]["message"]
    assert message.startswith(f"model {model or EMBEDDER!r} is {does}: it serves /")


def test_a_model_not_served_is_404_in_either_dialect(client: InProcessClient) -> None:
    served = f"use {EMBEDDER!r}, {RERANKER!r}, {CLASSIFIER!r}"
    openai = client.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": ["d"]})
    assert openai.status_code == 404 and openai.json()["error"]["code"] == "model_not_found"
    assert openai.json()["error"]["message"].endswith(served)
    tei = client.post("/rerank", json={"query": "q", "texts": ["d"]}, headers=to("nope"))
    assert tei.status_code == 404 and tei.json()["error"].endswith(served)


def test_each_model_scores_as_its_reference(client: InProcessClient) -> None:
    """The reranker's and the classifier's raw logits against our PyTorch reference of the
    checkpoints they were exported from (fp32 ONNX against fp32 torch)."""
    from models import load_classifier
    from tests.tiny_models import tiny_classifier_cached

    pairs = [(QUERY, d) for d in DOCUMENTS]
    reference = load_classifier(tiny_classifier_cached("bert", 1)).predict(pairs)  # (4, 1)
    body = {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}
    ranked = client.post("/rerank", json=body, headers=to(RERANKER)).json()
    served = np.array([r["score"] for r in sorted(ranked, key=lambda r: r["index"])])
    assert np.abs(served - reference[:, 0]).max() <= 1e-4
    classifier = load_classifier(tiny_classifier_cached("xlm-roberta", 3))
    body = {"inputs": [[s] for s in SENTENCES], "raw_scores": True}
    predicted = client.post("/predict", json=body, headers=to(CLASSIFIER)).json()
    by_label = np.array([[{p["label"]: p["score"] for p in row}[n] for n in classifier.labels]
                         for row in predicted])  # fmt: skip
    assert np.abs(by_label - classifier.predict(SENTENCES)).max() <= 1e-4  # (3, 3)


def every_route() -> list[Call]:
    """A request to every model route of every model (and two wrong-task ones)."""
    rerank = {"query": QUERY, "texts": DOCUMENTS, "return_text": True}
    return [
        ("/v1/embeddings", {"input": SENTENCES}, {}),
        ("/v1/embeddings", {"input": SENTENCES[0], "model": EMBEDDER, "dimensions": 8}, {}),
        ("/embed", {"inputs": SENTENCES}, {}),
        ("/embed_all", {"inputs": SENTENCES[0]}, to(EMBEDDER)),
        ("/", {"inputs": SENTENCES}, {}),
        ("/rerank", rerank, to(RERANKER)),
        ("/rerank", {**rerank, "raw_scores": True}, to(RERANKER)),
        ("/v1/rerank", {"model": RERANKER, "query": QUERY, "documents": DOCUMENTS, "top_n": 2}, {}),
        ("/predict", {"inputs": [[QUERY, DOCUMENTS[0]], [QUERY, DOCUMENTS[1]]]}, to(RERANKER)),
        ("/", rerank, to(RERANKER)),
        ("/predict", {"inputs": SENTENCES[1]}, to(CLASSIFIER)),
        ("/predict", {"inputs": [[s] for s in SENTENCES], "raw_scores": True}, to(CLASSIFIER)),
        ("/", {"inputs": SENTENCES[2]}, to(CLASSIFIER)),
        ("/rerank", rerank, {}),  # the default embedder: 424
        ("/v1/embeddings", {"input": "x", "model": CLASSIFIER}, {}),  # 400
    ]


def assert_same(got: Any, expected: Any, where: str) -> None:
    """JSON equal, numbers to 1e-5 (a batch's padding may move a float's last bits)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-5), where
    else:
        assert got == expected, where


async def send_at_once(http: httpx.AsyncClient, calls: list[Call]) -> list[httpx.Response]:
    """Every call ``COPIES`` times, all at once; copy k of call i answers at k * len(calls) + i
    (a fresh request each: gather runs a repeated coroutine object once)."""
    sent = [http.post(path, json=b, headers=h) for _ in range(COPIES) for path, b, h in calls]
    return await asyncio.gather(*sent)


def assert_answered_as_alone(
    together: list[httpx.Response], alone: list[httpx.Response], calls: list[Call]
) -> None:
    assert len(together) == COPIES * len(calls)
    for i, response in enumerate(together):
        call, expected = calls[i % len(calls)], alone[i % len(calls)]
        assert response.status_code == expected.status_code, (call, response.text)
        assert_same(response.json(), expected.json(), call[0])


def test_all_routes_of_all_models_at_once_answer_as_one_at_a_time(
    client: InProcessClient,
) -> None:
    calls = every_route()
    alone = [client.post(path, json=body, headers=headers) for path, body, headers in calls]
    assert [r.status_code for r in alone] == [200] * (len(calls) - 2) + [424, 400]

    async def at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await send_at_once(http, calls)

    assert_answered_as_alone(client.portal.call(at_once), alone, calls)


def test_a_flood_on_one_model_does_not_hold_up_another(client: InProcessClient) -> None:
    """2048 inputs of 256 token ids to the embedder (minutes of work on one core; ids, so no
    time goes to tokenizing them) while the reranker and the classifier answer: their answers
    come while the embedder still holds the whole flood."""
    flood = {"input": [[2000 + i % 50] * 256 for i in range(2048)]}

    async def scenario() -> tuple[list[httpx.Response], float]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            flooding = asyncio.create_task(http.post("/v1/embeddings", json=flood))
            while await queue_depth(http, EMBEDDER) == 0:  # checked and queued
                assert not flooding.done(), flooding.result().text
                await asyncio.sleep(0.01)
            others = await asyncio.gather(
                http.post(
                    "/rerank", json={"query": QUERY, "texts": DOCUMENTS}, headers=to(RERANKER)
                ),
                http.post("/predict", json={"inputs": "a calm day"}, headers=to(CLASSIFIER)),
            )
            still = await queue_depth(http, EMBEDDER)
            flooding.cancel()  # the client goes away: its queued inputs are dropped
            await asyncio.gather(flooding, return_exceptions=True)
            return others, still

    others, still_queued = client.portal.call(scenario)
    assert [r.status_code for r in others] == [200, 200]
    assert still_queued == 2048, "the embedder should still hold the whole flood"
    assert scrape(client.get("/metrics").text)[("queue_depth", EMBEDDER, "")] == 0


async def queue_depth(http: httpx.AsyncClient, model: str) -> float:
    return scrape((await http.get("/metrics")).text)[("queue_depth", model, "")]


def scrape(exposition: str) -> dict[tuple[str, str, str], float]:
    """embedserve's samples, buckets left out, as (name and status, model, route or task)."""
    found: dict[tuple[str, str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.startswith("embedserve_") or "le" in labels:
                continue
            name = f"{sample.name.removeprefix('embedserve_')} {labels.get('status', '')}"
            where = labels.get("route", labels.get("task", ""))
            found[name.strip(), labels.get("model", ""), where] += sample.value
    return found


def token_counts(artifact: Path, inputs: list[str] | list[tuple[str, str]]) -> int:
    """Real tokens of ``inputs`` (texts or pairs in the model's pair template, cut to the
    model's limit longest side first), counted with the artifact's tokenizer file directly."""
    loaded = load_artifact(artifact)
    assert loaded.tokenizer_path is not None
    tokenizer = Tokenizer.from_file(str(loaded.tokenizer_path))
    tokenizer.enable_truncation(loaded.config.max_seq_length, strategy="longest_first")
    tokenizer.no_padding()
    return sum(len(e.ids) for e in tokenizer.encode_batch(inputs))


def test_metrics_count_each_models_requests_inputs_and_tokens(
    client: InProcessClient, artifacts: dict[str, Path]
) -> None:
    pairs = [(QUERY, d) for d in DOCUMENTS]
    before = scrape(client.get("/metrics").text)
    for _ in range(2):
        client.post("/v1/embeddings", json={"input": SENTENCES})
    client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS}, headers=to(RERANKER))
    client.post("/predict", json={"inputs": [[s] for s in SENTENCES[:2]]}, headers=to(CLASSIFIER))
    client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})  # on the embedder: 424
    after = scrape(client.get("/metrics").text)
    delta = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    requests = {k: v for k, v in delta.items() if k[0].startswith("requests_total")}
    assert requests == {
        ("requests_total 200", EMBEDDER, "/v1/embeddings"): 2,
        ("requests_total 200", RERANKER, "/rerank"): 1,
        ("requests_total 200", CLASSIFIER, "/predict"): 1,
        ("requests_total 424", EMBEDDER, "/rerank"): 1,  # the model that could not serve it
    }
    inputs = {k[1:]: v for k, v in delta.items() if k[0] == "request_inputs_sum"}
    assert inputs == {(EMBEDDER, "embed"): 6, (RERANKER, "rerank"): 4, (CLASSIFIER, "predict"): 2}
    tokens = {k[1:]: v for k, v in delta.items() if k[0] == "input_tokens_total"}
    assert tokens == {
        (EMBEDDER, "embed"): 2 * token_counts(artifacts[EMBEDDER], SENTENCES),
        (RERANKER, "rerank"): token_counts(artifacts[RERANKER], pairs),
        (CLASSIFIER, "predict"): token_counts(artifacts[CLASSIFIER], SENTENCES[:2]),
    }
