"""Compact vectors per request (issue 19, ``service.compact``): response sizes and retrieval.

One service (``python -m service`` with the cache on, so a text's compact answers quantize the
very float vector its float answer carried) answers, through the OpenAI route:

- **Sizes**: one batch of ``BATCH`` held-out sentences in every ``embedding_type`` and both
  ``encoding_format``s; the whole response body (envelope and usage included) per vector.
- **Retrieval agreement**: every held-out text (the odd-indexed texts of ``common.texts``; the
  even ones calibrated the artifact's int8/uint8 ranges) in each type. For each text, its
  ``TOP_K`` nearest neighbours among the others under the compact vectors against those under
  float cosine; the mean overlap. int8 and uint8 rank by the integer dot product of the
  vectors as served (what an index of raw int8 codes computes); binary and ubinary by Hamming
  distance of the sign bits. Ties (common for Hamming: distances are integers) go to the
  lower text index, the same rule for every type.
- **Exactness**: the served compact vectors against ``service.compact`` applied to the served
  float vectors with the artifact's calibration: identical, or the section says not.

No timing is measured, so ``scale`` changes nothing here; the whole section is one service
start and ~60 requests (~1 min on 2 cores).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import texts as corpus
from export.artifact import load_artifact
from service.compact import EMBEDDING_TYPES, Compactor, EmbeddingType

from . import served
from .cache import CACHE_ON

log = logging.getLogger(__name__)

KEY = "compact"  # the name ``--only`` takes
BATCH = 32  # sentences per request, as W2 sends them
TOP_K = 10
FORMATS = ("json", "base64")
DTYPES: dict[EmbeddingType, str] = {
    "float": "<f4",
    "int8": "i1",
    "uint8": "u1",
    "binary": "i1",
    "ubinary": "u1",
}


def held_out() -> list[str]:
    """The texts no calibration saw: the odd-indexed texts of ``common.texts``."""
    return corpus.corpus()[1::2]


def vectors(url: str, texts: list[str], kind: EmbeddingType) -> np.ndarray:
    """``texts`` in ``BATCH``-sized requests of ``kind``, exact (base64 bytes), in order."""
    return served.exact_vectors(url, texts, BATCH, DTYPES[kind], embedding_type=kind)


def sizes(url: str, texts: list[str]) -> list[dict[str, Any]]:
    """Response body bytes per vector for one request of ``texts`` in each type and format."""
    found = []
    for kind in EMBEDDING_TYPES:
        for fmt in FORMATS:
            body: dict[str, Any] = {"input": texts, "embedding_type": kind}
            if fmt == "base64":
                body["encoding_format"] = "base64"
            answer = served.post_embeddings(url, body)
            found.append(
                {"type": kind, "format": fmt, "bytes_per_vector": len(answer) / len(texts)}
            )
    return found


def similarity(kind: EmbeddingType, rows: np.ndarray) -> np.ndarray:
    """``(n, n)`` how alike each pair of texts is under ``kind``'s own measure: float cosine,
    the integer dot product (int8, uint8), or the number of equal sign bits (binary, ubinary:
    ``d`` minus the Hamming distance)."""
    if kind == "float":
        unit = rows.astype(np.float64) / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit @ unit.T
    if kind in ("int8", "uint8"):
        wide = rows.astype(np.int64)
        return wide @ wide.T  # exact integers
    packed = rows.view(np.uint8) ^ np.uint8(0x80) if kind == "binary" else rows  # binary: -128
    bits = np.unpackbits(packed, axis=1).astype(np.int64)  # (n, 8 * bytes)
    return bits @ bits.T + (1 - bits) @ (1 - bits).T  # equal bits


def neighbours(alike: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """``(n, k)``: each text's ``k`` most alike others; ties to the lower index."""
    scores = alike.astype(np.float64)
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean overlap of each text's neighbour sets, as a fraction of ``k``."""
    k = reference.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(reference, other, strict=True)]))


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict[str, Any]:
    """Sizes per type and format, top-10 agreement per type, exactness against the reference."""
    start, load_start = time.perf_counter(), os.getloadavg()
    texts = held_out()
    sentences = set(corpus.sentences())
    loaded = load_artifact(artifact)
    compactor = Compactor.from_artifact(loaded)
    if compactor.calibration is None:  # exported before export.calibrate existed
        model = loaded.manifest["model"]["source"]
        raise RuntimeError(
            f"{artifact} has no calibration vectors, so int8/uint8 cannot be served; re-export "
            f"it: python -m export --model {model} --output {artifact} --force"
        )
    with served.embedserve(
        artifact, threads, work / "compact-server.log", settings_env=CACHE_ON
    ) as server:
        info = served.server_info(server.url) or {}
        got = {kind: vectors(server.url, texts, kind) for kind in EMBEDDING_TYPES}
        size_rows = sizes(server.url, corpus.sentences()[1::2][:BATCH])
    floats = got["float"]
    width = floats.shape[1]
    exact = {
        kind: bool(np.array_equal(got[kind], compactor.encode(floats, kind, None, True)))
        for kind in EMBEDDING_TYPES
    }
    reference = neighbours(similarity("float", floats))
    agree = {
        kind: agreement(reference, neighbours(similarity(kind, got[kind])))
        for kind in EMBEDDING_TYPES
        if kind != "float"
    }
    log.info("compact: top-%d agreement %s", TOP_K, agree)
    served_by = {key: info.get(key) for key in ("model_id", "backend", "compact")}
    return {
        "service": served_by,  # its /info: model, backend, the types it answers
        "threads": threads,
        "dimension": width,
        "batch": BATCH,
        "sizes": size_rows,
        "texts": len(texts),
        "sentences": sum(1 for text in texts if text in sentences),
        "top_k": TOP_K,
        "agreement": agree,
        "exact": exact,
        "seconds": time.perf_counter() - start,
        "load_avg": (load_start, os.getloadavg()),
    }


