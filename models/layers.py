"""The encoder layer: attention → add & norm → feed-forward → add & norm, parts from the config."""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .config import EncoderConfig
from .feedforward import make_feed_forward
from .masks import Span
from .norms import make_head_norm, make_norm
from .positions import make_rotation


class EncoderLayer(nn.Module):
    """Post-norm (BERT: norm after each residual add) or pre-norm (norm before each block).

    ``index`` places the layer in the stack: it decides the layer's ``span`` (global, or local
    attention with its own rotary base) and, without ``first_attention_norm``, leaves layer 0's
    attention input un-normed (ModernBERT: the embeddings were just normed).
    """

    def __init__(self, config: EncoderConfig, index: int = 0) -> None:
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.span: Span = "global" if config.is_global(index) else "local"
        self.attention = MultiHeadAttention(
            config.d_model,
            config.n_heads,
            config.attention_dropout,
            config.attention,
            n_kv_heads=config.n_kv_heads,
            head_dim=config.head_dim,
            rotation=make_rotation(config, local=self.span == "local"),
            head_norm=partial(make_head_norm, config),
            bias=config.attention_bias,
        )
        skip_norm1 = index == 0 and not config.first_attention_norm
        self.norm1 = nn.Identity() if skip_norm1 else make_norm(config)
        self.ffn = make_feed_forward(config)
        self.norm2 = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:  # x: (B, T, D)
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.norm1(x), bias=bias))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, bias=bias)))
        return self.norm2(x + self.dropout(self.ffn(x)))
