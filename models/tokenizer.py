"""A small wrapper over the ``tokenizers`` library: truncation and padded numpy batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

TruncationSide = Literal["right", "left"]


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str
    special: bool
    start: int  # character offsets of the token in its input
    stop: int


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray  # (B, T) int64, padded with the pad id
    attention_mask: np.ndarray  # (B, T) int64, 1 = real token
    lengths: np.ndarray  # (B,) int64, real tokens per input (special tokens included)


class Tokenizer:
    """Reads ``tokenizer.json``; truncates to ``max_length`` tokens (special tokens included).

    The file's own padding/truncation settings are ignored: padding is done here, to the
    longest input of each batch, and truncation follows ``max_length`` and the side asked for.
    One ``tokenizers`` instance per truncation side, so a call never mutates shared state and
    the wrapper is safe to use from several threads.
    """

    def __init__(self, path: str | Path, max_length: int) -> None:
        self.path = Path(path)
        self.max_length = max_length
        base = HFTokenizer.from_file(str(self.path))
        base.no_padding()
        base.no_truncation()
        pad = base.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        self.vocab_size = base.get_vocab_size(with_added_tokens=True)
        self._untruncated = base
        self._by_side: dict[str, HFTokenizer] = {}
        for side in ("right", "left"):
            tok = HFTokenizer.from_str(base.to_str())
            tok.enable_truncation(max_length, direction=side)
            self._by_side[side] = tok

    def tokenize(
        self, texts: list[str], truncate: bool = True, side: TruncationSide = "right"
    ) -> list[list[int]]:
        """Token ids per text; with ``truncate=False`` the full length is kept (to be rejected)."""
        if side not in self._by_side:
            raise ValueError(f"truncation side must be 'right' or 'left', got {side!r}")
        tok = self._by_side[side] if truncate else self._untruncated
        return [e.ids for e in tok.encode_batch(texts)]

    def tokens(
        self, texts: list[str], add_special_tokens: bool = True, side: TruncationSide = "right"
    ) -> list[list[Token]]:
        """Each token with its text and character offsets (for a ``/tokenize`` endpoint)."""
        encodings = self._by_side[side].encode_batch(texts, add_special_tokens=add_special_tokens)
        return [
            [
                Token(i, t, bool(s), start, stop)
                for i, t, s, (start, stop) in zip(
                    e.ids, e.tokens, e.special_tokens_mask, e.offsets, strict=True
                )
            ]
            for e in encodings
        ]

    def pad(self, sequences: list[list[int]]) -> EncodedBatch:
        """Right-pad token id lists to the longest one."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        width = int(lengths.max()) if len(sequences) else 0
        input_ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        for row, ids in zip(input_ids, sequences, strict=True):
            row[: len(ids)] = ids
        attention_mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return EncodedBatch(input_ids, attention_mask, lengths)

    def encode(self, texts: list[str], side: TruncationSide = "right") -> EncodedBatch:
        return self.pad(self.tokenize(texts, truncate=True, side=side))
