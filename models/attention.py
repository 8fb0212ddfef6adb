"""Scaled dot-product attention and multi-head attention.

Masks are additive biases (0 where a key may be attended, a very negative number where not):
padding and causality from :func:`attention_bias`, combined with the other biases some families
use (relative positions, sliding windows) once per forward in :mod:`models.masks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AttentionImpl
from .positions import NoRotation


def attention_bias(
    key_padding_mask: Tensor | None,
    *,
    causal: bool = False,
    query_len: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor | None:
    """Additive mask from a key-padding mask (1 = real token, 0 = padding) and/or causality.

    Returns ``(B, 1, 1, Tk)`` for padding only, ``(B|1, 1, Tq, Tk)`` with causality, or None.
    The finite minimum of ``dtype`` (not -inf) keeps fully masked rows free of NaNs.
    """
    neg = torch.finfo(dtype).min
    if not causal:
        if key_padding_mask is None:
            return None
        keep = key_padding_mask[:, None, None, :].to(dtype)  # (B, 1, 1, Tk)
        return (1.0 - keep) * neg
    if key_padding_mask is not None:
        tk = key_padding_mask.shape[-1]
    elif query_len is not None:
        tk = query_len
    else:
        raise ValueError("a causal mask needs query_len when there is no key_padding_mask")
    tq = query_len if query_len is not None else tk
    device = key_padding_mask.device if key_padding_mask is not None else None
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=device).tril(tk - tq)[None, None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :].bool()  # (B, 1, Tq, Tk)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, neg)


def attention_math(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """softmax(Q·Kᵀ/√d_k + bias)·V written out: the reference, and a lean ONNX graph."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q * scale) @ k.transpose(-2, -1)  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, Tq, Dh)


def attention_sdpa(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """The same math through PyTorch's fused kernel (faster in eager mode)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)


ATTENTION = {"math": attention_math, "sdpa": attention_sdpa}


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Each key/value head repeated for the ``groups`` query heads that share it (GQA).

    Query head h reads key/value head h // groups, as ``repeat_interleave`` on the head axis
    would give; expand + reshape copies once. With one query head per K/V head, x as it is.
    """
    if groups == 1:
        return x
    b, h_kv, t, dh = x.shape  # (B, Hkv, T, Dh)
    x = x[:, :, None].expand(b, h_kv, groups, t, dh)  # (B, Hkv, G, T, Dh)
    return x.reshape(b, h_kv * groups, t, dh)  # (B, H, T, Dh)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with its own Q/K/V/output projections.

    ``key_value`` defaults to ``query`` (self-attention); pass another sequence for
    cross-attention. ``n_kv_heads`` below ``n_heads`` shares each key/value head among
    ``n_heads // n_kv_heads`` query heads (grouped-query attention: a smaller K/V projection).
    ``head_dim`` (default d_model / n_heads) may differ from that: Qwen3-Embedding-0.6B has 16
    heads of 128 features over a 1024-wide stream, so q and out map between d_model and
    n_heads × head_dim. ``head_norm`` makes one norm per head for q and k (Qwen3; by default
    none), applied before ``rotation`` (rotary positions; by default none). ``bias=False``
    drops the projections' biases (ModernBERT, Qwen3).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        impl: AttentionImpl = "sdpa",
        *,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        rotation: nn.Module | None = None,
        head_norm: Callable[[], nn.Module] = nn.Identity,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if head_dim is None and d_model % n_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by n_heads ({n_heads}); "
                f"pick n_heads among the divisors of d_model, or give head_dim"
            )
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads != 0:
            raise ValueError(
                f"n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads}); "
                f"pick n_kv_heads among the divisors of n_heads"
            )
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = d_model // n_heads if head_dim is None else head_dim
        self.dropout = dropout
        self.impl = impl
        self.rotation = NoRotation() if rotation is None else rotation
        self.q_norm = head_norm()
        self.k_norm = head_norm()
        inner = n_heads * self.head_dim  # d_model unless head_dim says otherwise
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)

    def _split(self, x: Tensor, heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, Dh)

    def forward(
        self, query: Tensor, key_value: Tensor | None = None, bias: Tensor | None = None
    ) -> Tensor:
        kv = query if key_value is None else key_value
        b, tq, _ = query.shape  # (B, Tq, D)
        q = self.q_norm(self._split(self.q_proj(query), self.n_heads))  # (B, H, Tq, Dh)
        k = self.k_norm(self._split(self.k_proj(kv), self.n_kv_heads))  # (B, Hkv, Tk, Dh)
        v = self._split(self.v_proj(kv), self.n_kv_heads)  # (B, Hkv, Tk, Dh)
        q, k = self.rotation(q, k)  # same shapes
        groups = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, Tk, Dh)
        p = self.dropout if self.training else 0.0
        y = ATTENTION[self.impl](q, k, v, bias, p)  # (B, H, Tq, Dh)
        y = y.transpose(1, 2).reshape(b, tq, self.n_heads * self.head_dim)  # (B, Tq, H·Dh)
        return self.out_proj(y)  # (B, Tq, D)
