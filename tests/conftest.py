"""Fixtures shared across the suite: the shipped model, its reference, and real texts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 exported once per session through the real export CLI."""
    out = tmp_path_factory.mktemp("artifacts") / "all-MiniLM-L6-v2"
    cmd = [sys.executable, "-m", "export", "--model", "all-MiniLM-L6-v2", "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return out
