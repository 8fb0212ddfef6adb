"""Every family's cross-encoder against transformers' ``*ForSequenceClassification`` and
sentence-transformers' ``CrossEncoder``, on the same tiny random checkpoint and real pairs.

The pairs are real (query, document) texts, short and long documents mixed, so batches are
padding-heavy and documents longer than the 128-token limit are cut. Raw logits must agree
within 1e-4 in fp32. The default tier runs BERT (1 and 3 labels) and XLM-R (3 labels); every
other (kind, labels) is ``slow``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from common.texts import pairs
from models import ClassifierModel, load_classifier
from tests.tiny_models import KINDS, tiny_classifier_cached

MAX_ABS = 1e-4
FAST = {("bert", 1), ("bert", 3), ("xlm-roberta", 3)}
CASES = [
    pytest.param(kind, n, marks=() if (kind, n) in FAST else pytest.mark.slow, id=f"{kind}-{n}")
    for kind in KINDS
    for n in (1, 3)
]


@functools.cache
def _pairs() -> list[tuple[str, str]]:
    """32 pairs: 4 queries, each with passages (~250 tokens: cut) and sentences alternating."""
    return pairs(queries=4, documents=8)


@functools.cache
def _ours(kind: str, num_labels: int) -> tuple[ClassifierModel, np.ndarray]:
    model = load_classifier(tiny_classifier_cached(kind, num_labels))
    return model, model.predict(_pairs(), batch_size=8)


@pytest.mark.parametrize(("kind", "num_labels"), CASES)
@torch.no_grad()
def test_logits_match_transformers(kind: str, num_labels: int) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_classifier_cached(kind, num_labels)
    hf = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))  # Qwen3's pads on the left
    queries, documents = ([*side] for side in zip(*_pairs(), strict=True))
    inputs = tokenizer(queries, documents, truncation=True, padding=True, return_tensors="pt")
    assert inputs["attention_mask"].sum(dim=1).max() == 128, "no document was cut"
    assert (inputs["attention_mask"] == 0).float().mean() > 0.2, "batches barely pad"
    reference = hf(**inputs).logits.numpy()  # (n, L)
    ours, logits = _ours(kind, num_labels)
    assert logits.shape == reference.shape == (len(_pairs()), num_labels)
    assert float(np.abs(logits - reference).max()) <= MAX_ABS
    assert reference.std() > 0.1  # the scores differ between pairs: the check can fail
    assert ours.labels == [hf.config.id2label[i] for i in range(num_labels)]


@pytest.mark.parametrize(("kind", "num_labels"), [("bert", 1), ("bert", 3), ("xlm-roberta", 3)])
def test_logits_and_ids_match_cross_encoder(kind: str, num_labels: int) -> None:
    from sentence_transformers import CrossEncoder

    folder = tiny_classifier_cached(kind, num_labels)
    cross = CrossEncoder(str(folder), device="cpu")
    raw = cross.predict(_pairs(), batch_size=8, activation_fn=torch.nn.Identity())
    ours, logits = _ours(kind, num_labels)
    assert float(np.abs(logits - np.asarray(raw).reshape(logits.shape)).max()) <= MAX_ABS
    theirs = [
        cross.tokenizer(query, document, truncation=True)["input_ids"]
        for query, document in _pairs()
    ]
    assert ours.tokenizer.tokenize_pairs(_pairs()) == theirs


@torch.no_grad()
def test_single_texts_match_transformers() -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_classifier_cached("bert", 3)
    texts = [query for query, _ in _pairs()[::8]] + [document for _, document in _pairs()[:2]]
    hf = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    inputs = AutoTokenizer.from_pretrained(str(folder))(
        texts, truncation=True, padding=True, return_tensors="pt"
    )
    reference = hf(**inputs).logits.numpy()
    ours, _ = _ours("bert", 3)
    assert float(np.abs(ours.predict(texts) - reference).max()) <= MAX_ABS
