"""The classification head of a cross-encoder: pooled vector -> one logit per label.

One shape covers the families we read: BERT's pooler (dense, tanh) and classifier; RoBERTa's
and MPNet's ``classifier.dense`` / ``classifier.out_proj`` (the same shape); ModernBERT's
``head`` (dense without bias, its ``classifier_activation``, a LayerNorm) and ``classifier``;
Qwen3's ``score`` (one output layer, no bias). Dropout does nothing at inference: there is none.
"""

from __future__ import annotations

from torch import Tensor, nn

from .config import EncoderConfig, HeadActivation

ACTIVATIONS: dict[HeadActivation, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


class ClassificationHead(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if config.num_labels < 1:
            raise ValueError(
                f"a classification head needs num_labels >= 1, got {config.num_labels}; an "
                f"embedder (num_labels 0) has no head"
            )
        d = config.d_model
        dense = config.head_dense
        self.dense = nn.Linear(d, d, bias=config.head_dense_bias) if dense else nn.Identity()
        self.activation = ACTIVATIONS[config.head_activation]() if dense else nn.Identity()
        self.norm = (
            nn.LayerNorm(d, eps=config.layer_norm_eps, bias=config.norm_bias)
            if config.head_norm
            else nn.Identity()
        )
        self.out = nn.Linear(d, config.num_labels, bias=config.head_bias)

    def forward(self, pooled: Tensor) -> Tensor:
        """(B, D) pooled vectors -> (B, num_labels) raw logits."""
        x = self.norm(self.activation(self.dense(pooled)))  # (B, D)
        return self.out(x)  # (B, L)
