"""Compact vectors (``service.compact``) equal sentence-transformers' ``quantize_embeddings``.

Real vectors: MiniLM's raw pooled vectors (its exported graph, ONNX Runtime) of held-out texts
(odd-indexed sentences of ``common.texts``; the even-indexed texts calibrated the artifact),
quantized against the artifact's own ``calibration.npy`` shaped as each request shapes its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from common import texts as corpus
from export.artifact import Artifact, load_artifact
from export.parity import embed_texts
from models import Tokenizer
from service.compact import EMBEDDING_TYPES, Compactor, EmbeddingType, shaped
from service.errors import ApiError

# Held-out texts: every 8th odd-indexed sentence, 42 of them (passages would only cost time:
# equality holds value by value).
HELD_OUT_STRIDE = 8
PRECISION = {"float": "float32"}  # our name -> quantize_embeddings' where they differ
CUTS = (None, 128, 100)  # the whole vector, a cut, a cut that is not a multiple of 8


@pytest.fixture(scope="module")
def artifact(minilm_artifact: Path) -> Artifact:
    return load_artifact(minilm_artifact)


@pytest.fixture(scope="module")
def compactor(artifact: Artifact) -> Compactor:
    return Compactor.from_artifact(artifact)


@pytest.fixture(scope="module")
def held_out(artifact: Artifact) -> np.ndarray:
    """``(n, D)`` raw pooled vectors of held-out texts from the artifact's graph."""
    config = artifact.config
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length, config.pad_token_id)
    session = ort.InferenceSession(str(artifact.model_path), providers=["CPUExecutionProvider"])
    texts = corpus.sentences()[1::2][::HELD_OUT_STRIDE]
    return embed_texts(session, tokenizer, texts)


def reference(
    vectors: np.ndarray, kind: EmbeddingType, calibration: np.ndarray, cut: int | None, unit: bool
) -> np.ndarray:
    """sentence-transformers' answer for the same request."""
    out = quantize_embeddings(
        shaped(vectors, cut, unit),
        PRECISION.get(kind, kind),  # type: ignore[arg-type]
        calibration_embeddings=shaped(calibration, cut, unit),
    )
    assert isinstance(out, np.ndarray)
    return out


@pytest.mark.parametrize("unit", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("cut", CUTS, ids=lambda c: f"d={c}")
@pytest.mark.parametrize("kind", EMBEDDING_TYPES)
def test_equals_sentence_transformers(
    compactor: Compactor, held_out: np.ndarray, kind: EmbeddingType, cut: int | None, unit: bool
) -> None:
    assert compactor.calibration is not None
    ours = compactor.encode(shaped(held_out, cut, unit), kind, cut, unit)
    theirs = reference(held_out, kind, compactor.calibration, cut, unit)
    width = held_out.shape[1] if cut is None else cut
    packed = -(-width // 8)
    assert ours.shape == (len(held_out), packed if kind.endswith("binary") else width)
    assert ours.dtype == theirs.dtype
    assert ours.tobytes() == theirs.tobytes()  # bit for bit


@pytest.mark.parametrize("kind", ["int8", "uint8"])
def test_outside_the_calibration_range_is_clipped(
    compactor: Compactor, held_out: np.ndarray, kind: EmbeddingType
) -> None:
    """Values past the calibration's [min; max] land on the end buckets, as there."""
    assert compactor.calibration is not None
    far = np.concatenate([held_out * 4, held_out * -4, held_out / 100])  # (3n, D) raw
    vectors = shaped(far, None, False)
    ours = compactor.encode(vectors, kind, None, False)
    theirs = reference(far, kind, compactor.calibration, None, False)
    assert ours.tobytes() == theirs.tobytes()
    low, high = (-128, 127) if kind == "int8" else (0, 255)
    buckets = compactor.buckets(None, False)
    assert ((vectors < buckets.starts) <= (ours == low)).all()  # below min: the first bucket
    assert (ours == high).any() and (ours == low).any()


def test_calibration_ends_are_the_end_buckets(compactor: Compactor) -> None:
    """The calibration's own per-dimension minimum is bucket 0 and its maximum the top bucket
    (255, or 254 where float32 rounds (max - min) / step just under 255, as it does there)."""
    assert compactor.calibration is not None
    calibration = shaped(compactor.calibration, 100, True)
    levels = compactor.encode(calibration, "uint8", 100, True)
    assert (levels.min(axis=0) == 0).all() and (levels.max(axis=0) >= 254).all()


def test_buckets_are_kept_per_request_shape(compactor: Compactor) -> None:
    assert compactor.buckets(128, True) is compactor.buckets(128, True)
    assert compactor.buckets(None, True) is compactor.buckets(384, True)
    assert compactor.buckets(128, True) is not compactor.buckets(128, False)


def test_no_calibration_serves_float_and_binary_only(held_out: np.ndarray) -> None:
    bare = Compactor(None)
    vectors = shaped(held_out, None, True)
    assert bare.encode(vectors, "float", None, True) is vectors
    theirs = quantize_embeddings(vectors, "ubinary")
    assert isinstance(theirs, np.ndarray)
    assert bare.encode(vectors, "ubinary", None, True).tobytes() == theirs.tobytes()
    for kind in ("int8", "uint8"):
        with pytest.raises(ApiError) as caught:
            bare.encode(vectors, kind, None, True)
        error = caught.value
        assert (error.status, error.param, error.code) == (400, "embedding_type", "no_calibration")
        assert "re-export the model with this version of embedserve" in error.message
    assert bare.describe() == {
        "embedding_types": ["float", "binary", "ubinary"],
        "calibration_texts": None,
    }


def test_describe_with_calibration(compactor: Compactor) -> None:
    assert compactor.describe() == {
        "embedding_types": list(EMBEDDING_TYPES),
        "calibration_texts": (len(corpus.corpus()) + 1) // 2,
    }
