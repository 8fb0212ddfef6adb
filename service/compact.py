"""Compact vectors per request: ``embedding_type`` int8, uint8, binary or ubinary.

Each type is exactly sentence-transformers' ``quantize_embeddings`` (``sentence_transformers.
util.quantization``), so a client may mix our vectors with vectors it quantized itself:

- ``int8``/``uint8``: each dimension's [min; max] over calibration embeddings is cut into 255
  equal steps; a value becomes ``floor((x - min) / step)`` clipped to 0..255 (uint8), minus 128
  for int8. Values outside the calibration range land on 0 or 255. A dimension whose range is
  empty (min == max) has step 1, as there. Float32 arithmetic throughout, as there.
- ``binary``/``ubinary``: the sign bits ``x > 0`` packed 8 per byte, first dimension in the
  high bit (``np.packbits``), the last byte zero-padded; ubinary as uint8, binary minus 128 as
  int8 (Cohere's ``binary``/``ubinary`` are the same bytes).

The calibration embeddings are the model's own raw vectors of real text, written at export
(``export.calibrate``, ``calibration.npy``). A request's ``dimensions`` and ``normalize`` apply
before quantizing, so the ranges are those of the calibration vectors shaped the same way
(:func:`shaped`: cut, then unit length), computed once per (dimensions, normalize) and kept.
An artifact without the file serves float, binary and ubinary; int8/uint8 answer 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from common.arrays import normalize_rows
from export.artifact import CALIBRATION_FILE, Artifact, ArtifactError

from .errors import ApiError

EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary"]
EMBEDDING_TYPES: tuple[EmbeddingType, ...] = get_args(EmbeddingType)
# The types that need calibration ranges; the others need only the vector.
CALIBRATED: tuple[EmbeddingType, ...] = ("int8", "uint8")
LEVELS = 255  # the highest bucket: 256 buckets, 0..255
INT8_SHIFT = 128  # int8 = uint8 bucket - 128; binary = packed byte - 128


def shaped(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """``(n, D)`` raw pooled vectors → ``(n, d)`` float32: cut to ``dimensions`` (None: all D),
    then unit length if ``normalize``. The float answer and the calibration ranges both come
    from here, so an int8 vector is the float vector the same request would get, quantized."""
    if dimensions is not None:
        vectors = vectors[:, :dimensions]  # (n, d)
    if normalize:
        vectors = normalize_rows(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class Buckets:
    """Per-dimension ``starts`` (the calibration minimum) and ``steps`` ((max - min) / 255),
    float32, as ``quantize_embeddings`` derives them from calibration embeddings."""

    starts: np.ndarray  # (d,)
    steps: np.ndarray  # (d,)

    @classmethod
    def of(cls, calibration: np.ndarray) -> Buckets:
        """From ``(N, d)`` shaped calibration vectors."""
        ranges = np.vstack((calibration.min(axis=0), calibration.max(axis=0)))  # (2, d)
        ranges = ranges.astype(np.float32, copy=False)
        starts = ranges[0, :]
        steps = (ranges[1, :] - starts) / LEVELS
        return cls(starts, np.where(steps == 0, np.float32(1), steps))

    def uint8(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, d)`` float32 → ``(n, d)`` bucket numbers 0..255, as float32."""
        return np.clip(np.floor((vectors - self.starts) / self.steps), 0, LEVELS)


class Compactor:
    """One model's compact encodings: its calibration vectors and the buckets derived from
    them per (dimensions, normalize)."""

    def __init__(self, calibration: np.ndarray | None) -> None:
        """``calibration``: ``(N, D)`` raw pooled float32 vectors of real text, or None."""
        self.calibration = calibration
        self._buckets: dict[tuple[int, bool], Buckets] = {}

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> Compactor:
        """The artifact's ``calibration.npy`` (None when it has none), checked against the
        model's dimension."""
        path = artifact.calibration_path
        if path is None:
            return cls(None)
        try:
            calibration = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from exc
        dimension = artifact.config.dimension
        if calibration.ndim != 2 or calibration.shape[1] != dimension or not len(calibration):
            raise ArtifactError(
                f"{path} holds vectors of shape {calibration.shape}, not (N, {dimension}) for "
                "this model; re-export the model"
            )
        return cls(np.asarray(calibration, dtype=np.float32))

    @property
    def types(self) -> tuple[EmbeddingType, ...]:
        """The embedding types this model can answer."""
        if self.calibration is not None:
            return EMBEDDING_TYPES
        return tuple(t for t in EMBEDDING_TYPES if t not in CALIBRATED)

    def encode(
        self,
        vectors: np.ndarray,
        kind: EmbeddingType,
        dimensions: int | None,
        normalize: bool,
    ) -> np.ndarray:
        """``vectors``: the ``(n, d)`` float32 output of :func:`shaped` for a request with
        ``dimensions`` and ``normalize``. float: unchanged; int8/uint8: ``(n, d)``;
        binary/ubinary: ``(n, ceil(d / 8))``."""
        if kind == "float":
            return vectors
        if kind == "ubinary":
            return np.packbits(vectors > 0, axis=-1)  # (n, ceil(d / 8)) uint8
        if kind == "binary":
            packed = np.packbits(vectors > 0, axis=-1).astype(np.int16)
            return (packed - INT8_SHIFT).astype(np.int8)
        buckets = self.buckets(dimensions, normalize)
        if vectors.shape[-1] != buckets.starts.size:
            raise ValueError(
                f"vectors of width {vectors.shape[-1]} for dimensions={dimensions}: pass "
                "shaped(...)'s output for the same request"
            )
        levels = buckets.uint8(vectors)  # (n, d)
        if kind == "uint8":
            return levels.astype(np.uint8)
        return (levels - INT8_SHIFT).astype(np.int8)

    def buckets(self, dimensions: int | None, normalize: bool) -> Buckets:
        """The buckets of the calibration vectors shaped as a request with ``dimensions`` and
        ``normalize`` shapes its own; computed on first use."""
        if self.calibration is None:
            raise ApiError(
                400,
                f"embedding_type int8 and uint8 need per-dimension ranges calibrated at export, "
                f"and this model's artifact has no {CALIBRATION_FILE} (exported before "
                "embedserve calibrated them, or without a tokenizer); re-export the model with "
                "this version of embedserve, or ask for float, binary or ubinary",
                "embedding_type",
                "no_calibration",
            )
        width = self.calibration.shape[1] if dimensions is None else dimensions
        key = (width, normalize)
        found = self._buckets.get(key)
        if found is None:  # a race computes the same buckets twice: harmless
            found = Buckets.of(shaped(self.calibration, width, normalize))
            self._buckets[key] = found
        return found

    def describe(self) -> dict[str, object]:
        """For ``/info``: the types this model answers and how many texts calibrated it."""
        calibrated = None if self.calibration is None else int(self.calibration.shape[0])
        return {"embedding_types": list(self.types), "calibration_texts": calibrated}
