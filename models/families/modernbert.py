"""ModernBERT: pre-norm, rotary, GeGLU, no biases, alternating global and local attention.

Every ``global_attn_every_n_layers``-th layer (from layer 0) attends to the whole input with a
rotary base of 160k; the others see only tokens within ``local_attention / 2`` of the query,
with a base of 10k. Layer 0 has no attention norm (the embeddings were just normed). The
attention's q, k, v and the feed-forward's two input halves are fused tensors in the checkpoint
(``Wqkv``, ``Wi``); :func:`split_fused` separates them into our projections.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checkpoint import CheckpointError
from ..config import EncoderConfig, HeadActivation
from .family import PRE_NORM_ROTARY_GLU, Family, SentenceSettings, activation, rope_theta, sizes
from .head import Head

NAMES = (
    (r"embeddings\.tok_embeddings\.", "embeddings.token."),
    (r"layers\.(\d+)\.attn_norm\.", r"layers.\1.norm1."),
    (r"layers\.(\d+)\.attn\.Wqkv\.", r"layers.\1.attention.qkv."),
    (r"layers\.(\d+)\.attn\.Wo\.", r"layers.\1.attention.out_proj."),
    (r"layers\.(\d+)\.mlp_norm\.", r"layers.\1.norm2."),
    (r"layers\.(\d+)\.mlp\.Wi\.", r"layers.\1.ffn.wi."),
    (r"layers\.(\d+)\.mlp\.Wo\.", r"layers.\1.ffn.down."),
)  # embeddings.norm and final_norm already carry our names
# The masked-language-model head of a ModernBertForMaskedLM.
IGNORED = re.compile(r"^(head\..*|decoder\..*)$")
# Fused tensor -> the names its equal row blocks become, in the order Hugging Face stacks them.
# Wi's output is chunked as (input, gate) and computes Wo(act(input) * gate): its "input" half
# is what our gated block activates (``gate``), its "gate" half is our plain ``up``.
FUSED = (
    (re.compile(r"^(layers\.\d+\.attention)\.qkv\.(weight|bias)$"), ("q_proj", "k_proj", "v_proj")),
    (re.compile(r"^(layers\.\d+\.ffn)\.wi\.(weight|bias)$"), ("gate", "up")),
)


def split_fused(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each fused tensor cut into equal row blocks under our names; other tensors unchanged."""
    out = {}
    for name, tensor in tensors.items():
        for pattern, parts in FUSED:
            if match := pattern.match(name):
                owner, kind = match.groups()
                for part, block in zip(parts, tensor.chunk(len(parts), dim=0), strict=True):
                    out[f"{owner}.{part}.{kind}"] = block  # (rows / parts, ...)
                break
        else:
            out[name] = tensor
    return out


def global_every(layer_types: list[str], folder: Path) -> int:
    """The period of the global layers in ``layer_types``; a pattern we cannot express is
    refused (a global layer every n, from layer 0)."""
    fulls = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
    every = fulls[1] if len(fulls) > 1 else len(layer_types)
    if [i % every == 0 for i in range(len(layer_types))] != [
        kind == "full_attention" for kind in layer_types
    ]:
        raise CheckpointError(
            f"{folder}: layer_types {layer_types} is not 'a global layer every n from layer 0'"
        )
    return every


def read_config(cfg: dict[str, Any], folder: Path, settings: SentenceSettings) -> EncoderConfig:
    """Our config from a ModernBERT ``config.json`` (transformers 4.x or 5 keys)."""
    n_layers = cfg["num_hidden_layers"]
    every_n = cfg.get("global_attn_every_n_layers", 3)
    layer_types = cfg.get("layer_types") or [
        "full_attention" if i % every_n == 0 else "sliding_attention" for i in range(n_layers)
    ]
    rope = cfg.get("rope_parameters") or {}
    has_local = "sliding_attention" in layer_types
    return EncoderConfig(
        **sizes(cfg, settings),
        **PRE_NORM_ROTARY_GLU,
        rope_theta=rope_theta(
            rope.get("full_attention"), cfg.get("global_rope_theta", 160000.0), folder
        ),
        local_rope_theta=rope_theta(
            rope.get("sliding_attention"), cfg.get("local_rope_theta", 10000.0), folder
        ),
        activation=activation(cfg, "hidden_activation", "gelu", folder),
        attention_dropout=cfg.get("attention_dropout", 0.0),
        layer_norm_eps=cfg.get("norm_eps", 1e-5),
        pad_token_id=cfg.get("pad_token_id", 0),
        attention_bias=cfg.get("attention_bias", False),
        mlp_bias=cfg.get("mlp_bias", False),
        norm_bias=cfg.get("norm_bias", False),
        first_attention_norm=False,
        local_window=cfg.get("local_attention", 128) if has_local else None,
        global_every=global_every(layer_types, folder) if has_local else 1,
    )


# ModernBertForSequenceClassification: head.dense -> act -> head.norm, then classifier.
HEAD_NAMES = (
    (r"head\.dense\.", "head.dense."),
    (r"head\.norm\.", "head.norm."),
    (r"classifier\.", "head.out."),
)
HEAD_POOLING = ("cls", "mean")
HEAD_ACTIVATIONS: tuple[HeadActivation, ...] = ("gelu", "relu", "silu", "tanh")


def read_head(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``classifier_pooling``, ``classifier_activation`` and ``classifier_bias`` (the dense
    layer's bias; the output layer always has one); the norm uses the trunk's eps and bias."""
    pooling = cfg.get("classifier_pooling", "cls")
    act = cfg.get("classifier_activation", "gelu")
    if pooling not in HEAD_POOLING or act not in HEAD_ACTIVATIONS:
        raise CheckpointError(
            f"{folder}: classifier_pooling {pooling!r} / classifier_activation {act!r} is not "
            f"supported; pooling one of {HEAD_POOLING}, activation one of {HEAD_ACTIVATIONS}"
        )
    return {
        "pooling": pooling,
        "head_activation": act,
        "head_norm": True,
        "head_dense_bias": cfg.get("classifier_bias", False),
    }


FAMILY = Family(
    "modernbert",
    read_config,
    NAMES,
    IGNORED,
    prefix="model.",
    convert=split_fused,
    head=Head(HEAD_NAMES, read_head),
)
