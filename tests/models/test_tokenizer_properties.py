"""The tokenizer wrapper on any text a JSON body can carry, for each kind of tokenizer.

Whatever Unicode arrives (surrogates excluded: JSON cannot carry them), up to ~20k characters:
no exception, every id in the vocabulary, never more than the limit, and truncation exact: the
bounded window the wrapper reads gives the whole text's tokens cut on the kept side, with the
special tokens kept at their ends. The kinds differ where a cut can change tokens: WordPiece
after BERT's split (the shipped model), Unigram after Metaspace (XLM-R), byte-level BPE with its
whitespace runs and one trailing special token (Qwen3).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Tokenizer, get_model_path
from models.tokenizer import TruncationSide
from tests.tiny_models import tiny_tokenizer

# Deterministic (derandomized), no example database written into the checkout.
SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None)
CHARACTERS = st.characters(exclude_categories=("Cs",))
MAX_CHARS = 20_000


@pytest.fixture(scope="module", params=["minilm-wordpiece", "xlm-roberta", "qwen3"])
def tok(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    if request.param == "minilm-wordpiece":
        return Tokenizer(get_model_path() / "tokenizer.json", max_length=256)
    folder = tmp_path_factory.mktemp(request.param)
    return Tokenizer(tiny_tokenizer(request.param, folder), max_length=256)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Short arbitrary text, or long text of repeated words of any script cut anywhere (drawing
    20k characters one by one would cost seconds per example)."""
    if draw(st.booleans()):
        return draw(st.text(CHARACTERS, max_size=300))
    words = draw(st.lists(st.text(CHARACTERS, max_size=30), min_size=1, max_size=8))
    separator = draw(st.sampled_from([" ", "", "\n", ", ", "-", "   ", "\n\n"]))
    unit = separator.join(words) + separator
    if not unit:
        return ""
    repeated = unit * (MAX_CHARS // len(unit) + 1)
    return repeated[: draw(st.integers(0, MAX_CHARS))]


def cut(tok: Tokenizer, full: list[int], limit: int, side: TruncationSide) -> list[int]:
    """The whole text's ids truncated to ``limit``, keeping the special tokens at the ends
    ([CLS] ... [SEP], <s> ... </s>, ... <|endoftext|>)."""
    if len(full) <= limit:
        return full
    [(marks, _)] = tok.encode_truncated(["x"], limit=10)
    special = marks.special_tokens_mask  # 1 = added by the post-processor
    lead, trail = special.index(0), special[::-1].index(0)
    keep = limit - lead - trail
    body = full[lead:-trail] if trail else full[lead:]
    body = body[:keep] if side == "right" else body[len(body) - keep :]
    return [*full[:lead], *body, *full[len(full) - trail :]]


@SETTINGS
@given(text=texts(), side=st.sampled_from(["right", "left"]), limit=st.sampled_from([3, 16, 256]))
def test_truncation_is_the_whole_tokenization_cut_on_that_side(
    tok: Tokenizer, text: str, side: TruncationSide, limit: int
) -> None:
    full = tok.tokenize([text], truncate=False)[0]
    [truncated] = tok.tokenize([text], truncate=True, side=side, limit=limit)
    assert len(truncated) <= limit
    assert all(0 <= i < tok.vocab_size for i in full)
    assert truncated == cut(tok, full, limit, side), (len(text), text[:80])


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
