import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

from models import Tokenizer, get_model_path
from models.tokenizer import CHARS_PER_TOKEN, MAX_CHARS_PER_TOKEN

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


@pytest.fixture(scope="module")
def minilm_tok() -> Tokenizer:
    return Tokenizer(get_model_path() / "tokenizer.json", max_length=256)


def _whole(tok: Tokenizer, text: str, side: str):
    """The reference: the whole text through the library's own truncation."""
    reference = HFTokenizer.from_file(str(tok.path))
    reference.no_padding()
    reference.enable_truncation(tok.max_length, direction=side)
    return reference.encode(text)


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncating_a_window_equals_truncating_the_whole_text(
    minilm_tok: Tokenizer, corpus: list[str], side: str
) -> None:
    joined = " ".join(corpus)
    texts = [
        *corpus,
        joined,
        "x" * 150 + " " + joined,  # a word over WordPiece's 100 characters at the cut
        "!" * 50_000,  # every character a word
        "Zürich " * 5000,
        "\u4e2d\u6587" * 20_000,  # each CJK character a word of its own
    ]
    for text in texts:
        whole = _whole(minilm_tok, text, side)
        assert minilm_tok.tokenize([text], side=side)[0] == whole.ids, text[:40]
        tokens = minilm_tok.tokens([text], side=side)[0]
        assert [(t.start, t.stop) for t in tokens] == whole.offsets, text[:40]


def test_a_5_mb_input_is_tokenized_from_a_bounded_window(
    minilm_tok: Tokenizer, corpus: list[str]
) -> None:
    joined = " ".join(corpus)
    huge = (joined + " ") * (5 * 1024 * 1024 // len(joined))
    for side in ("right", "left"):
        [(encoding, start)] = minilm_tok.encode_truncated([huge], side)  # type: ignore[arg-type]
        read = len(encoding.ids) + sum(len(o.ids) for o in encoding.overflowing)
        assert read <= 256 * CHARS_PER_TOKEN  # tokens of the window, not of 5 MB
        assert encoding.ids == _whole(minilm_tok, huge[:20_000] if side == "right"
                                      else huge[-20_000:], side).ids  # fmt: skip
        assert start == (0 if side == "right" else len(huge) - 256 * CHARS_PER_TOKEN)


def test_a_word_past_the_window_bound_is_cut_there(minilm_tok: Tokenizer) -> None:
    one_word = "a" * 5_000_000
    [(encoding, _)] = minilm_tok.encode_truncated([one_word])
    assert encoding.ids == [101, 100, 102]  # [CLS] [UNK] [SEP], as the whole text gives
    assert sum(len(o.ids) for o in encoding.overflowing) == 0
    assert len(encoding.offsets) == 3 and encoding.offsets[1][1] <= 256 * MAX_CHARS_PER_TOKEN
