"""Pooling token embeddings into one sentence embedding, ignoring padding."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import Pooling


def pool(token_embeddings: Tensor, attention_mask: Tensor, mode: Pooling) -> Tensor:
    """(B, T, D) token embeddings + (B, T) mask (1 = real) -> (B, D), not normalised."""
    if mode == "cls":
        return token_embeddings[:, 0]
    if mode == "last":
        return last_token(token_embeddings, attention_mask)
    mask = attention_mask[:, :, None].to(token_embeddings.dtype)  # (B, T, 1)
    if mode == "mean":
        summed = (token_embeddings * mask).sum(dim=1)  # (B, D)
        count = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
        return summed / count
    if mode == "max":
        neg = torch.finfo(token_embeddings.dtype).min
        return token_embeddings.masked_fill(mask == 0, neg).amax(dim=1)
    raise ValueError(f"unknown pooling mode {mode!r}; use mean, cls, max or last")


def last_token(token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
    """The embedding of each input's last real token, wherever the padding is (left or right).

    A decoder's last token is the only one that has read the whole input. Its index is the
    largest position whose mask is 1, taken as an argmax over float positions (ONNX Runtime has
    no int64 ArgMax); an input with no real token gives position 0.
    """
    b, t, d = token_embeddings.shape  # (B, T, D)
    positions = torch.arange(1, t + 1, device=attention_mask.device, dtype=torch.float32)  # (T,)
    last = (attention_mask.to(torch.float32) * positions).argmax(dim=1)  # (B,)
    index = last[:, None, None].expand(b, 1, d)  # (B, 1, D)
    return token_embeddings.gather(1, index)[:, 0]  # (B, D)
