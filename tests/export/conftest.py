"""Fixtures for the export tests: tiny random-config checkpoints and one all-MiniLM-L6-v2 export.

Tiny models (d_model 32, 2 layers, 4 heads) export and pass parity in a few seconds; the real
model is exported once per session by the suite-wide ``minilm_artifact`` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from models import EncoderConfig, build_model, get_model_path, save_model

REPO = Path(__file__).resolve().parents[2]
TINY: dict[str, Any] = {
    "vocab_size": 100,
    "d_model": 32,
    "n_heads": 4,
    "n_layers": 2,
    "d_ff": 64,
    "max_position": 64,
    "max_seq_length": 48,
}
MINILM_TOKENIZER = get_model_path() / "tokenizer.json"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Callable[..., Path]:
    """Factory: save a random tiny encoder (config overrides as keywords) and return its folder.

    ``with_tokenizer=True`` ships all-MiniLM-L6-v2's tokenizer, so the vocabulary grows to
    30522 rows (still ~1M parameters) to hold its ids.
    """
    counter = iter(range(1000))

    def make(with_tokenizer: bool = False, seed: int = 0, **overrides: Any) -> Path:
        config = {**TINY, **overrides}
        if with_tokenizer:
            config["vocab_size"] = 30522
        torch.manual_seed(seed)
        model = build_model(EncoderConfig(**config))
        folder = tmp_path / f"tiny{next(counter)}"
        return save_model(model, folder, MINILM_TOKENIZER if with_tokenizer else None)

    return make


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "export", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m export ...`` in a fresh interpreter, as a user would run it."""
    return _run_cli
