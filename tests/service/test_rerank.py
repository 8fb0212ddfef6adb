"""Reranking over HTTP: TEI's ``/rerank`` and the Cohere/Jina-style ``/v1/rerank`` on a tiny
random BERT cross-encoder, held to the exported graph through ONNX Runtime, to our PyTorch
``SequenceClassifier`` and (for truncation) to sentence-transformers' ``CrossEncoder``.

The app (``scorers``) serves the reranker as its default model beside a classifier and MiniLM,
so every route's wrong-model answer is tested on the same app.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from common import texts
from common.arrays import sigmoid

from .conftest import CLASSIFIER, EMBEDDER, graph_logits, reference_logits

PAIRS = texts.pairs(queries=2, documents=8)
QUERY = PAIRS[0][0]
DOCUMENTS = [document for query, document in PAIRS if query == QUERY]
ATOL = 1e-4


def rerank(client: httpx.Client, body: dict, model: str | None = None) -> httpx.Response:
    headers = {} if model is None else {"x-model": model}
    return client.post("/rerank", json=body, headers=headers)


def scores_by_index(ranks: list[dict]) -> np.ndarray:
    return np.array([r["score"] for r in sorted(ranks, key=lambda r: r["index"])])


def test_scores_are_the_graphs_logits_and_the_models(
    scorers: httpx.Client, reranker_artifact: Path
) -> None:
    graph = graph_logits(reranker_artifact, PAIRS)[:, 0]  # (n,)
    np.testing.assert_allclose(graph, reference_logits("bert", 1, PAIRS)[:, 0], atol=ATOL)
    raw, scored = [], []
    for query in dict(PAIRS):
        documents = [d for q, d in PAIRS if q == query]
        for raw_scores, into in ((True, raw), (False, scored)):
            body = {"query": query, "texts": documents, "raw_scores": raw_scores}
            response = rerank(scorers, body)
            assert response.status_code == 200, response.text
            into.append(scores_by_index(response.json()))
    assert np.abs(np.concatenate(raw) - graph).max() <= ATOL
    assert np.abs(np.concatenate(scored) - sigmoid(graph)).max() <= ATOL


def test_ranks_are_best_first_with_text_only_when_asked(scorers: httpx.Client) -> None:
    plain = rerank(scorers, {"query": QUERY, "texts": DOCUMENTS}).json()
    assert sorted(r["index"] for r in plain) == list(range(len(DOCUMENTS)))
    assert [r["score"] for r in plain] == sorted((r["score"] for r in plain), reverse=True)
    assert all(set(r) == {"index", "score"} and 0 < r["score"] < 1 for r in plain)
    with_text = rerank(scorers, {"query": QUERY, "texts": DOCUMENTS, "return_text": True}).json()
    assert [r["index"] for r in with_text] == [r["index"] for r in plain]
    assert all(r["text"] == DOCUMENTS[r["index"]] for r in with_text)


def test_cohere_shape_top_n_documents_and_usage(
    scorers: httpx.Client, reranker_artifact: Path
) -> None:
    documents = [DOCUMENTS[0], {"text": DOCUMENTS[1]}, *DOCUMENTS[2:]]
    body = {"model": "reranker", "query": QUERY, "documents": documents}
    full = scorers.post("/v1/rerank", json=body)
    assert full.status_code == 200, full.text
    answer = full.json()
    assert set(answer) == {"results", "model", "usage"} and answer["model"] == "reranker"
    results = answer["results"]
    graph = sigmoid(graph_logits(reranker_artifact, [(QUERY, d) for d in DOCUMENTS])[:, 0])
    order = [r["index"] for r in results]
    assert sorted(order) == list(range(len(DOCUMENTS))) and "document" not in results[0]
    assert np.abs(np.array([r["relevance_score"] for r in results]) - graph[order]).max() <= ATOL
    tokens = int(full.headers["x-total-tokens"])
    assert answer["usage"] == {"total_tokens": tokens} and tokens > len(DOCUMENTS) * 10

    top = scorers.post("/v1/rerank", json={**body, "top_n": 3, "return_documents": True}).json()
    assert [r["index"] for r in top["results"]] == order[:3]
    assert all(r["document"] == {"text": DOCUMENTS[r["index"]]} for r in top["results"])
    everything = scorers.post("/v1/rerank", json={**body, "top_n": 100}).json()["results"]
    assert [r["index"] for r in everything] == order


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_long_document_is_cut_as_the_cross_encoder_cuts_it(
    scorers: httpx.Client, side: str
) -> None:
    """A passage repeated past 1000 tokens loses tokens from the document, not the query, on
    the side asked, and scores as sentence-transformers' CrossEncoder scores the same pair."""
    from sentence_transformers import CrossEncoder
    from torch.nn import Identity

    from tests.tiny_models import tiny_classifier_cached

    long = " ".join([texts.passages()[0]] * 5)
    encoder = CrossEncoder(str(tiny_classifier_cached("bert", 1)), device="cpu")
    encoder.tokenizer.truncation_side = side
    expected = encoder.predict([(QUERY, long)], activation_fn=Identity())
    body = {"query": QUERY, "texts": [long], "raw_scores": True, "truncation_direction": side}
    [rank] = rerank(scorers, body).json()
    assert abs(rank["score"] - float(expected[0])) <= ATOL


