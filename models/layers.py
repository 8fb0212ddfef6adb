"""The encoder layer: attention → add & norm → feed-forward → add & norm, parts from the config."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .config import EncoderConfig
from .feedforward import make_feed_forward
from .norms import make_norm
from .positions import make_rotation


class EncoderLayer(nn.Module):
    """Post-norm (BERT: norm after each residual add) or pre-norm (norm before each block)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.attention = MultiHeadAttention(
            config.d_model,
            config.n_heads,
            config.attention_dropout,
            config.attention,
            n_kv_heads=config.n_kv_heads,
            rotation=make_rotation(config),
        )
        self.norm1 = make_norm(config)
        self.ffn = make_feed_forward(config)
        self.norm2 = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:  # x: (B, T, D)
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.norm1(x), bias=bias))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, bias=bias)))
        return self.norm2(x + self.dropout(self.ffn(x)))
