"""A small wrapper over the ``tokenizers`` library: truncation and padded numpy batches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer

from common.arrays import pad

TruncationSide = Literal["right", "left"]
# A truncated input is tokenized from a window of its text: first ``limit × CHARS_PER_TOKEN``
# characters (English runs ~4.5 per token), growing ×4 while the kept tokens may still depend on
# the cut, up to ``limit × MAX_CHARS_PER_TOKEN``: a 'word' longer than that (no whitespace or
# punctuation in 32k characters) is cut there. Without that bound 5 MB of one letter cost 5.6 s.
CHARS_PER_TOKEN = 8
WINDOW_GROWTH = 4
MAX_CHARS_PER_TOKEN = 128
# Files beside tokenizer.json that name the special tokens (transformers writes both).
SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")


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


def _window(text: str, chars: int, side: TruncationSide) -> tuple[str, int]:
    """The ``chars`` characters of ``text`` on the kept side, and where they start in it."""
    if chars >= len(text):
        return text, 0
    return (text[:chars], 0) if side == "right" else (text[-chars:], len(text) - chars)


def _clear_of_the_cut(encoding: Encoding, side: TruncationSide) -> bool:
    """True when the kept tokens of a truncated window are those of the whole text.

    Cutting the text changes at most the words (pre-tokens) that touch the cut: the one it
    splits, and with byte-level splitting of whitespace runs the one before it (GPT-2's
    ``\\s+(?!\\S)`` gives a run's last space to the next word, so a run cut short is one word
    more). BERT's split and Metaspace (Unigram) change only the word cut. Kept tokens that
    avoid the two words nearest the cut are what the whole text gives (property-tested for
    WordPiece, Unigram and byte-level BPE); a window that was not truncated proves nothing.
    """
    if not encoding.overflowing:
        return False
    kept = [w for w in encoding.word_ids if w is not None]
    if not kept:
        return False
    if side == "right":
        cut = max(w for o in encoding.overflowing for w in o.word_ids if w is not None)
        return max(kept) <= cut - 2
    return min(kept) >= 2  # the window's first word (0) is the one the cut split


def _named_pad_token(folder: Path) -> str | None:
    """The ``pad_token`` of the special-token files beside tokenizer.json, if one names it."""
    for name in SPECIAL_TOKEN_FILES:
        path = folder / name
        token = json.loads(path.read_text()).get("pad_token") if path.is_file() else None
        if isinstance(token, dict):  # an AddedToken as transformers serialises it
            token = token.get("content")
        if isinstance(token, str):
            return token
    return None


def _pad_id(base: HFTokenizer, folder: Path, default: int) -> int:
    """The pad id as ``transformers`` would pad: the file's padding config, else the pad token
    its special-token files name, else ``default`` (the model config's ``pad_token_id``)."""
    if base.padding is not None:
        return int(base.padding["pad_id"])
    named = _named_pad_token(folder)
    pad = None if named is None else base.token_to_id(named)
    return default if pad is None else pad


def longest_first(first: int, second: int, room: int) -> tuple[int, int]:
    """Tokens kept of each side of a pair of ``first`` and ``second`` tokens in ``room``: the
    ``tokenizers`` rule behind transformers' ``truncation="longest_first"``. The longer side
    is cut down to the shorter, then both in turn; when both are longer than half the room
    each keeps half, and an odd room's last token goes to the longer side (the second on a tie).
    """
    short, long = sorted((first, second))
    keep_short, keep_long = short, min(long, max(short, room - short))
    if keep_short + keep_long > room:
        keep_short, keep_long = room // 2, room // 2 + room % 2
    return (keep_long, keep_short) if first > second else (keep_short, keep_long)


class Tokenizer:
    """Reads ``tokenizer.json``; truncates to ``max_length`` tokens (special tokens included).

    The file's own padding/truncation settings are ignored: padding is done here, to the
    longest input of each batch, and truncation follows ``max_length`` and the side asked for.
    Truncating reads only a window of each text that is big enough for the kept tokens, so the
    cost of an input is bounded by what it keeps: a 5 MB string cut to 256 tokens costs about
    what a 2 kB one does (it cost ~4 s when the whole text was tokenized first). The tokens are
    exactly those of the whole text, truncated (``_clear_of_the_cut``), unless one word runs past
    ``MAX_CHARS_PER_TOKEN`` characters per kept token.
    One ``tokenizers`` instance per (side, limit), so a call never mutates shared state and
    the wrapper is safe to use from several threads.
    Special tokens are what the file's post-processor adds ([CLS]/[SEP], <s>/</s>, a trailing
    <|endoftext|>); the pad id is read as :func:`_pad_id` says, ``default_pad_id`` last.
    """

    def __init__(self, path: str | Path, max_length: int, default_pad_id: int = 0) -> None:
        self.path = Path(path)
        self.max_length = max_length
        base = HFTokenizer.from_file(str(self.path))
        self.pad_id = _pad_id(base, self.path.parent, default_pad_id)
        base.no_padding()
        base.no_truncation()
        self.vocab_size = base.get_vocab_size(with_added_tokens=True)
        self._untruncated = base
        self._truncating: dict[tuple[str, int], HFTokenizer] = {}

    def _truncated(self, side: str, limit: int) -> HFTokenizer:
        if side not in ("right", "left"):
            raise ValueError(f"truncation side must be 'right' or 'left', got {side!r}")
        key = (side, limit)
        if key not in self._truncating:
            tok = HFTokenizer.from_str(self._untruncated.to_str())
            tok.enable_truncation(limit, direction=side)
            self._truncating[key] = tok
        return self._truncating[key]

    def encode_truncated(
        self,
        texts: list[str],
        side: TruncationSide = "right",
        limit: int | None = None,
        add_special_tokens: bool = True,
    ) -> list[tuple[Encoding, int]]:
        """Each text's encoding truncated to ``limit`` tokens (default ``max_length``), read
        from a window of the text; with the window's start in the text (for offsets)."""
        limit = self.max_length if limit is None else limit
        tok = self._truncated(side, limit)
        out: list[tuple[Encoding, int] | None] = [None] * len(texts)
        todo, chars = list(range(len(texts))), limit * CHARS_PER_TOKEN
        while todo:
            last = chars >= limit * MAX_CHARS_PER_TOKEN
            windows = [_window(texts[i], chars, side) for i in todo]
            encodings = tok.encode_batch(
                [w for w, _ in windows], add_special_tokens=add_special_tokens
            )
            retry = []
            for i, (window, start), encoding in zip(todo, windows, encodings, strict=True):
                if last or len(window) == len(texts[i]) or _clear_of_the_cut(encoding, side):
                    out[i] = (encoding, start)
                else:
                    retry.append(i)
            todo, chars = retry, chars * WINDOW_GROWTH
        return out  # type: ignore[return-value]

    def special_ids(self) -> tuple[list[int], list[int]]:
        """The special tokens the file's post-processor puts before and after one text (BERT:
        [CLS] and [SEP]; Qwen3: none and <|endoftext|>), for windows framed as a whole input."""
        encoding = self._untruncated.encode("a")
        mask, ids = encoding.special_tokens_mask, encoding.ids
        before, text = mask.index(0), mask.count(0)
        return ids[:before], ids[before + text :]

    def tokenize(
        self,
        texts: list[str],
        truncate: bool = True,
        side: TruncationSide = "right",
        limit: int | None = None,
    ) -> list[list[int]]:
        """Token ids per text, at most ``limit`` (default ``max_length``) of them; with
        ``truncate=False`` the whole text, however long."""
        if not truncate:
            return [e.ids for e in self._untruncated.encode_batch(texts)]
        return [e.ids for e, _ in self.encode_truncated(texts, side, limit)]

    def tokenize_pairs(
        self,
        pairs: list[tuple[str, str]],
        truncate: bool = True,
        side: TruncationSide = "right",
        limit: int | None = None,
    ) -> list[list[int]]:
        """Token ids of each (query, document) with the file's pair template (``[CLS] q [SEP]
        d [SEP]``, ``<s> q </s></s> d </s>``...), at most ``limit`` (default ``max_length``) of
        them, cut as transformers' ``truncation=True`` cuts (:func:`longest_first`); with
        ``truncate=False`` nothing is cut.

        Each side is read from a window (:meth:`encode_truncated`) of at most the room the pair
        has, so a megabyte document costs what its kept tokens do.
        """
        if not truncate:
            return [e.ids for e in self._untruncated.encode_batch(pairs)]
        limit = self.max_length if limit is None else limit
        room = limit - self._untruncated.num_special_tokens_to_add(is_pair=True)
        if room < 0:
            raise ValueError(f"limit {limit} leaves no room for the pair's special tokens")
        if not pairs:
            return []
        queries, documents = ([*texts] for texts in zip(*pairs, strict=True))
        # One more token than the room: a side that fills it is known to be too long.
        windows = (
            self.encode_truncated(texts, side, room + 1, add_special_tokens=False)
            for texts in (queries, documents)
        )
        out = []
        for query, document, (q, _), (d, _) in zip(queries, documents, *windows, strict=True):
            n_q, n_d = len(q.ids), len(d.ids)
            if n_q > room and n_d > room and room % 2:
                # Both too long: the odd token goes to the longer side, so count them whole.
                whole = self._untruncated.encode_batch([query, document], add_special_tokens=False)
                n_q, n_d = (len(e.ids) for e in whole)
            keep_q, keep_d = longest_first(n_q, n_d, room)
            q.truncate(keep_q, direction=side)
            d.truncate(keep_d, direction=side)
            out.append(self._untruncated.post_process(q, d).ids)
        return out

    def tokens(
        self, texts: list[str], add_special_tokens: bool = True, side: TruncationSide = "right"
    ) -> list[list[Token]]:
        """Each token with its text and character offsets (for a ``/tokenize`` endpoint)."""
        encoded = self.encode_truncated(texts, side, add_special_tokens=add_special_tokens)
        return [
            [
                # Special tokens have no place in the text: (0, 0), as the whole text gives.
                Token(i, t, bool(s), start + (0 if s else first), stop + (0 if s else first))
                for i, t, s, (start, stop) in zip(
                    e.ids, e.tokens, e.special_tokens_mask, e.offsets, strict=True
                )
            ]
            for e, first in encoded
        ]

    def pad(self, sequences: list[list[int]]) -> EncodedBatch:
        """Right-pad token id lists to the longest one."""
        input_ids, attention_mask = pad(sequences, self.pad_id)  # (B, T) each
        return EncodedBatch(input_ids, attention_mask, lengths=attention_mask.sum(axis=1))

    def encode(self, texts: list[str], side: TruncationSide = "right") -> EncodedBatch:
        return self.pad(self.tokenize(texts, truncate=True, side=side))
