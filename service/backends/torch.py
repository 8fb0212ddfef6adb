"""PyTorch eager: the reference the other backends are measured against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import load_encoder

from .base import NamedOutputs, Output

# Where each named output is in an embedder's (token_embeddings, sentence_embedding) tuple; a
# classifier returns its logits alone.
OUTPUT_INDEX: dict[Output, int] = {"token_embeddings": 0, "sentence_embedding": 1}


class TorchBackend(NamedOutputs):
    name = "torch"
    precision = "fp32"

    def __init__(self, model_source: str | Path, threads: int, device: str = "cpu") -> None:
        torch.set_num_threads(threads)
        self.device = torch.device(
            device if device != "cuda" or torch.cuda.is_available() else "cpu"
        )
        # A SentenceEncoder, or a SequenceClassifier for a classifier's checkpoint.
        self.encoder = load_encoder(model_source).encoder.to(self.device)
        self.threads = threads

    @torch.inference_mode()
    def _forward(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        return self.encoder(ids, mask)

    def run_output(
        self, output: Output, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        out = self._forward(input_ids, attention_mask)
        tensor = out if isinstance(out, torch.Tensor) else out[OUTPUT_INDEX[output]]
        return tensor.float().cpu().numpy()

    def describe(self) -> dict[str, object]:
        return {
            "runtime": "torch",
            "version": torch.__version__,
            "device": str(self.device),
            "intra_op_threads": self.threads,
        }
