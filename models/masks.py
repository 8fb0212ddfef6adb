"""Every additive attention bias an encoder's layers use, built once per forward.

A layer adds one bias to its scores: 0 where a query may read a key, a very negative number
where not (padding, the future under ``causal``, keys beyond a local window), plus MPNet's
relative position scores. The encoder builds one per kind of layer, ``global`` and ``local``,
from parts chosen in ``__init__``; a part that a config does not use adds no operation, so
BERT's graph is the padding bias alone, as before.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .attention import attention_bias
from .config import EncoderConfig
from .relative import make_relative_bias

Span = Literal["global", "local"]


def window_bias(length: int, window: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(1, 1, T, T): 0 where |query - key| <= window // 2, the dtype's minimum elsewhere.

    ModernBERT's local layers: ``local_attention`` tokens centred on the query (Hugging Face
    ``sliding_window = local_attention // 2``, distance inclusive).
    """
    position = torch.arange(length, device=device)  # (T,)
    distance = (position[None, :] - position[:, None]).abs()  # (T, T)
    outside = (distance > window // 2)[None, None]  # (1, 1, T, T)
    return torch.zeros(outside.shape, dtype=dtype, device=device).masked_fill(
        outside, torch.finfo(dtype).min
    )


class SlidingWindow(nn.Module):
    """Adds :func:`window_bias` to the global bias: what the local layers use."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def forward(self, bias: Tensor, length: int) -> Tensor:
        # The sum of two minima overflows to -inf in float32; clamp keeps it finite, so a row
        # with no readable key (a padding query) stays free of NaNs.
        local = bias + window_bias(length, self.window, bias.dtype, bias.device)  # (B, H|1, T, T)
        return local.clamp(min=torch.finfo(bias.dtype).min)


class NoWindow(nn.Module):
    """Every layer is global: the local bias is the global one."""

    def forward(self, bias: Tensor | None, length: int) -> Tensor | None:
        return bias


class AttentionBiases(nn.Module):
    """(B, T) mask (1 = real token) -> the bias of each span; layers pick theirs by ``span``.

    Global: padding (+ causal) (+ relative positions). Local: that plus the sliding window.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.causal = config.causal
        self.relative = make_relative_bias(config)  # owns MPNet's (buckets, heads) table
        self.window = (
            NoWindow() if config.local_window is None else SlidingWindow(config.local_window)
        )

    def forward(self, attention_mask: Tensor, dtype: torch.dtype) -> dict[Span, Tensor | None]:
        length = attention_mask.shape[1]
        bias = attention_bias(attention_mask, causal=self.causal, dtype=dtype)  # (B, 1, 1|T, T)
        bias = self.relative(bias, length)  # (B, H|1, 1|T, T)
        return {"global": bias, "local": self.window(bias, length)}
