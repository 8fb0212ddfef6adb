"""Padded batches, length-sorted encoding, row-wise cosine and a classifier's scores.

One definition each: the replica's batcher, the PyTorch reference, the export's parity check,
the benchmarks and the tests pad and compare the same way, so their numbers agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Token ids of one input: a list from the tokenizer or a 1-D int64 array.
Ids = Sequence[int] | np.ndarray
# (B, T) int64 ids and mask in, (B, ...) float rows out.
RunBatch = Callable[[np.ndarray, np.ndarray], np.ndarray]


def pad(sequences: Sequence[Ids], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest input: ``(B, T)`` int64 ids and mask (1 = real token)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    width = int(lengths.max()) if len(sequences) else 0
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    for row, seq in zip(ids, sequences, strict=True):
        row[: len(seq)] = seq
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)  # (B, T)
    return ids, mask


def longest_first(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Input indices in batches of ``batch_size``, longest inputs first, so each pads little."""
    order = np.argsort([-n for n in lengths], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def encode_batches(
    sequences: Sequence[Ids],
    run: RunBatch,
    pad_id: int,
    batches: Sequence[Sequence[int] | np.ndarray] | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """``run`` over padded batches of ``sequences``; float32 rows back in input order.

    ``batches`` gives the inputs (indices) of each call, in call order; by default
    :func:`longest_first` in ``batch_size``.
    """
    if batches is None:
        batches = longest_first([len(s) for s in sequences], batch_size)
    out: np.ndarray | None = None
    for members in batches:
        ids, mask = pad([sequences[i] for i in members], pad_id)
        rows = run(ids, mask)  # (B, ...)
        if out is None:
            out = np.empty((len(sequences), *rows.shape[1:]), dtype=np.float32)
        out[np.asarray(members)] = rows
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row at unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine in float64 (the zero vector has cosine 1 with itself, 0 otherwise)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(-1) / np.maximum(na * nb, 1e-300)
    return np.where(both_zero, 1.0, cos)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=logits.dtype)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, L)`` logits, shifted by each row's maximum so none overflows."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # (n, L)
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=logits.dtype)


def scores(logits: np.ndarray) -> np.ndarray:
    """What a cross-encoder's ``(n, L)`` logits mean to a user, as text-embeddings-inference
    scores them: the sigmoid of a single logit (relevance), the softmax over several labels."""
    return sigmoid(logits) if logits.shape[1] == 1 else softmax(logits)