def section(found: dict[str, Any], cores: int) -> list[str]:
    """The Markdown of ``docs/benchmarks.md``'s compact-vectors section."""
    service = found["service"]
    backend = service.get("backend") or {}
    by_key = {(row["type"], row["format"]): row["bytes_per_vector"] for row in found["sizes"]}
    float_json = by_key[("float", "json")]
    rows = []
    for kind in EMBEDDING_TYPES:
        as_json, as_base64 = by_key[(kind, "json")], by_key[(kind, "base64")]
        rows.append(
            f"| {kind} | {as_json:.0f} | {as_base64:.0f} | {float_json / as_json:.1f}x | "
            f"{float_json / as_base64:.1f}x |"
        )
    agree = found["agreement"]
    measures = {"int8": "integer dot product", "uint8": "integer dot product"}
    agreement_rows = [
        f"| {kind} | {measures.get(kind, 'Hamming distance')} | {agree[kind]:.3f} |"
        for kind in agree
    ]
    inexact = [kind for kind, same in found["exact"].items() if not same]
    exact = (
        "identical, every type, to `service.compact` applied to the served float vectors "
        "with the artifact's calibration (which the tests prove equal to sentence-transformers' "
        "`quantize_embeddings`)"
        if not inexact
        else f"NOT identical to the reference for {inexact}"
    )
    sentences = found["sentences"]
    passages = found["texts"] - sentences
    return [
        "## Compact vectors: `embedding_type`",
        "",
        f"{service.get('model_id')} ({found['dimension']} dimensions) on {backend.get('name')} "
        f"{backend.get('precision')}, {found['threads']} threads, {cores} cores, through "
        "`POST /v1/embeddings`. Response body bytes per vector (the whole body: envelope and "
        f"usage included) for one request of {found['batch']} held-out sentences:",
        "",
        "| embedding_type | JSON | base64 | JSON float / JSON | JSON float / base64 |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Top-{found['top_k']} retrieval agreement with float cosine on the "
        f"{found['texts']} held-out texts ({sentences} sentences, {passages} passages: the "
        "odd-indexed texts of `common.texts`; the even-indexed ones calibrated the int8/uint8 "
        "ranges at export): for each text, its 10 nearest other texts under the compact "
        "vectors as served against under float cosine, mean overlap. int8/uint8 rank by the "
        "integer dot product of the codes, binary/ubinary by the Hamming distance of the sign "
        "bits; ties go to the lower text index.",
        "",
        "| embedding_type | ranked by | top-10 agreement |",
        "|---|---|---|",
        *agreement_rows,
        "",
        f"Served compact vectors: {exact}.",
        "",
    ]
