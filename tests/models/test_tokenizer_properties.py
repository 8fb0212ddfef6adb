"""The tokenizer wrapper on any text a JSON body can carry, as properties of the shipped model.

Whatever Unicode arrives (surrogates excluded: JSON cannot carry them), up to ~20k characters:
no exception, every id in the vocabulary, never more than the limit, and truncation exact: the
bounded window the wrapper reads gives the whole text's tokens cut on the kept side, with the
special tokens kept at both ends.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Tokenizer, get_model_path
from models.tokenizer import TruncationSide

# Deterministic (derandomized), no example database written into the checkout.
SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None)
CHARACTERS = st.characters(exclude_categories=("Cs",))
MAX_CHARS = 20_000


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer(get_model_path() / "tokenizer.json", max_length=256)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Short arbitrary text, or long text of repeated words of any script cut anywhere (drawing
    20k characters one by one would cost seconds per example)."""
    if draw(st.booleans()):
        return draw(st.text(CHARACTERS, max_size=300))
    words = draw(st.lists(st.text(CHARACTERS, max_size=30), min_size=1, max_size=8))
    separator = draw(st.sampled_from([" ", "", "\n", ", ", "-"]))
    unit = separator.join(words) + separator
    if not unit:
        return ""
    repeated = unit * (MAX_CHARS // len(unit) + 1)
    return repeated[: draw(st.integers(0, MAX_CHARS))]


def cut(full: list[int], limit: int, side: TruncationSide) -> list[int]:
    """The whole text's ids truncated to ``limit``, keeping [CLS] and [SEP] at the ends."""
    if len(full) <= limit:
        return full
    keep = limit - 2
    body = full[1 : 1 + keep] if side == "right" else full[len(full) - 1 - keep : -1]
    return [full[0], *body, full[-1]]


@SETTINGS
@given(text=texts(), side=st.sampled_from(["right", "left"]), limit=st.sampled_from([3, 16, 256]))
def test_truncation_is_the_whole_tokenization_cut_on_that_side(
    tok: Tokenizer, text: str, side: TruncationSide, limit: int
) -> None:
    full = tok.tokenize([text], truncate=False)[0]
    [truncated] = tok.tokenize([text], truncate=True, side=side, limit=limit)
    assert len(truncated) <= limit
    assert all(0 <= i < tok.vocab_size for i in full)
    assert truncated == cut(full, limit, side), (len(text), text[:80])


@SETTINGS
@given(text=texts(), side=st.sampled_from(["right", "left"]))
def test_tokens_agree_with_ids_and_point_into_the_text(
    tok: Tokenizer, text: str, side: TruncationSide
) -> None:
    [tokens] = tok.tokens([text], side=side)
    assert [t.id for t in tokens] == tok.tokenize([text], side=side)[0]
    assert len(tokens) <= tok.max_length
    for token in tokens:
        assert 0 <= token.id < tok.vocab_size
        assert 0 <= token.start <= token.stop <= len(text)
        assert token.special or token.stop > token.start
