"""What reading one Hugging Face model family takes: its config translated, its tensors renamed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from torch import Tensor

from ..checkpoint import CheckpointError
from ..config import Activation, EncoderConfig, Pooling
from ..feedforward import ACTIVATIONS
from .head import Head


@dataclass(frozen=True)
class SentenceSettings:
    """What a sentence-transformers folder says beside ``config.json``."""

    max_seq_length: int | None  # sentence_bert_config.json; None: as long as positions allow
    pooling: Pooling


# (``config.json`` as read, the folder for messages, sentence settings) -> our config.
ReadConfig = Callable[[dict[str, Any], Path, SentenceSettings], EncoderConfig]
# Renamed tensors -> ours, for what no rename can do (split a fused projection in two or three).
Convert = Callable[[dict[str, Tensor]], dict[str, Tensor]]


def unchanged(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return tensors


def rope_theta(params: dict[str, Any] | None, fallback: float, folder: Path) -> float:
    """The base of plain rotary positions from a ``rope_parameters`` (transformers 5) or
    ``rope_scaling`` (4.x) dict, or ``fallback`` (4.x's top-level ``rope_theta``).

    Scaled variants (linear, dynamic, YaRN...) change the angles; they are refused by name.
    """
    params = params or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise CheckpointError(
            f"{folder}: rotary scaling {kind!r} is not supported; only plain (default) rotary "
            f"positions are"
        )
    return float(params.get("rope_theta", fallback))


def max_length(settings: SentenceSettings, usable: int) -> int:
    """Tokens per input: sentence-transformers' ``max_seq_length`` within what positions allow."""
    return min(settings.max_seq_length or usable, usable)


def sizes(
    cfg: dict[str, Any], settings: SentenceSettings, position_offset: int = 0
) -> dict[str, Any]:
    """The fields every family reads from the same ``config.json`` keys: widths, depth,
    positions, and what the sentence-transformers folder says (length, pooling)."""
    max_position = cfg["max_position_embeddings"]
    return {
        "vocab_size": cfg["vocab_size"],
        "d_model": cfg["hidden_size"],
        "n_heads": cfg["num_attention_heads"],
        "n_layers": cfg["num_hidden_layers"],
        "d_ff": cfg["intermediate_size"],
        "max_position": max_position,
        "max_seq_length": max_length(settings, max_position - position_offset),
        "pooling": settings.pooling,
    }


# What the post-BERT families (Qwen3, ModernBERT) share: rotary positions instead of a table,
# no token types, pre-norm layers with a gated feed-forward, no dropout at inference.
PRE_NORM_ROTARY_GLU: dict[str, Any] = {
    "positional": "rotary",
    "type_vocab_size": 0,
    "norm": "pre",
    "feed_forward": "gated",
    "dropout": 0.0,
}


def activation(cfg: dict[str, Any], key: str, default: Activation, folder: Path) -> Activation:
    """``cfg[key]`` if our feed-forward has that activation; otherwise refused by name."""
    act = cfg.get(key, default)
    if act not in ACTIVATIONS:
        raise CheckpointError(
            f"{folder}: activation {act!r} is not supported ({', '.join(ACTIVATIONS)})"
        )
    return cast(Activation, act)  # one of ACTIVATIONS' keys, checked just above


def _renamed(rules: tuple[tuple[str, str], ...], name: str) -> str | None:
    """``name`` by the first rule whose pattern it starts with; None when none fits."""
    for pattern, ours in rules:
        new, n = re.subn("^" + pattern, ours, name)
        if n:
            return new
    return None


@dataclass(frozen=True)
class Family:
    """One ``model_type``: how its ``config.json`` and tensor names become ours.

    A tensor that fits no rule and is not ``ignored`` keeps its name, so loading fails on it
    by name (:func:`models.checkpoint.load_state`) rather than being dropped in silence.
    ``convert`` runs on the renamed tensors: ModernBERT's fused ``Wqkv`` and ``Wi`` are split
    into our separate projections there. ``head`` (None: the family has no classifier we
    read) renames a cross-encoder's head tensors, matched on their whole names before anything
    else, so the ``ignored`` rule of an embedder (which drops poolers and heads) never sees them.
    """

    model_type: str
    read_config: ReadConfig
    names: tuple[tuple[str, str], ...]  # (pattern on the Hugging Face name, ours); first wins
    ignored: re.Pattern[str]  # tensors sentence embedding does not use (heads, buffers)
    prefix: str = ""  # stripped first: the "bert." of a BertFor... checkpoint
    convert: Convert = unchanged
    head: Head | None = None

    def rename(self, tensors: dict[str, Tensor], classifier: bool = False) -> dict[str, Tensor]:
        """Our names for a checkpoint's tensors; ``classifier``: its head's too."""
        head_names = self.head.names if classifier and self.head is not None else ()
        out = {}
        for name, tensor in tensors.items():
            if (ours := _renamed(head_names, name)) is not None:
                out[ours] = tensor
                continue
            name = name.removeprefix(self.prefix)
            if self.ignored.match(name):
                continue
            out[_renamed(self.names, name) or name] = tensor
        return self.convert(out)
