"""Input embeddings: token + position (+ token type), then LayerNorm and dropout."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import EncoderConfig


def sinusoidal_table(n_positions: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same), as in Vaswani et al."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )  # (D/2,)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.float()  # (P, D)


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        if config.positional == "learned":
            self.position = nn.Embedding(config.max_position, config.d_model)
        else:
            # Fixed, so not a parameter and not saved: rebuilt identically from the config.
            self.register_buffer(
                "sinusoid", sinusoidal_table(config.max_position, config.d_model), persistent=False
            )
        self.token_type = (
            nn.Embedding(config.type_vocab_size, config.d_model)
            if config.type_vocab_size > 0
            else None
        )
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        t = input_ids.shape[1]
        table = self.position.weight if hasattr(self, "position") else self.sinusoid
        x = self.token(input_ids) + table[:t]  # (B, T, D)
        if self.token_type is not None:
            # Sentence encoders see a single segment: type 0 unless told otherwise.
            types = self.token_type
            x = x + (types.weight[0] if token_type_ids is None else types(token_type_ids))
        return self.dropout(self.norm(x))
