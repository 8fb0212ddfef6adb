"""Normalisation of each token's features: LayerNorm (BERT) or RMSNorm (Llama/Qwen-style)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import EncoderConfig


class RMSNorm(nn.Module):
    """x / rms(x) · weight: LayerNorm without the mean and without a bias (Zhang & Sennrich).

    Computed in float32 whatever the input dtype: a half-precision mean of squares loses the
    small features the division is meant to preserve.
    """

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, D)
        h = x.float()
        mean_square = h.pow(2).mean(dim=-1, keepdim=True)  # (B, T, 1)
        return (h * torch.rsqrt(mean_square + self.eps)).to(x.dtype) * self.weight  # (B, T, D)


def make_norm(config: EncoderConfig, features: int | None = None) -> nn.Module:
    """The norm ``config.norm_type`` names, over ``features`` (default ``d_model``).

    ``layer`` is PyTorch's own LayerNorm: its fused kernel, and the weight/bias names that saved
    folders and BERT checkpoints use; ``norm_bias=False`` drops its bias (ModernBERT).
    """
    features = config.d_model if features is None else features
    if config.norm_type == "rms":
        return RMSNorm(features, eps=config.layer_norm_eps)
    return nn.LayerNorm(features, eps=config.layer_norm_eps, bias=config.norm_bias)


def make_head_norm(config: EncoderConfig) -> nn.Module:
    """What attention applies to each head of q and k before rotating them.

    Qwen3 normalises every head's ``head_dim`` features on their own (so the scores cannot grow
    with the scale of the projections); other families leave q and k as projected.
    """
    return make_norm(config, config.head_size) if config.qk_norm else nn.Identity()
