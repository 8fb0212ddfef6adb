"""The seam between serving and inference: a backend turns token ids into vectors or scores."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

# The exported graph's outputs: an embedder's pooled vector (B, D) and every token's vector
# (B, T, D); a classifier's (cross-encoder's) raw logits (B, num_labels).
Output = Literal["sentence_embedding", "token_embeddings", "logits"]


class Backend(Protocol):
    """Runs the encoder on one padded batch. Not thread-safe: the batcher's worker owns it.

    ``input_ids`` and ``attention_mask`` are ``(B, T)`` int64; results are float32.
    """

    name: str
    precision: str

    def run_output(
        self, output: Output, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        """One named output: ``sentence_embedding``, pooled and un-normalised ``(B, D)``,
        ``token_embeddings`` ``(B, T, D)`` (padding positions are garbage), or a classifier's
        ``logits`` ``(B, num_labels)``."""
        ...

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``run_output("sentence_embedding", ...)``."""
        ...

    def describe(self) -> dict[str, object]:
        """What runs, for /info: runtime, version, providers, threads."""
        ...


def warm_up(
    backend: Backend, max_length: int, token_id: int = 1, output: Output = "sentence_embedding"
) -> None:
    """Run the shapes a fresh replica sees first so the first request pays no set-up cost;
    ``output`` is one the graph has (a classifier's has no ``sentence_embedding``)."""
    for batch, length in ((1, 8), (8, 32), (2, max_length)):
        ids = np.full((batch, length), token_id, dtype=np.int64)
        backend.run_output(output, ids, np.ones_like(ids))


class NamedOutputs:
    """The shared half of a backend: ``run`` is the pooled output of ``run_output``."""

    def run_output(
        self, output: Output, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.run_output("sentence_embedding", input_ids, attention_mask)
