"""Our encoder against ``transformers`` + sentence-transformers, family by family.

Each family's tiny random checkpoint (:mod:`tests.tiny_models`) is read by both; the vectors
must agree to a cosine of 0.99999 on real texts, in length-sorted batches and in one batch that
pads the shortest sentences to the longest passages (the reference pads Qwen3 on the left, we
on the right: last-token pooling must find the last real token either way).

The tiny models run on one thread: their ops are too small to split, and two threads on two
busy shared cores took 2-5 s per encode of the texts below against 0.15 s on one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from common.arrays import cosine_rows
from common.texts import passages, sentences
from models import load_encoder, load_pretrained
from tests.tiny_models import KINDS, MAX_POSITIONS, tiny_checkpoint, tiny_checkpoint_cached

MIN_COSINE = 0.99999
PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def _texts() -> list[str]:
    """196 sentences (3 to ~70 words) and 12 passages (over 128 tokens: they truncate)."""
    return sentences()[:196] + passages()[:12]


def _reference(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    min_cos = float(cosine_rows(ours, theirs).min())
    assert min_cos >= MIN_COSINE, min_cos


@pytest.mark.parametrize("kind", KINDS)
def test_family_matches_sentence_transformers(kind: str) -> None:
    folder = tiny_checkpoint_cached(kind)
    ours, reference = load_pretrained(folder), _reference(folder)
    texts = _texts()
    assert len(texts) >= 200
    assert ours.tokenizer.max_length == reference.max_seq_length
    theirs = reference.encode(texts, batch_size=16, convert_to_numpy=True)
    _assert_close(ours.encode(texts, batch_size=16), theirs)
    # One batch of the 6 longest and 26 shortest texts: most rows are mostly padding.
    order = np.argsort([len(t) for t in texts])
    mixed = [*order[-6:], *order[:26]]
    heavy = ours.encode([texts[i] for i in mixed], batch_size=len(mixed))
    _assert_close(heavy, theirs[mixed])


@pytest.mark.parametrize("kind", ["bert", "qwen3"])
def test_prompts_as_sentence_transformers_puts_them(kind: str) -> None:
    folder = tiny_checkpoint_cached(kind, prompts=PROMPTS, default_prompt_name="query")
    ours, reference = load_pretrained(folder), _reference(folder)
    assert (ours.prompts, ours.default_prompt_name) == (PROMPTS, "query")
    texts = _texts()[::8]
    for name in (None, "query", "passage"):
        theirs = reference.encode(texts, prompt_name=name, convert_to_numpy=True)
        _assert_close(ours.encode(texts, prompt_name=name), theirs)
    # The prompt changes the vectors (else the comparison above proves nothing).
    assert cosine_rows(ours.encode(texts, prompt_name="passage"), ours.encode(texts)).min() < 0.99
    with pytest.raises(ValueError, match="unknown prompt name 'doc'.*passage, query"):
        ours.encode(texts, prompt_name="doc")


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "lasttoken"])
def test_both_pooling_formats_give_the_reference_vectors(pooling: str, tmp_path: Path) -> None:
    texts = _texts()[::5]
    vectors = {}
    for form in ("v6", "legacy"):
        folder = tiny_checkpoint("bert", tmp_path / form, pooling=pooling, pooling_format=form)
        vectors[form] = load_pretrained(folder).encode(texts, batch_size=len(texts))
    np.testing.assert_array_equal(vectors["v6"], vectors["legacy"])
    _assert_close(vectors["v6"], _reference(tmp_path / "v6").encode(texts, convert_to_numpy=True))


@pytest.mark.parametrize("kind", KINDS)
def test_max_length_without_a_sentence_config_is_the_references(kind: str, tmp_path: Path) -> None:
    """No max_seq_length: the tokenizer's model_max_length, capped by the usable positions."""
    folder = shutil.copytree(tiny_checkpoint_cached(kind), tmp_path / kind)
    (folder / "sentence_bert_config.json").unlink()
    limit = load_encoder(folder).encoder.config.max_seq_length
    assert limit == _reference(folder).max_seq_length == MAX_POSITIONS
