"""The export writes an embedder's calibration vectors (``export.calibrate``) and lists them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common import texts as corpus
from export.artifact import CALIBRATION_FILE, INPUT_NAMES, MANIFEST_FILE, load_artifact, sha256_file
from export.quantize import CALIBRATION_STRIDE, calibration_texts
from models import Tokenizer

# The rows checked against the graph run one text at a time (unpadded): every 6th, ~60 texts,
# sentences and passages alike.
CHECK_STRIDE = 6


def test_minilm_artifact_has_calibration_vectors(minilm_artifact: Path) -> None:
    artifact = load_artifact(minilm_artifact)  # verifies every listed file's sha256
    assert artifact.calibration_path == minilm_artifact / CALIBRATION_FILE
    manifest = json.loads((minilm_artifact / MANIFEST_FILE).read_text())
    texts = calibration_texts()
    entry = manifest["extras"]["calibration"]
    assert entry["file"] == CALIBRATION_FILE
    assert entry["texts"] == len(texts) == (len(corpus.corpus()) + 1) // CALIBRATION_STRIDE
    assert entry["dimension"] == artifact.config.dimension == 384
    assert "fp32 graph" in entry["source"] and "common.texts" in entry["source"]
    listed = manifest["files"][CALIBRATION_FILE]
    assert listed["sha256"] == sha256_file(artifact.calibration_path)

    vectors = np.load(artifact.calibration_path, allow_pickle=False)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    config = artifact.config
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length, config.pad_token_id)
    session = ort.InferenceSession(str(artifact.model_path), providers=["CPUExecutionProvider"])
    rows = range(0, len(texts), CHECK_STRIDE)
    for row, ids in zip(rows, tokenizer.tokenize(texts[::CHECK_STRIDE]), strict=True):
        one = np.asarray([ids], dtype=np.int64)  # (1, T)
        feed = dict(zip(INPUT_NAMES, (one, np.ones_like(one)), strict=True))
        (graph,) = session.run(["sentence_embedding"], feed)  # (1, D), raw
        np.testing.assert_allclose(vectors[row], graph[0], rtol=0, atol=1e-5)


def test_rerank_artifact_has_none(reranker_artifact: Path) -> None:
    """Scores are not vectors: no calibration for a cross-encoder."""
    artifact = load_artifact(reranker_artifact)
    assert artifact.calibration_path is None
    assert not (reranker_artifact / CALIBRATION_FILE).exists()
    assert "calibration" not in artifact.manifest["extras"]