def test_truncate_false_refuses_a_long_document_naming_it(scorers: httpx.Client) -> None:
    long = " ".join([texts.passages()[0]] * 5)
    body = {"query": QUERY, "texts": ["short", long], "truncate": False}
    response = rerank(scorers, body)
    assert response.status_code == 413, response.text
    error = response.json()
    assert error["error_type"] == "Validation"
    assert "input[1] has" in error["error"] and "tokens" in error["error"]


@pytest.mark.parametrize(
    ("path", "body", "model", "status", "says"),
    [
        ("/rerank", {"query": "q", "texts": ["a"]}, EMBEDDER, 424, "embedding model"),
        ("/rerank", {"query": "q", "texts": ["a"]}, CLASSIFIER, 424, "classifier"),
        ("/rerank", {"query": "q", "texts": []}, None, 400, "texts"),
        ("/rerank", {"query": "", "texts": ["a"]}, None, 400, "empty"),
        ("/rerank", {"query": "q", "texts": ["a", ""]}, None, 400, "input[1]"),
        ("/rerank", {"query": "q", "texts": [1, 2]}, None, 422, "texts"),
        ("/rerank", {"query": "q", "texts": ["a"]}, "no-such-model", 404, "not served"),
        ("/rerank", {"query": "q", "texts": ["a"] * 2049}, None, 413, "2049 inputs"),
        ("/embed", {"inputs": "a"}, None, 424, "reranker"),
    ],
)
def test_tei_mistakes_in_teis_dialect(
    scorers: httpx.Client, path: str, body: dict, model: str | None, status: int, says: str
) -> None:
    headers = {} if model is None else {"x-model": model}
    response = scorers.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "error_type"} and says in error["error"], error
    if status == 424:
        assert error["error_type"] == "Backend"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/rerank", {"model": EMBEDDER, "query": "q", "documents": ["a"]}, 400,
         "task_not_served"),
        ("/v1/rerank", {"model": CLASSIFIER, "query": "q", "documents": ["a"]}, 400,
         "task_not_served"),
        ("/v1/embeddings", {"model": "reranker", "input": "a"}, 400, "task_not_served"),
        ("/v1/rerank", {"query": "q", "documents": []}, 400, "empty_input"),
        ("/v1/rerank", {"query": "q", "documents": [{"text": ""}]}, 400, "empty_input"),
        ("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, 422, "invalid_value"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "invalid_value"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": -2}, 422, "invalid_value"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": "2"}, 422, "invalid_value"),
        ("/v1/rerank", {"model": "gpt-4", "query": "q", "documents": ["a"]}, 404,
         "model_not_found"),
    ],
)  # fmt: skip
def test_cohere_route_mistakes_in_our_dialect(
    scorers: httpx.Client, path: str, body: dict, status: int, code: str
) -> None:
    response = scorers.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if code == "task_not_served":
        assert body["model"] in response.json()["error"]["message"]


def test_a_whole_number_top_n_is_an_integer(scorers: httpx.Client) -> None:
    body = {"query": QUERY, "documents": DOCUMENTS, "top_n": 2.0}
    assert len(scorers.post("/v1/rerank", json=body).json()["results"]) == 2


def requests_total(client: httpx.Client, model: str, route: str, status: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"model": model, "route": route, "status": status}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "embedserve_requests":
            return sum(s.value for s in family.samples if s.labels == wanted)
    return 0.0


def test_request_metrics_name_the_model_that_answered(scorers: httpx.Client) -> None:
    counts = [
        ("reranker", "/rerank", "200"),
        ("classifier", "/predict", "200"),
        ("minilm", "/rerank", "424"),
        ("", "/rerank", "422"),  # a body that never reached a model
    ]
    before = [requests_total(scorers, *labels) for labels in counts]
    body = {"query": "q", "texts": ["a"]}
    for _ in range(3):
        assert rerank(scorers, body).status_code == 200
        predicted = scorers.post("/predict", json={"inputs": "a"}, headers={"x-model": CLASSIFIER})
        assert predicted.status_code == 200
        assert rerank(scorers, body, EMBEDDER).status_code == 424
        assert rerank(scorers, {"query": 1}).status_code == 422
    after = [requests_total(scorers, *labels) for labels in counts]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3, 3, 3]
