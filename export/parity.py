"""Numeric parity of an exported graph against the PyTorch model it came from.

The grid (batch 1, 3, 17, 64 x seq 1, 7, 128, max length) exercises both dynamic axes, odd
sizes, and the longest input; ragged padding (row 0 full, other rows random lengths) checks
that masking in the graph matches masking in PyTorch. Half the shapes (a checkerboard over
batch and length) pad on the left: last-token pooling, causal attention and position ids
counted from the mask (XLM-R) must find the real tokens wherever the padding is. Lengths up to
the model's max put sliding-window attention past its window. Token embeddings are compared
only at real positions: what the graph computes for padding is nobody's business. A
classifier's logits are compared as an embedder's pooled output is, every row, every label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort
import torch

from common import texts as corpus
from common.arrays import cosine_rows, encode_batches
from models import Tokenizer

from .artifact import INPUT_NAMES, LOGITS, OUTPUT_NAMES, task_outputs
from .source import Encoder

GRID_BATCHES = (1, 3, 17, 64)
GRID_SEQS = (1, 7, 128)  # plus the model's max_seq_length, up to MAX_GRID_SEQ
# Long-context models (ModernBERT 8192 tokens, Qwen3 32k) are checked up to MAX_GRID_SEQ, with
# batches cut so batch x seq² (the scores one head holds) stays within MAX_GRID_CELLS: with the
# export's math attention one 32k row alone is 4 GiB of scores per head. MiniLM's (64 x 256)
# and all-mpnet-base-v2's (64 x 384) grids are whole.
MAX_GRID_SEQ = 2048
MAX_GRID_CELLS = 64 * 512 * 512
Padding = Literal["right", "left"]
PADDING_SIDES: tuple[Padding, Padding] = ("right", "left")
# Each output's name in the per-shape rows of the report ("max_abs_token", ...).
SHORT = {OUTPUT_NAMES[0]: "token", OUTPUT_NAMES[1]: "sentence", LOGITS: "logits"}


def grid_shapes(max_seq_length: int) -> list[tuple[int, int]]:
    """(batch, seq) pairs; lengths clipped to max_seq_length and ``MAX_GRID_SEQ``, batches cut
    to ``MAX_GRID_CELLS`` (the pairs that then coincide are kept once)."""
    longest = min(max_seq_length, MAX_GRID_SEQ)
    seqs = sorted({min(s, longest) for s in (*GRID_SEQS, longest)})
    shapes = [(min(b, max(1, MAX_GRID_CELLS // s**2)), s) for b in GRID_BATCHES for s in seqs]
    return list(dict.fromkeys(shapes))


def ragged_batch(
    rng: np.random.Generator,
    batch: int,
    seq: int,
    vocab_size: int,
    pad_id: int,
    side: Padding = "right",
) -> tuple[np.ndarray, np.ndarray]:
    """Random ids, row 0 full length, other rows a random length in 1..seq, padded on ``side``."""
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq
    position = np.arange(seq)[None, :]  # (1, T)
    real = position < lengths[:, None] if side == "right" else position >= seq - lengths[:, None]
    mask = real.astype(np.int64)  # (B, T)
    ids = rng.integers(0, vocab_size, size=(batch, seq), dtype=np.int64)
    return np.where(mask == 1, ids, pad_id).astype(np.int64), mask


@dataclass(frozen=True)
class _Case:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    padding: Padding
    refs: dict[str, np.ndarray]  # output name -> PyTorch's output


@dataclass(frozen=True)
class ParityReport:
    """Worst differences over the grid (per output), and each shape's, for the manifest."""

    label: str
    provider: str
    atol: float
    max_abs: dict[str, float]  # output name -> largest difference over the grid
    min_cosine: float | None  # of sentence embeddings; None for logits (one logit has no angle)
    cases: tuple[dict[str, Any], ...]

    @property
    def worst(self) -> float:
        return max(self.max_abs.values())

    @property
    def worst_output(self) -> str:
        return max(self.max_abs, key=lambda name: self.max_abs[name])

    @property
    def passed(self) -> bool:
        return self.worst <= self.atol

    def worst_case(self) -> dict[str, Any]:
        keys = [f"max_abs_{SHORT[name]}" for name in self.max_abs]
        return max(self.cases, key=lambda c: max(c[k] for k in keys))

    def to_dict(self) -> dict[str, Any]:
        cosine = (
            {} if self.min_cosine is None else {"min_cosine_sentence_embedding": self.min_cosine}
        )
        return {
            "label": self.label,
            "provider": self.provider,
            "atol": self.atol,
            "passed": self.passed,
            **{f"max_abs_{name}": value for name, value in self.max_abs.items()},
            **cosine,
            "cases": list(self.cases),
        }


