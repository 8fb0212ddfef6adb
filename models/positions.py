"""Where a token sits: tables added to the embeddings, or rotations of queries and keys.

``learned`` and ``sinusoidal`` add a (P, D) table to the token embeddings, once, before the
first layer. ``rotary`` (Su et al., RoFormer) adds nothing there; every attention layer rotates
each query and key by an angle proportional to its position, so a score q·k depends only on how
far apart the two tokens are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import EncoderConfig


def position_angles(n_positions: int, dim: int, theta: float = 10000.0) -> Tensor:
    """angle[pos, i] = pos / theta^(2i/dim) for i < dim/2: one frequency per pair of features."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(theta) / dim)
    )  # (dim/2,)
    return position * inv_freq  # (P, dim/2), float64 so long tables stay exact


def sinusoidal_table(n_positions: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same), as in Vaswani et al."""
    angles = position_angles(n_positions, d_model)  # (P, D/2)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.float()  # (P, D)


class LearnedPositions(nn.Embedding):
    """A trained (P, D) table; its one parameter keeps the name ``position.weight``.

    Token i of an input reads row ``offset + i``. RoBERTa and MPNet number positions from
    pad_token_id + 1 (fairseq's convention; their rows below that are never trained), so a
    right-padded input's real tokens sit at offset + i there too.
    """

    def __init__(self, n_positions: int, d_model: int, offset: int = 0) -> None:
        super().__init__(n_positions, d_model)
        self.offset = offset

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, D) token embeddings
        return x + self.weight[self.offset : self.offset + x.shape[1]]  # (B, T, D)


class SinusoidalPositions(nn.Module):
    """The fixed sinusoid table: not a parameter and not saved, rebuilt from the config."""

    table: Tensor  # (P, D)

    def __init__(self, n_positions: int, d_model: int) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(n_positions, d_model), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, D) token embeddings
        return x + self.table[: x.shape[1]]  # (B, T, D)


def make_positions(config: EncoderConfig) -> nn.Module:
    """What the embeddings add for position: a table, or nothing when attention rotates."""
    if config.positional == "learned":
        return LearnedPositions(config.max_position, config.d_model, config.position_offset)
    if config.positional == "sinusoidal":
        return SinusoidalPositions(config.max_position, config.d_model)
    return nn.Identity()


def rotary_tables(n_positions: int, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin of :func:`position_angles`, each angle written for both halves: (P, Dh)."""
    angles = position_angles(n_positions, head_dim, theta)  # (P, Dh/2)
    angles = torch.cat((angles, angles), dim=-1)  # (P, Dh)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last axis: a quarter turn of each pair."""
    x1, x2 = x.chunk(2, dim=-1)  # (..., Dh/2) each
    return torch.cat((-x2, x1), dim=-1)  # (..., Dh)


def apply_rotary(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate feature pairs (i, i + Dh/2) of q and k by their positions' angles.

    q: (B, H, Tq, Dh), k: (B, Hkv, Tk, Dh), cos/sin: (P, Dh) with P >= Tq, Tk. The pairing of
    halves (not of neighbours) is the one Hugging Face Llama/Qwen/ModernBERT weights expect.
    """
    tq, tk = q.shape[-2], k.shape[-2]
    q = q * cos[:tq] + rotate_half(q) * sin[:tq]  # (B, H, Tq, Dh)
    k = k * cos[:tk] + rotate_half(k) * sin[:tk]  # (B, Hkv, Tk, Dh)
    return q, k


class Rotary(nn.Module):
    """Rotary position embedding of queries and keys, tables precomputed for ``n_positions``."""

    cos: Tensor  # (P, Dh)
    sin: Tensor  # (P, Dh)

    def __init__(self, n_positions: int, head_dim: int, theta: float) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary positions need an even head_dim, got {head_dim}")
        cos, sin = rotary_tables(n_positions, head_dim, theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        return apply_rotary(q, k, self.cos, self.sin)


class NoRotation(nn.Module):
    """Queries and keys unchanged: positions came in with the embeddings."""

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        return q, k


def make_rotation(config: EncoderConfig, local: bool = False) -> nn.Module:
    """What attention does to q and k for position: rotate them, or nothing.

    ``local`` layers rotate by ``local_rope_theta`` when the config sets one (ModernBERT: 10k
    locally, 160k globally, so the global layers resolve longer distances).
    """
    if config.positional != "rotary":
        return NoRotation()
    theta = config.local_rope_theta if local and config.local_rope_theta else config.rope_theta
    return Rotary(config.max_position, config.head_size, theta)
