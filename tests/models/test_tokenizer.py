import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

from models import Tokenizer, get_model_path
from models.tokenizer import CHARS_PER_TOKEN, MAX_CHARS_PER_TOKEN, TruncationSide
from tests.tiny_models import KINDS, tiny_tokenizer

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


def _whole(tok: Tokenizer, side: str) -> HFTokenizer:
    """The reference: the library's own truncation of the whole text."""
    reference = HFTokenizer.from_file(str(tok.path))
    reference.no_padding()
    reference.enable_truncation(tok.max_length, direction=side)
    return reference


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncating_a_window_equals_truncating_the_whole_text(
    minilm_tok: Tokenizer, corpus: list[str], side: TruncationSide
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
    reference = _whole(minilm_tok, side)
    for text in texts:
        whole = reference.encode(text)
        assert minilm_tok.tokenize([text], side=side)[0] == whole.ids, text[:40]
        tokens = minilm_tok.tokens([text], side=side)[0]
        assert [(t.start, t.stop) for t in tokens] == whole.offsets, text[:40]


def test_a_5_mb_input_is_tokenized_from_a_bounded_window(
    minilm_tok: Tokenizer, corpus: list[str]
) -> None:
    joined = " ".join(corpus)
    huge = (joined + " ") * (5 * 1024 * 1024 // len(joined))
    for side in ("right", "left"):
        [(encoding, start)] = minilm_tok.encode_truncated([huge], side)
        read = len(encoding.ids) + sum(len(o.ids) for o in encoding.overflowing)
        assert read <= 256 * CHARS_PER_TOKEN  # tokens of the window, not of 5 MB
        window = huge[:20_000] if side == "right" else huge[-20_000:]
        assert encoding.ids == _whole(minilm_tok, side).encode(window).ids
        assert start == (0 if side == "right" else len(huge) - 256 * CHARS_PER_TOKEN)


def test_a_word_past_the_window_bound_is_cut_there(minilm_tok: Tokenizer) -> None:
    one_word = "a" * 5_000_000
    [(encoding, _)] = minilm_tok.encode_truncated([one_word])
    assert encoding.ids == [101, 100, 102]  # [CLS] [UNK] [SEP], as the whole text gives
    assert sum(len(o.ids) for o in encoding.overflowing) == 0
    assert len(encoding.offsets) == 3 and encoding.offsets[1][1] <= 256 * MAX_CHARS_PER_TOKEN


@pytest.fixture(scope="module")
def tiny_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kind: tiny_tokenizer(kind, tmp_path_factory.mktemp(kind)) for kind in KINDS}


def test_special_tokens_and_truncation_as_transformers_gives_them(
    tiny_tokenizers: dict[str, Path], corpus: list[str]
) -> None:
    from transformers import AutoTokenizer

    texts = [*corpus[:40], *corpus[-3:], " ".join(corpus[-3:])]
    ends = {"bert": ("[CLS]", "[SEP]"), "mpnet": ("<s>", "</s>"), "xlm-roberta": ("<s>", "</s>"),
            "modernbert": ("[CLS]", "[SEP]"), "qwen3": (None, "<|endoftext|>")}  # fmt: skip
    for kind, path in tiny_tokenizers.items():
        ours = Tokenizer(path, max_length=64)
        theirs = AutoTokenizer.from_pretrained(str(path.parent))
        expected = theirs(texts, truncation=True, max_length=64)["input_ids"]
        assert ours.tokenize(texts) == expected, kind
        first, last = ends[kind]
        [tokens] = ours.tokens(["hello world"])
        assert tokens[-1].text == last and tokens[-1].special, kind
        assert (tokens[0].text, tokens[0].special) == ((first, True) if first else ("he", False))
        assert ours.pad_id == theirs.pad_token_id, kind


@pytest.mark.parametrize("kind", ["xlm-roberta", "qwen3"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_window_is_exact_for_unigram_and_byte_level_too(
    tiny_tokenizers: dict[str, Path], corpus: list[str], kind: str, side: TruncationSide
) -> None:
    tok = Tokenizer(tiny_tokenizers[kind], max_length=256)
    joined = " ".join(corpus[-20:])
    reference = _whole(tok, side)
    for text in (joined, "Zürich   \n\n " * 3000, "word" * 20_000, joined.replace(" ", "  ")):
        assert tok.tokenize([text], side=side)[0] == reference.encode(text).ids, text[:40]


def _tokenizer_files(source: Path, target: Path, *files: str) -> Path:
    target.mkdir()
    for name in ("tokenizer.json", *files):
        shutil.copy(source.parent / name, target / name)
    return target / "tokenizer.json"


def test_pad_id_from_padding_config_then_special_tokens_then_model(
    tiny_tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    source = tiny_tokenizers["xlm-roberta"]  # <s> 0, <pad> 1
    sidecars = ("tokenizer_config.json", "special_tokens_map.json")
    assert Tokenizer(source, 16, default_pad_id=7).pad_id == 1
    only_map = _tokenizer_files(source, tmp_path / "map", sidecars[1])
    assert Tokenizer(only_map, 16, default_pad_id=7).pad_id == 1
    bare = _tokenizer_files(source, tmp_path / "bare")
    assert Tokenizer(bare, 16, default_pad_id=7).pad_id == 7

    added_token = {"pad_token": {"content": "<pad>", "special": True}}
    as_dict = _tokenizer_files(source, tmp_path / "dict")
    (as_dict.parent / "tokenizer_config.json").write_text(json.dumps(added_token))
    assert Tokenizer(as_dict, 16).pad_id == 1

    padded = _tokenizer_files(source, tmp_path / "padded", *sidecars)
    file = HFTokenizer.from_file(str(padded))
    file.enable_padding(pad_id=3, pad_token="<unk>")
    file.save(str(padded))
    tok = Tokenizer(padded, 16, default_pad_id=7)
    assert tok.pad_id == 3
    assert tok.tokenize(["hi"]) == [tok.tokenize(["hi", "a much longer text"])[0]]  # no padding