class ParityGrid:
    """Inputs and PyTorch outputs for every grid shape, computed once, checked per graph."""

    def __init__(
        self,
        reference: Encoder,
        *,
        max_seq_length: int,
        pad_id: int,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.shapes = grid_shapes(max_seq_length)
        self.outputs = task_outputs(reference.config.task)
        self.cases: list[_Case] = []
        model = reference.to(device).eval()
        with torch.inference_mode():
            batches = sorted({b for b, _ in self.shapes})
            seqs = sorted({s for _, s in self.shapes})
            for batch, seq in self.shapes:
                # A checkerboard: each batch size and each length is seen with both sides.
                side = PADDING_SIDES[(batches.index(batch) + seqs.index(seq)) % 2]
                vocab = reference.config.vocab_size
                ids, mask = ragged_batch(rng, batch, seq, vocab, pad_id, side)
                out = model(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                # An embedder returns (tokens, pooled); a classifier its logits alone.
                refs = (out,) if isinstance(out, torch.Tensor) else out
                arrays = [r.float().cpu().numpy() for r in refs]
                self.cases.append(
                    _Case(ids, mask, side, dict(zip(self.outputs, arrays, strict=True)))
                )

    def feeds(self) -> list[dict[str, np.ndarray]]:
        """The grid's inputs as ONNX Runtime feeds (for comparing two graphs directly)."""
        return [
            dict(zip(INPUT_NAMES, (c.input_ids, c.attention_mask), strict=True)) for c in self.cases
        ]

    def check(self, session: ort.InferenceSession, atol: float, label: str) -> ParityReport:
        rows: list[dict[str, Any]] = []
        for (batch, seq), case, feed in zip(self.shapes, self.cases, self.feeds(), strict=True):
            got = dict(zip(self.outputs, session.run(list(self.outputs), feed), strict=True))
            row: dict[str, Any] = {"batch": batch, "seq": seq, "padding": case.padding}
            for name, ref in case.refs.items():
                # Token embeddings at real positions only: (B, T, D)[mask] -> (N, D).
                real = case.attention_mask.astype(bool) if ref.ndim == 3 else slice(None)
                row[f"max_abs_{SHORT[name]}"] = float(np.abs(got[name][real] - ref[real]).max())
            if OUTPUT_NAMES[1] in got:
                pooled = got[OUTPUT_NAMES[1]]  # (B, D)
                row["min_cosine"] = float(cosine_rows(pooled, case.refs[OUTPUT_NAMES[1]]).min())
            rows.append(row)
        return ParityReport(
            label=label,
            provider=session.get_providers()[0],
            atol=atol,
            max_abs={n: max(r[f"max_abs_{SHORT[n]}"] for r in rows) for n in self.outputs},
            min_cosine=min(r["min_cosine"] for r in rows) if "min_cosine" in rows[0] else None,
            cases=tuple(rows),
        )


class Session(Protocol):
    """What ``embed_texts`` runs: an ONNX Runtime session, or another runtime shaped like one."""

    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[Any]: ...


def run_batched(
    session: Session, sequences: list[list[int]], pad_id: int, output: str, batch_size: int = 32
) -> np.ndarray:
    """One output of ``session`` for every id sequence, in order, batched by length."""

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = dict(zip(INPUT_NAMES, (ids, mask), strict=True))
        (result,) = session.run([output], feed)  # (B, D) pooled or (B, num_labels) logits
        return np.asarray(result)

    return encode_batches(sequences, run, pad_id, batch_size=batch_size)


def embed_texts(
    session: Session,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = 32,
) -> np.ndarray:
    """Raw (not normalised) sentence embeddings of ``texts``, in order, batched by length."""
    ids = tokenizer.tokenize(list(texts))
    return run_batched(session, ids, tokenizer.pad_id, OUTPUT_NAMES[1], batch_size)


def score_pairs(
    session: Session,
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 32,
) -> np.ndarray:
    """Raw logits (n, num_labels) of a cross-encoder or classifier for (query, document) pairs,
    tokenized with the tokenizer's pair template, the document cut first."""
    ids = tokenizer.tokenize_pairs(list(pairs))
    return run_batched(session, ids, tokenizer.pad_id, LOGITS, batch_size)


def real_texts() -> tuple[list[str], str]:
    """Every built-in sentence and passage, and a label saying how many of each."""
    sentences, passages = corpus.sentences(), corpus.passages()
    return (
        sentences + passages,
        f"common.texts: {len(sentences)} sentences + {len(passages)} passages",
    )
