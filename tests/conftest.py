"""Fixtures shared across the suite: the shipped model, its reference, and real texts."""

from __future__ import annotations

import os

import pytest

# The reference library must never reach for a hub: everything it needs is on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 loaded through our own code (models.load_pretrained)."""
    from models import load_pretrained

    return load_pretrained("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def reference():
    """The same files through sentence-transformers: the test-only reference."""
    from sentence_transformers import SentenceTransformer

    from models import get_model_path

    return SentenceTransformer(str(get_model_path()), device="cpu")


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """Real English text: every built-in sentence and passage."""
    from loadtest.corpus import passages, sentences

    return sentences() + passages()
