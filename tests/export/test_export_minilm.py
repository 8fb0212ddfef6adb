"""all-MiniLM-L6-v2 exported and run by ONNX Runtime matches sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common.arrays import encode_batches, normalize_rows
from common.texts import passages
from export import load_artifact
from export.artifact import INPUT_NAMES, OUTPUT_NAMES
from models import Tokenizer


def ort_embeddings(folder: Path, texts: list[str], batch_size: int) -> np.ndarray:
    """Plain in-order batches (no length sorting): ragged padding in every batch."""
    artifact = load_artifact(folder)
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    session = ort.InferenceSession(str(artifact.model_path))

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = dict(zip(INPUT_NAMES, (ids, mask), strict=True))
        return session.run([OUTPUT_NAMES[1]], feed)[0]  # (B, D)

    n = len(texts)
    in_order = [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    emb = encode_batches(tokenizer.tokenize(texts), run, tokenizer.pad_id, batches=in_order)
    assert artifact.config.normalize  # the service normalises; do as it will
    return normalize_rows(emb.astype(np.float64))


def test_matches_sentence_transformers_on_real_text(
    minilm_artifact: Path, reference_vectors: np.ndarray, corpus: list[str]
) -> None:
    assert len(corpus) >= 300 and len(passages()) > 0
    # In-order batches of 17 put short sentences beside long passages (padding in every batch);
    # that a vector does not depend on its company is test_backends' batch-invariance test.
    served = ort_embeddings(minilm_artifact, corpus, batch_size=17)
    cosine = (served * reference_vectors.astype(np.float64)).sum(axis=1)
    assert cosine.min() >= 0.99999, cosine.min()


def test_minilm_artifact_records_its_graph_and_config(minilm_artifact: Path) -> None:
    artifact = load_artifact(minilm_artifact)
    config = artifact.config
    assert (config.model_name, config.dimension, config.max_seq_length) == (
        "all-MiniLM-L6-v2",
        384,
        256,
    )
    assert (config.pooling, config.normalize, config.vocab_size) == ("mean", True, 30522)
    assert config.attention == "math" and config.precision == "fp32"
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    assert manifest["model"]["normalize_module"] is True
    graph = manifest["graph"]
    assert (graph["exporter"], graph["attention"], graph["opset"]) == ("dynamo", "math", 20)
    ops = graph["op_counts"]
    # The lean form: one Softmax and two attention MatMuls per layer, native Gelu, and none of
    # the Slice/Concat shape work that scaled_dot_product_attention exports to.
    assert ops["Softmax"] == 6 and ops["Gelu"] == 6 and ops["MatMul"] == 48
    assert ops.get("Slice", 0) <= 1 and ops.get("Concat", 0) <= 2
    parity = manifest["validation"]["parity"]
    assert len(parity["cases"]) == 16 and {c["seq"] for c in parity["cases"]} == {1, 7, 128, 256}
    assert parity["max_abs_token_embeddings"] < 1e-4
    assert parity["min_cosine_sentence_embedding"] > 0.99999
