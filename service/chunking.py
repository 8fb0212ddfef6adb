"""Inputs longer than the model's window, embedded whole (``long_input: "chunk"``).

A text over the model's ``max_length`` tokens is split into windows of at most ``max_length``
tokens, each framed like a whole input (the tokenizer's special tokens, and the prompt when the
text had one), neighbours sharing ``overlap`` tokens so no sentence is only ever seen cut in
two. Every window runs through the model's batcher beside everyone else's inputs (its own
sequence, on whichever stream takes it; the cache keeps it like any input), and the windows'
pooled vectors are averaged, each weighted by its token count, before ``dimensions`` and
normalisation: for a mean-pooling model that is the mean over every token embedded (overlapping
tokens twice), the pooling the model would have done with a window long enough.

Token ids are windowed too, framed as a text is when they carry the tokenizer's special tokens
(``/tokenize``'s answer does), else as they are.

A request may split into at most ``max_windows`` sequences in all (a short input is one), so a
chunked request costs at most what the largest plain request does; past it, 413. A text that
fits one window is one window, exactly what truncation would have sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import ApiError

if TYPE_CHECKING:
    from models.tokenizer import Tokenizer

# What to do with an input over the model's window: cut it (the default, as every peer does),
# refuse it with 413, or embed it whole in windows.
LongInput = Literal["truncate", "error", "chunk"]


@dataclass(frozen=True)
class Frame:
    """Where a tokenized input's text sits: ``head`` ids before it (special tokens, then the
    prompt's), ``tail`` ids after it (special tokens)."""

    head: int
    tail: int


@dataclass(frozen=True)
class Framing:
    """A model's frame of one input: the special tokens its tokenizer puts before and after a
    text, and the ids of the prompt the request's texts were given (tokenized alone)."""

    lead: np.ndarray
    prompt: np.ndarray
    trail: np.ndarray

    @classmethod
    def of(cls, lead: Sequence[int], prompt: Sequence[int], trail: Sequence[int]) -> Framing:
        return cls(*(np.asarray(ids, dtype=np.int64) for ids in (lead, prompt, trail)))

    @classmethod
    def bare(cls) -> Framing:
        return cls.of([], [], [])

    @classmethod
    def around(cls, tokenizer: Tokenizer | None) -> Framing:
        """An unprompted text's frame: the tokenizer's special tokens; none without one."""
        if tokenizer is None:
            return cls.bare()
        lead, trail = tokenizer.special_ids()
        return cls.of(lead, [], trail)

    @property
    def most(self) -> Frame:
        """The frame of a tokenized, prompted text: what its windows repeat at most."""
        return Frame(len(self.lead) + len(self.prompt), len(self.trail))

    def frames(self, sequences: Sequence[np.ndarray]) -> list[Frame]:
        """Each input's frame. Token ids that carry the special tokens (what ``/tokenize``
        answers) are framed as a text is; ids without them are windowed as they are. The
        prompt's ids join the head of every input that starts with them, so each window is
        prompted as the whole input was; where the prompt's last token merged with the text's
        first, the prompt stays in the first window only."""
        lead, trail, prompt = len(self.lead), len(self.trail), len(self.prompt)
        found = []
        for ids in sequences:
            framed = len(ids) >= lead + trail and np.array_equal(ids[:lead], self.lead)
            framed = framed and np.array_equal(ids[len(ids) - trail :], self.trail)
            head, tail = (lead, trail) if framed else (0, 0)
            prompted = prompt and np.array_equal(ids[head : head + prompt], self.prompt)
            found.append(Frame(head + prompt if prompted else head, tail))
        return found


@dataclass(frozen=True)
class Windows:
    """A request's inputs as the sequences the model runs: ``sequences`` holds every input's
    windows in input order, ``counts`` how many each input has."""

    sequences: list[np.ndarray]
    counts: list[int]

    def pool(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One ``(D,)`` vector per input: its windows' pooled vectors averaged, each weighted by
        its token count (float64 sums, float32 out, as the model's own outputs)."""
        pooled, start = [], 0
        for count in self.counts:
            rows = np.stack(vectors[start : start + count]).astype(np.float64)  # (w, D)
            weights = np.array([len(s) for s in self.sequences[start : start + count]], float)
            pooled.append((weights @ rows / weights.sum()).astype(np.float32))  # (D,)
            start += count
        return pooled


@dataclass(frozen=True)
class Chunker:
    """Splits one model's inputs into windows (module docstring)."""

    max_length: int  # tokens per window, special tokens and prompt included
    overlap: int  # tokens of text a window shares with the one before it
    max_windows: int  # sequences per request, all inputs counted

    def token_limit(self, frame: Frame) -> int:
        """Tokens worth reading of one input: one more than ``max_windows`` windows hold, so a
        longer text is known to be too long without tokenizing all of it."""
        room, stride = self.room(frame)
        return frame.head + frame.tail + room + (self.max_windows - 1) * stride + 1

    def check(self, framing: Framing) -> None:
        """Refuse, at start-up, an overlap no window of this model can hold: every chunked
        request would be refused. Prompts are checked per request (``room``): a model's one
        long prompt should not keep the rest of it from serving."""
        room = self.max_length - len(framing.lead) - len(framing.trail)
        if room <= self.overlap:
            raise ValueError(
                f"chunk_overlap ({self.overlap}) must be below the {room} tokens of text a "
                f"window of this model holds ({self.max_length} with its special tokens)"
            )

    def room(self, frame: Frame) -> tuple[int, int]:
        """Text tokens per window, and how far each window starts after the one before."""
        room = self.max_length - frame.head - frame.tail
        if room <= self.overlap:
            raise ApiError(
                400,
                f"the prompt leaves {room} tokens of text per window, not more than the "
                f"windows' overlap of {self.overlap}",
                "long_input",
                "prompt_too_long_to_chunk",
            )
        return room, room - self.overlap

    def split(self, sequences: Sequence[np.ndarray], frames: Sequence[Frame]) -> Windows:
        """Each input's windows; 413 when the request needs more than ``max_windows``."""
        windows: list[np.ndarray] = []
        counts: list[int] = []
        for ids, frame in zip(sequences, frames, strict=True):
            parts = self._windows(ids, frame)
            windows += parts
            counts.append(len(parts))
        if len(windows) > self.max_windows:
            raise ApiError(
                413,
                f"the inputs need more than {self.max_windows} windows of {self.max_length} "
                "tokens, the most a request may have: split the request, or shorten them",
                "input",
                "too_many_windows",
            )
        return Windows(windows, counts)

    def _windows(self, ids: np.ndarray, frame: Frame) -> list[np.ndarray]:
        if len(ids) <= self.max_length:
            return [ids]
        room, stride = self.room(frame)
        head, tail = ids[: frame.head], ids[len(ids) - frame.tail :]
        text = ids[frame.head : len(ids) - frame.tail]
        starts = range(0, max(len(text) - self.overlap, 1), stride)
        return [np.concatenate([head, text[s : s + room], tail]) for s in starts]
