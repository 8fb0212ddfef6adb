"""Position-wise feed-forward and the encoder layer (attention → add & norm → FFN → add & norm)."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .config import EncoderConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


class FeedForward(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.act = ACTIVATIONS[config.activation]()
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))  # (B, T, D) -> (B, T, F) -> (B, T, D)


class EncoderLayer(nn.Module):
    """Post-norm (BERT: norm after each residual add) or pre-norm (norm before each block)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.attention = MultiHeadAttention(
            config.d_model, config.n_heads, config.attention_dropout, config.attention
        )
        self.norm1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.norm2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:  # x: (B, T, D)
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.norm1(x), bias=bias))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, bias=bias)))
        return self.norm2(x + self.dropout(self.ffn(x)))
