"""Pooling token embeddings into one sentence embedding, ignoring padding."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import Pooling


def pool(token_embeddings: Tensor, attention_mask: Tensor, mode: Pooling) -> Tensor:
    """(B, T, D) token embeddings + (B, T) mask (1 = real) -> (B, D), not normalised."""
    if mode == "cls":
        return token_embeddings[:, 0]
    mask = attention_mask[:, :, None].to(token_embeddings.dtype)  # (B, T, 1)
    if mode == "mean":
        summed = (token_embeddings * mask).sum(dim=1)  # (B, D)
        count = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
        return summed / count
    if mode == "max":
        neg = torch.finfo(token_embeddings.dtype).min
        return token_embeddings.masked_fill(mask == 0, neg).amax(dim=1)
    raise ValueError(f"unknown pooling mode {mode!r}; use mean, cls or max")
