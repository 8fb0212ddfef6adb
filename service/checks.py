"""What a request's inputs must satisfy before any inference is spent on them.

Each check raises an :class:`ApiError` with the status and code a client can act on (400 for
input that can never work, 413 for input that is too big); the pipelines' first stage runs them
(``service.tasks``). The request models only document these bounds (``service.protocol``).
"""

from __future__ import annotations

from collections.abc import Sequence, Sized

import numpy as np

from models.tokenizer import TruncationSide

from .errors import ApiError

# Without truncation, an over-long input is counted up to this many times the model's limit, so
# its 413 says how long it is without tokenizing megabytes.
COUNT_LIMIT_FACTOR = 4


def check_count(count: int, max_inputs: int) -> None:
    if count == 0:
        raise ApiError(400, "input must not be empty", "input", "empty_input")
    if count > max_inputs:
        raise ApiError(
            413, f"{count} inputs; at most {max_inputs} per request", "input", "too_many_inputs"
        )


def check_texts(texts: list[str]) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"input[{index}] is an empty string", "input", "empty_input")


def check_pairs(inputs: Sequence[str | tuple[str, str]]) -> None:
    """Texts and (query, document) pairs with no empty text in them."""
    for index, item in enumerate(inputs):
        texts = (item,) if isinstance(item, str) else item
        if not all(texts):
            raise ApiError(400, f"input[{index}] has an empty text", "input", "empty_input")


def check_dimensions(dimensions: int | None, dimension: int) -> None:
    """Refuse a ``dimensions`` the model cannot give."""
    if dimensions is not None and dimensions > dimension:
        raise ApiError(
            400, f"dimensions must be between 1 and {dimension}", "dimensions", "invalid_dimensions"
        )


def token_arrays(sequences: list[list[int]], vocab_size: int) -> list[np.ndarray]:
    """Client-supplied ids as int64 arrays, each non-empty and inside the vocabulary."""
    arrays = []
    for index, seq in enumerate(sequences):
        if not seq:
            raise ApiError(400, f"input[{index}] is an empty token list", "input", "empty_input")
        try:
            array = np.asarray(seq, dtype=np.int64)
            known = array.min() >= 0 and array.max() < vocab_size
        except OverflowError:  # JSON allows ids past int64
            known = False
        if not known:
            raise ApiError(
                400,
                f"input[{index}] has token ids outside the vocabulary 0..{vocab_size - 1}",
                "input",
                "invalid_token_id",
            )
        arrays.append(array)
    return arrays


def count_limit(max_length: int, truncate: bool) -> int:
    """Tokens to keep of a text: the model's limit, or with ``truncate=False`` enough to know
    (and say) how far past it the text goes."""
    return max_length if truncate else max_length * COUNT_LIMIT_FACTOR + 1


def reject_long(sequences: Sequence[Sized], max_length: int) -> None:
    """413 for the first input over ``max_length`` tokens, saying how long it is."""
    counted = max_length * COUNT_LIMIT_FACTOR
    for index, seq in enumerate(sequences):
        if len(seq) > max_length:
            size = f"more than {counted}" if len(seq) > counted else str(len(seq))
            raise ApiError(
                413,
                f"input[{index}] has {size} tokens; the model takes at most "
                f"{max_length} (send truncate=true to cut it)",
                "input",
                "input_too_long",
            )


def cut(arrays: list[np.ndarray], max_length: int, side: TruncationSide) -> list[np.ndarray]:
    """Each input cut to ``max_length`` tokens on ``side``."""
    n = max_length
    return [a[:n] if side == "right" else a[-n:] for a in arrays]
