"""Loading cross-encoders: task and labels, the loaders that refuse the other kind, heads we
cannot serve refused by name, and a folder saved by sentence-transformers' CrossEncoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common.texts import pairs
from models import (
    CheckpointError,
    SentenceEncoder,
    SequenceClassifier,
    load_classifier,
    load_encoder,
    load_pretrained,
    save_model,
)
from tests.tiny_models import tiny_checkpoint_cached, tiny_classifier_cached


def _with_config(folder: Path, tmp_path: Path, **changes: object) -> Path:
    """A copy of ``folder`` with ``changes`` made to its config.json."""
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(cfg | changes))
    return copy


def test_load_encoder_says_the_task_and_labels() -> None:
    reranker = load_encoder(tiny_classifier_cached("bert", 1))
    assert isinstance(reranker.encoder, SequenceClassifier)
    assert (reranker.task, reranker.labels) == ("rerank", ["LABEL_0"])
    classifier = load_encoder(tiny_classifier_cached("bert", 3))
    assert (classifier.task, classifier.labels) == ("classify", ["negative", "neutral", "positive"])
    assert classifier.tokenizer is not None
    sep = classifier.tokenizer.tokenize(["x"])[0][-1]  # [CLS] x [SEP]
    assert classifier.encoder.config.segment_separator == sep
    embedder = load_encoder(tiny_checkpoint_cached("bert"))
    assert isinstance(embedder.encoder, SentenceEncoder)
    assert (embedder.task, embedder.labels, embedder.encoder.config.segment_separator) == (
        "embedding",
        [],
        None,
    )


def test_each_loader_refuses_the_other_kind() -> None:
    with pytest.raises(
        CheckpointError, match=r"is a cross-encoder \(rerank\); load it with load_classifier"
    ):
        load_pretrained(tiny_classifier_cached("bert", 1))
    with pytest.raises(CheckpointError, match="is an embedder .*; load it with load_pretrained"):
        load_classifier(tiny_checkpoint_cached("bert"))


@pytest.mark.parametrize(
    ("labels", "changes"),
    [
        (3, {"problem_type": "multi_label_classification"}),
        (3, {"problem_type": "regression"}),
        (3, {"id2label": {"0": "a", "2": "c"}}),
    ],
)
def test_heads_we_would_serve_wrong_are_refused(labels: int, changes: dict, tmp_path: Path) -> None:
    folder = _with_config(tiny_classifier_cached("bert", labels), tmp_path, **changes)
    with pytest.raises(CheckpointError, match="problem_type|id2label"):
        load_classifier(folder)


def test_a_regression_head_is_a_reranker(tmp_path: Path) -> None:
    folder = _with_config(tiny_classifier_cached("bert", 1), tmp_path, problem_type="regression")
    assert load_classifier(folder).config.task == "rerank"


def test_mixed_inputs_are_refused() -> None:
    model = load_classifier(tiny_classifier_cached("bert", 3))
    with pytest.raises(ValueError, match="all texts or all"):
        model.predict(["a text", ("a", "pair")])  # type: ignore[arg-type]
    assert model.predict([]).shape == (0, 3)


def test_a_folder_saved_by_cross_encoder_loads(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    cross = CrossEncoder(str(tiny_classifier_cached("bert", 1)), device="cpu")
    cross.save(str(tmp_path / "saved"))
    few = pairs(queries=2, documents=4)
    raw = cross.predict(few, activation_fn=torch.nn.Identity())
    logits = load_classifier(tmp_path / "saved").predict(few)
    assert float(np.abs(logits[:, 0] - raw).max()) <= 1e-4


def test_a_classifier_saved_by_save_model_loads_back(tmp_path: Path) -> None:
    """Our own folder format keeps the head; label names fall back to transformers' LABEL_i."""
    original = load_classifier(tiny_classifier_cached("bert", 3))
    folder = save_model(original.classifier, tmp_path / "ours", original.source / "tokenizer.json")
    loaded = load_classifier(folder)
    assert (loaded.config.task, loaded.labels) == ("classify", ["LABEL_0", "LABEL_1", "LABEL_2"])
    few = pairs(queries=2, documents=2)
    np.testing.assert_array_equal(loaded.predict(few), original.predict(few))


def test_a_qwen3_pad_that_every_input_ends_with_is_refused(tmp_path: Path) -> None:
    """transformers' Qwen3 classifier would score the token before the trailing pad."""
    folder = tiny_classifier_cached("qwen3", 1)
    eos = json.loads((folder / "config.json").read_text())["eos_token_id"]
    with pytest.raises(CheckpointError, match="pad_token_id .* adds to every input"):
        load_classifier(_with_config(folder, tmp_path, pad_token_id=eos))
