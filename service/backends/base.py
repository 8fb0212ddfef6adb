"""The seam between serving and inference: a backend turns token ids into vectors."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs the encoder on one padded batch. Not thread-safe: the batcher's worker owns it.

    ``input_ids`` and ``attention_mask`` are ``(B, T)`` int64; results are float32.
    """

    name: str
    precision: str

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Pooled, un-normalised sentence embeddings ``(B, D)``."""
        ...

    def run_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Per-token embeddings ``(B, T, D)`` (padding positions are garbage)."""
        ...

    def describe(self) -> dict[str, object]:
        """What runs, for /info: runtime, version, providers, threads."""
        ...


def warm_up(backend: Backend, max_length: int, pad_id: int = 0) -> None:
    """Run the shapes a fresh replica sees first so the first request pays no set-up cost."""
    for batch, length in ((1, 8), (8, 32), (2, max_length)):
        ids = np.full((batch, length), pad_id + 1, dtype=np.int64)
        backend.run(ids, np.ones_like(ids))


class GraphBackend:
    """A backend over an exported graph whose outputs are fetched by name."""

    def _run(self, output: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._run("sentence_embedding", input_ids, attention_mask)

    def run_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._run("token_embeddings", input_ids, attention_mask)
