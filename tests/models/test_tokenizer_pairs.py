"""Pair tokenization against transformers' tokenizers: the pair template and
``truncation=True`` (longest first), right and left, on every kind's tokenizer."""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from common.texts import pairs, passages, sentences
from models import Tokenizer
from models.tokenizer import TruncationSide, longest_first
from tests.tiny_models import KINDS, tiny_tokenizer

MEGABYTE = 1 << 20


@functools.cache
def _folder(kind: str, root: Path) -> Path:
    return tiny_tokenizer(kind, root / kind).parent


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pair-tokenizers")


def _transformers_ids(
    folder: Path, pairs: list[tuple[str, str]], side: TruncationSide, limit: int
) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), truncation_side=side)
    queries, documents = ([*texts] for texts in zip(*pairs, strict=True))
    return tokenizer(queries, documents, truncation=True, max_length=limit)["input_ids"]


def _cases() -> list[tuple[str, str]]:
    """Real pairs (short queries, long and short documents), both sides long, empty sides."""
    long_query = " ".join(passages()[:2])
    return [
        *pairs(queries=2, documents=4),
        (long_query, passages()[3]),
        (passages()[3], long_query),
        (passages()[4], passages()[4]),
        ("", sentences()[0]),
        (sentences()[1], ""),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_matches_transformers(kind: str, root: Path) -> None:
    folder = _folder(kind, root)
    ours = Tokenizer(folder / "tokenizer.json", max_length=64)
    # An even and an odd room: the odd one's last token goes to the longer side.
    sides: tuple[TruncationSide, ...] = ("right", "left")
    for side, limit in itertools.product(sides, (40, 41)):
        expected = _transformers_ids(folder, _cases(), side, limit)
        assert ours.tokenize_pairs(_cases(), side=side, limit=limit) == expected, (side, limit)
    whole = _transformers_ids(folder, _cases(), "right", 10**6)
    assert ours.tokenize_pairs(_cases(), truncate=False) == whole
    assert max(map(len, whole)) > 64  # the limit cut something


def _long_document_cut(kind: str, root: Path, size: int) -> None:
    """A ``size``-character document (and a pair with both sides long) cut to 127 tokens:
    the ids transformers gives on the whole texts, at the cost of the kept tokens."""
    folder = _folder(kind, root)
    ours = Tokenizer(folder / "tokenizer.json", max_length=128)
    text = " ".join(passages()) + " "
    document = (text * (size // len(text) + 1))[:size]
    cases = [(sentences()[2], document), (document[:5000], document[:7000])]
    started = time.perf_counter()
    ids = ours.tokenize_pairs(cases, side="right", limit=127)
    seconds = time.perf_counter() - started
    assert ids == _transformers_ids(folder, cases, "right", 127)
    assert seconds < 0.5, f"{seconds:.2f} s: the document was tokenized whole"


def test_a_long_document_is_cut_to_the_whole_texts_ids(root: Path) -> None:
    _long_document_cut("bert", root, 64_000)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert", "qwen3"])
def test_a_megabyte_document_is_cut_cheaply_to_the_whole_texts_ids(kind: str, root: Path) -> None:
    _long_document_cut(kind, root, MEGABYTE)


def test_longest_first_is_the_tokenizers_rule() -> None:
    """Over every split of small sides and rooms, the lengths `tokenizers` keeps."""
    vocab = {"[UNK]": 0, "a": 1}
    tok = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    for room in range(9):
        tok.enable_truncation(room, strategy="longest_first")
        for first, second in itertools.product(range(12), repeat=2):
            encoding = tok.encode("a " * first, "a " * second)
            kept = (encoding.type_ids.count(0), encoding.type_ids.count(1))
            assert longest_first(first, second, room) == kept, (first, second, room)


def test_a_limit_below_the_specials_is_refused(root: Path) -> None:
    ours = Tokenizer(_folder("xlm-roberta", root) / "tokenizer.json", max_length=64)
    with pytest.raises(ValueError, match="no room"):
        ours.tokenize_pairs([("a", "b")], limit=3)  # <s> q </s></s> d </s>: 4 specials
    assert ours.tokenize_pairs([("a", "b")], limit=4) == [ours.tokenize_pairs([("", "")])[0]]
    assert ours.tokenize_pairs([]) == []
