"""Relative position bias (T5, MPNet): a learned score per head for how far apart two tokens are.

Instead of adding positions to the embeddings (or rotating q and k), every attention score
q_i·k_j gets ``weight[bucket(j - i), head]`` added. Nearby distances have a bucket each; farther
ones share buckets whose width grows logarithmically up to ``max_distance``, beyond which all
distances share the last bucket. Half the buckets are for keys before the query, half after.
MPNet computes this once per forward and adds it to every layer's scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import EncoderConfig


def relative_bucket(relative: Tensor, n_buckets: int, max_distance: int) -> Tensor:
    """Bucket of each relative distance ``key - query`` (int64 in, int64 of the same shape out).

    Keys at or before the query take buckets 0 .. n/2 - 1, keys after it n/2 .. n - 1. Within a
    half, distances below n/4 are exact; larger ones go to n/4 + ⌊log(d / (n/4)) /
    log(max_distance / (n/4)) · n/4⌋, capped at the half's last bucket (Raffel et al., T5).
    """
    half = n_buckets // 2
    after = (relative > 0).to(torch.long) * half  # keys after the query: the upper half
    distance = relative.abs()
    exact = half // 2
    # log(0) is -inf for distances that take the exact branch anyway; clamp keeps it finite.
    scaled = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = exact + (scaled * (half - exact)).to(torch.long)
    far = far.clamp(max=half - 1)
    return after + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """A learned (buckets, heads) ``table`` of scores, added by distance to a given bias."""

    def __init__(self, n_buckets: int, n_heads: int, max_distance: int) -> None:
        super().__init__()
        self.table = nn.Embedding(n_buckets, n_heads)
        self.max_distance = max_distance

    def scores(self, length: int) -> Tensor:
        """(1, H, T, T): the score each head adds for query i reading key j."""
        position = torch.arange(length, device=self.table.weight.device)  # (T,)
        relative = position[None, :] - position[:, None]  # (T, T): key - query
        buckets = relative_bucket(relative, self.table.num_embeddings, self.max_distance)
        return self.table(buckets).permute(2, 0, 1)[None]  # (T, T, H) -> (1, H, T, T)

    def forward(self, bias: Tensor | None, length: int) -> Tensor:
        """``bias`` (padding/causal, broadcastable to (B, H, T, T)) plus the relative scores."""
        scores = self.scores(length)  # (1, H, T, T)
        return scores if bias is None else bias + scores  # (B, H, T, T)


class NoRelativeBias(nn.Module):
    """The bias as it is: positions came in another way."""

    def forward(self, bias: Tensor | None, length: int) -> Tensor | None:
        return bias


def make_relative_bias(config: EncoderConfig) -> nn.Module:
    """MPNet's shared relative bias when ``relative_buckets`` is set, else nothing."""
    if config.relative_buckets:
        return RelativePositionBias(
            config.relative_buckets, config.n_heads, config.relative_max_distance
        )
    return NoRelativeBias()
