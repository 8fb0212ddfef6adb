"""TEI's ``/predict`` over HTTP: every input shape TEI deserialises (a text, a pair, ``[text]``,
a batch of those), scores as TEI computes them (softmax over labels, a sigmoid for one label,
logits with ``raw_scores``), held to the exported graph through ONNX Runtime and to our
PyTorch ``SequenceClassifier``; and every way to get it wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from common import texts
from common.arrays import sigmoid, softmax

from .conftest import CLASSIFIER, EMBEDDER, RERANKER, graph_logits, reference_logits

LABELS = ["negative", "neutral", "positive"]
SENTENCES = texts.sentences()[:6]
PAIRS = texts.pairs(queries=3, documents=2)
ATOL = 1e-4


def predict(client: httpx.Client, inputs: Any, model: str = CLASSIFIER, **extra: Any) -> Any:
    response = client.post("/predict", json={"inputs": inputs, **extra}, headers={"x-model": model})
    assert response.status_code == 200, response.text
    return response.json()


def by_label(predictions: list[dict], labels: list[str]) -> np.ndarray:
    scores = {p["label"]: p["score"] for p in predictions}
    assert set(scores) == set(labels)
    return np.array([scores[label] for label in labels])


def test_batch_scores_are_the_graphs_softmax_and_the_models(
    scorers: httpx.Client, classifier_artifact: Path
) -> None:
    graph = graph_logits(classifier_artifact, [*SENTENCES, *PAIRS])  # (n, 3)
    model = np.concatenate(
        [reference_logits("xlm-roberta", 3, SENTENCES), reference_logits("xlm-roberta", 3, PAIRS)]
    )
    np.testing.assert_allclose(graph, model, atol=ATOL)
    batch = [[s] for s in SENTENCES] + [list(p) for p in PAIRS]
    raw = predict(scorers, batch, raw_scores=True)
    scored = predict(scorers, batch)
    assert len(raw) == len(scored) == len(batch)
    assert np.abs(np.stack([by_label(p, LABELS) for p in raw]) - graph).max() <= ATOL
    probabilities = np.stack([by_label(p, LABELS) for p in scored])
    assert np.abs(probabilities - softmax(graph)).max() <= ATOL
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    for predictions in scored:
        assert [p["score"] for p in predictions] == sorted(
            (p["score"] for p in predictions), reverse=True
        )


def test_single_inputs_answer_one_list_and_a_batch_a_list_of_lists(scorers: httpx.Client) -> None:
    text, pair = SENTENCES[0], list(PAIRS[0])
    alone = predict(scorers, text)
    assert isinstance(alone[0], dict) and len(alone) == len(LABELS)
    assert predict(scorers, [text]) == alone  # ONE input of one text, as TEI reads it
    as_pair = predict(scorers, pair)
    assert isinstance(as_pair[0], dict) and as_pair != alone
    assert predict(scorers, [[text], pair]) == [alone, as_pair]
    assert predict(scorers, [[text]]) == [alone]


def test_a_reranker_predicts_a_sigmoid_for_its_one_label(
    scorers: httpx.Client, reranker_artifact: Path
) -> None:
    pair = PAIRS[0]
    [prediction] = predict(scorers, list(pair), model=RERANKER)
    logit = graph_logits(reranker_artifact, [pair])[0, 0]
    assert prediction["label"] == "LABEL_0"
    assert abs(prediction["score"] - float(sigmoid(np.array(logit)))) <= ATOL


@pytest.mark.parametrize(
    ("inputs", "model", "status", "says"),
    [
        (["a", "b", "c"], CLASSIFIER, 422, "inputs"),  # three texts are not one input
        ([["a", "b", "c"]], CLASSIFIER, 422, "inputs"),
        (["a", ["b"]], CLASSIFIER, 422, "inputs"),  # TEI: a string first means one input
        ([], CLASSIFIER, 422, "inputs"),
        ([[]], CLASSIFIER, 422, "inputs"),
        ("", CLASSIFIER, 400, "input[0]"),
        ([["a"], ["b", ""]], CLASSIFIER, 400, "input[1]"),
        ([[1, 2]], CLASSIFIER, 422, "inputs"),
        ([["a"]] * 2049, CLASSIFIER, 413, "2049 inputs"),
        ("a", EMBEDDER, 424, "embedding model"),
        ("a", "no-such-model", 404, "not served"),
    ],
)
def test_mistakes_in_teis_dialect(
    scorers: httpx.Client, inputs: Any, model: str, status: int, says: str
) -> None:
    response = scorers.post("/predict", json={"inputs": inputs}, headers={"x-model": model})
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "error_type"} and says in error["error"], error


def test_truncate_false_refuses_a_long_input(scorers: httpx.Client) -> None:
    long = " ".join([texts.passages()[0]] * 5)
    body = {"inputs": [["fine"], [long, "x"]], "truncate": False}
    response = scorers.post("/predict", json=body, headers={"x-model": CLASSIFIER})
    assert response.status_code == 413 and "input[1] has" in response.json()["error"]
