"""Cross-encoders and classifiers export to artifacts that score pairs as their references do.

Tiny random ``<Arch>ForSequenceClassification`` checkpoints (``tests.tiny_models``) go through
the export; ONNX Runtime's logits of the artifact on real (query, document) pairs must match our
``SequenceClassifier`` and transformers' own model within 1e-4. BERT with one label (a reranker)
and XLM-R with three (a classifier) are the suite's session fixtures; the other kinds export in
the slow tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from common import texts
from export import ExportError, load_artifact
from export.artifact import LOGITS, OUTPUT_NAMES, ServingConfig
from export.bf16 import native_bf16_reason
from export.options import ExportOptions
from export.parity import score_pairs
from export.pipeline import export_model
from models import Tokenizer, load_classifier
from tests.tiny_models import tiny_classifier_cached

EXACT = 1e-4  # max abs logit difference, fp32 graph against PyTorch (ours and transformers')
# (fixture, kind, task, labels) of the two artifacts the suite exports once per session.
ARTIFACTS = [
    ("reranker_artifact", "bert", "rerank", ["LABEL_0"]),
    ("classifier_artifact", "xlm-roberta", "classify", ["negative", "neutral", "positive"]),
]


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    return texts.pairs()


def transformers_logits(folder: Path, pairs: list[tuple[str, str]], max_length: int) -> np.ndarray:
    """transformers' own tokenizer and model: the reference a cross-encoder user knows."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    queries, documents = (list(side) for side in zip(*pairs, strict=True))
    with torch.inference_mode():
        batch = tokenizer(
            queries,
            documents,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return model(**batch).logits.float().numpy()  # (n, num_labels)


def artifact_logits(folder: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """ONNX Runtime on the artifact, ids from our pair tokenizer (as the service will run it)."""
    artifact = load_artifact(folder)
    config = artifact.config
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length, config.pad_token_id)
    session = ort.InferenceSession(str(artifact.variant()), providers=["CPUExecutionProvider"])
    return score_pairs(session, tokenizer, pairs)


def check_against_references(
    artifact: Path, kind: str, num_labels: int, pairs: list[tuple[str, str]]
) -> dict[str, float]:
    """Max abs logit difference of the artifact to ours and to transformers', both ≤ EXACT."""
    folder = tiny_classifier_cached(kind, num_labels)
    graph = artifact_logits(artifact, pairs)
    assert graph.shape == (len(pairs), num_labels)
    ours = load_classifier(folder).predict(pairs)
    max_length = load_artifact(artifact).config.max_seq_length
    theirs = transformers_logits(folder, pairs, max_length)
    diffs = {
        "ours": float(np.abs(graph - ours).max()),
        "transformers": float(np.abs(graph - theirs).max()),
    }
    assert max(diffs.values()) <= EXACT, diffs
    # Random heads still tell pairs apart: a graph that ignored its input would pass the above
    # only if every reference did too.
    assert np.ptp(graph[:, 0]) > 10 * EXACT
    return diffs


@pytest.mark.parametrize(("fixture", "kind", "task", "labels"), ARTIFACTS)
def test_classifier_artifact_records_its_task_and_scores_like_the_references(
    fixture: str,
    kind: str,
    task: str,
    labels: list[str],
    pairs: list[tuple[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    folder: Path = request.getfixturevalue(fixture)
    artifact = load_artifact(folder)
    manifest = artifact.manifest
    assert (manifest["model"]["task"], manifest["model"]["labels"]) == (task, labels)

    config = artifact.config
    assert (config.task, config.labels, config.dimension) == (task, labels, len(labels))
    assert config.output_names == (LOGITS,)
    assert not config.normalize and config.bf16_min_cosine is None
    assert [o["name"] for o in manifest["outputs"]] == [LOGITS]
    assert manifest["outputs"][0]["shape"] == ["batch", len(labels)]

    parity = manifest["validation"]["parity"]
    assert parity["passed"] and parity["max_abs_logits"] <= parity["atol"], parity
    assert "min_cosine_sentence_embedding" not in parity
    assert {c["padding"] for c in parity["cases"]} == {"left", "right"}

    check_against_references(folder, kind, len(labels), pairs)

    bf16 = manifest["extras"].get("bf16")
    if native_bf16_reason() is None:
        assert bf16 is not None and bf16["pairs"] == len(pairs)
        assert config.bf16_max_abs_score == bf16["max_abs_score"]
        # Scores are probabilities: bf16 moves them, but not across the range.
        assert 0 <= bf16["max_abs_score"] < 0.1 and bf16["max_abs_logit"] >= 0, bf16
    else:
        assert bf16 is None and config.bf16_max_abs_score is None


@pytest.mark.parametrize(
    "flags", [{"optimize": True}, {"quantize": "int8"}], ids=["optimize", "quantize"]
)
def test_optimize_and_quantize_are_refused_for_a_classifier(
    flags: dict[str, Any], tmp_path: Path
) -> None:
    folder = tiny_classifier_cached("bert", 1)
    output = tmp_path / "artifact"
    with pytest.raises(ExportError, match="for embedding models; this is a rerank model"):
        export_model(ExportOptions(model=str(folder), output=output, **flags))
    assert not output.exists()


EMBEDDER = ServingConfig(
    model_name="m",
    dimension=32,
    max_seq_length=48,
    pooling="mean",
    normalize=True,
    pad_token_id=0,
    vocab_size=100,
    attention="math",
    precision="fp32",
    tokenizer=None,
)


def test_a_serving_config_from_before_tasks_loads_as_an_embedder() -> None:
    data = EMBEDDER.to_dict()
    for key in ("task", "labels", "bf16_max_abs_score"):
        data.pop(key)
    config = ServingConfig.from_dict(data)
    assert (config.task, config.labels, config.bf16_max_abs_score) == ("embedding", [], None)
    assert config.output_names == OUTPUT_NAMES


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "summarize"}, "task 'summarize' is not one of"),
        ({"task": "classify", "labels": ["a", "b"], "dimension": 3}, "2 labels for 3 logits"),
        ({"task": "rerank", "labels": [0], "dimension": 1}, "labels must be a list of strings"),
        ({"task": "rerank", "labels": ["LABEL_0"], "dimension": 1}, "a rerank artifact has"),
    ],
)
def test_a_serving_config_with_a_wrong_task_is_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        ServingConfig.from_dict({**EMBEDDER.to_dict(), **change})


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "num_labels"), [("mpnet", 1), ("modernbert", 2), ("qwen3", 1)])
def test_other_kinds_export_with_parity(
    kind: str, num_labels: int, pairs: list[tuple[str, str]], tmp_path: Path
) -> None:
    folder = tiny_classifier_cached(kind, num_labels)
    manifest = export_model(ExportOptions(model=str(folder), output=tmp_path / "a")).manifest
    parity = manifest["validation"]["parity"]
    assert parity["passed"] and {c["padding"] for c in parity["cases"]} == {"left", "right"}
    check_against_references(tmp_path / "a", kind, num_labels, pairs)
