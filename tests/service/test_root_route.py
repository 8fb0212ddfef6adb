"""TEI's ``POST /``: the addressed model's own route (embed, rerank or predict), which is what
Hugging Face's ``InferenceClient(model=URL)`` posts to; tried here with that real client.

The client speaks ``httpx2`` (huggingface_hub ≥ 1.0), so a tiny transport hands its requests to
the in-process app's client: everything above the socket is the real client's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.utils import _http

from common import texts

from .conftest import CLASSIFIER, EMBEDDER, RERANKER, graph_logits

SENTENCE = texts.sentences()[0]
ATOL = 1e-4


class InProcessTransport(httpx2.BaseTransport):
    """An ``httpx2`` transport that sends each request through an httpx client of the app."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        answer = self.client.request(
            request.method, request.url.raw_path.decode(), content=request.read(),
            headers=[(k, v) for k, v in request.headers.items() if k.lower() != "host"],
        )  # fmt: skip
        return httpx2.Response(
            answer.status_code, headers=answer.headers.raw, content=answer.content
        )


@pytest.fixture
def hf_client(scorers: httpx.Client) -> Iterator[type[InferenceClient]]:
    """InferenceClient with huggingface_hub's shared HTTP session reaching the app; the
    library's own session is restored afterwards."""
    _http.set_client_factory(lambda: httpx2.Client(transport=InProcessTransport(scorers)))
    try:
        yield InferenceClient
    finally:
        _http.set_client_factory(_http.default_client_factory)


@pytest.mark.parametrize(
    ("model", "body", "route"),
    [
        (EMBEDDER, {"inputs": [SENTENCE]}, "/embed"),
        (RERANKER, {"query": SENTENCE, "texts": ["a", "b"]}, "/rerank"),
        (CLASSIFIER, {"inputs": [[SENTENCE], ["a", "b"]]}, "/predict"),
    ],
)
def test_root_answers_as_the_models_own_route(
    scorers: httpx.Client, model: str, body: dict, route: str
) -> None:
    headers = {"x-model": model}
    own = scorers.post(route, json=body, headers=headers)
    root = scorers.post("/", json=body, headers=headers)
    assert root.status_code == own.status_code == 200, root.text
    if route == "/embed":  # the same vectors, though maybe batched differently
        np.testing.assert_allclose(root.json(), own.json(), atol=1e-6)
    else:
        assert root.json() == own.json()


def test_root_without_a_header_is_the_default_models_route(scorers: httpx.Client) -> None:
    body = {"query": SENTENCE, "texts": ["a", "b"]}
    assert scorers.post("/", json=body).json() == scorers.post("/rerank", json=body).json()
    wrong = scorers.post("/", json={"inputs": "a"})  # /embed's body to a reranker
    assert wrong.status_code == 422 and set(wrong.json()) == {"error", "error_type"}
    unknown = scorers.post("/", json=body, headers={"x-model": "nope"})
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "error_type"}


def test_hugging_face_inference_client(
    hf_client: type[InferenceClient], scorers: httpx.Client, classifier_artifact: Path
) -> None:
    """``feature_extraction`` posts ``{"inputs", ...}`` flat and gets an ``(1, D)`` array;
    ``text_classification`` posts ``{"inputs", "parameters"}`` and, TEI answering one input
    with a flat list of predictions, gets its best one."""
    embedded = hf_client(model="http://testserver", headers={"x-model": EMBEDDER})
    vectors = embedded.feature_extraction(SENTENCE)
    expected = scorers.post("/embed", json={"inputs": SENTENCE}, headers={"x-model": EMBEDDER})
    np.testing.assert_allclose(vectors, np.array(expected.json()), atol=1e-6)
    assert vectors.shape == (1, 384)

    classify = hf_client(model="http://testserver", headers={"x-model": CLASSIFIER})
    best = classify.text_classification(SENTENCE)
    logits = graph_logits(classifier_artifact, [SENTENCE])[0]  # (3,)
    probabilities = np.exp(logits) / np.exp(logits).sum()
    labels = ["negative", "neutral", "positive"]
    assert best.label == labels[int(probabilities.argmax())]
    assert abs(best.score - float(probabilities.max())) <= ATOL
