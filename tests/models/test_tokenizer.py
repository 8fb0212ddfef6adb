import numpy as np
import pytest

from models import Tokenizer, get_model_path

LONG = " ".join(f"word{i}" for i in range(300))


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer(get_model_path() / "tokenizer.json", max_length=16)


def test_batch_is_padded_int64_with_lengths(tok: Tokenizer) -> None:
    batch = tok.encode(["hello world", "a somewhat longer sentence here", "hi"])
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    assert batch.input_ids.shape == batch.attention_mask.shape == (3, int(batch.lengths.max()))
    assert list(batch.lengths) == list(batch.attention_mask.sum(axis=1))
    cls, sep = tok.tokenize(["x"])[0][0], tok.tokenize(["x"])[0][-1]
    for row, n in zip(batch.input_ids, batch.lengths, strict=True):
        assert row[0] == cls and row[n - 1] == sep
        assert (row[n:] == tok.pad_id).all()


def test_ignores_the_files_own_padding_and_truncation(tok: Tokenizer) -> None:
    # The shipped tokenizer.json pads to a fixed 128 and truncates at 128; we do neither.
    assert len(tok.tokenize(["hello"])[0]) == 3
    assert len(tok.tokenize([LONG], truncate=False)[0]) > 128


def test_truncation_right_and_left(tok: Tokenizer) -> None:
    full = tok.tokenize([LONG], truncate=False)[0]
    right = tok.tokenize([LONG], side="right")[0]
    left = tok.tokenize([LONG], side="left")[0]
    assert len(right) == len(left) == 16
    assert right[0] == left[0] == full[0] and right[-1] == left[-1] == full[-1]  # specials kept
    assert right[1:-1] == full[1:15]
    assert left[1:-1] == full[-15:-1]


def test_unknown_truncation_side(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="'right' or 'left'"):
        tok.tokenize(["x"], side="middle")  # type: ignore[arg-type]


def test_tokens_carry_text_and_offsets(tok: Tokenizer) -> None:
    text = "Hello, Zürich!"
    tokens = tok.tokens([text])[0]
    assert tokens[0].special and tokens[-1].special
    inner = tokens[1:-1]
    assert [t.id for t in tokens] == tok.tokenize([text])[0]
    assert not any(t.special for t in inner)
    assert [text[t.start : t.stop].lower() for t in inner][:2] == ["hello", ","]
    assert len(tok.tokens([text], add_special_tokens=False)[0]) == len(inner)
