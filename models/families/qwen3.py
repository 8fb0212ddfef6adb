"""Qwen3 decoders used as embedders (Qwen3-Embedding): causal, last-token pooled.

Pre-norm RMSNorm layers, rotary positions, grouped-query attention with an explicit
``head_dim`` (0.6B: 16 heads × 128 over a 1024-wide stream), RMSNorm of each head of q and k
before the rotation, SwiGLU, no biases, no embedding norm, a final norm. Hugging Face pads these
models on the left; we pad on the right: under causal attention a real token never reads a
padding token after it, and rotary scores depend only on distances, so the last real token's
vector is the same either way (tested).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..checkpoint import TOKENIZER_FILE, CheckpointError
from ..config import EncoderConfig
from .family import PRE_NORM_ROTARY_GLU, Family, SentenceSettings, activation, rope_theta, sizes
from .head import Head

NAMES = (
    (r"embed_tokens\.", "embeddings.token."),
    (r"norm\.", "final_norm."),
    (r"layers\.(\d+)\.input_layernorm\.", r"layers.\1.norm1."),
    (r"layers\.(\d+)\.post_attention_layernorm\.", r"layers.\1.norm2."),
    (r"layers\.(\d+)\.self_attn\.o_proj\.", r"layers.\1.attention.out_proj."),
    (
        r"layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|q_norm|k_norm)\.",
        r"layers.\1.attention.\2.",
    ),
    (r"layers\.(\d+)\.mlp\.gate_proj\.", r"layers.\1.ffn.gate."),
    (r"layers\.(\d+)\.mlp\.up_proj\.", r"layers.\1.ffn.up."),
    (r"layers\.(\d+)\.mlp\.down_proj\.", r"layers.\1.ffn.down."),
)
# The language-model head of a Qwen3ForCausalLM, and the rotary buffer old exports saved.
IGNORED = re.compile(r"^(lm_head\..*|layers\.\d+\.self_attn\.rotary_emb\.inv_freq)$")


def read_config(cfg: dict[str, Any], folder: Path, settings: SentenceSettings) -> EncoderConfig:
    """Our config from a Qwen3 ``config.json`` (transformers 4.x or 5 keys)."""
    sliding = cfg.get("use_sliding_window") or "sliding_attention" in (cfg.get("layer_types") or [])
    if sliding:
        raise CheckpointError(
            f"{folder}: Qwen3 sliding-window layers are not supported; only full causal "
            f"attention (use_sliding_window false) is"
        )
    n_heads = cfg["num_attention_heads"]
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling")
    return EncoderConfig(
        **sizes(cfg, settings),
        **PRE_NORM_ROTARY_GLU,
        n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // n_heads,
        rope_theta=rope_theta(params, cfg.get("rope_theta", 10000.0), folder),
        norm_type="rms",
        activation=activation(cfg, "hidden_act", "silu", folder),
        attention_dropout=cfg.get("attention_dropout", 0.0),
        layer_norm_eps=cfg.get("rms_norm_eps", 1e-6),
        pad_token_id=cfg.get("pad_token_id") or 0,
        causal=True,
        qk_norm=True,
        attention_bias=cfg.get("attention_bias", False),
        mlp_bias=False,
        embedding_norm=False,
    )


def read_head(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Qwen3ForSequenceClassification: ``score`` (no bias) on the last real token.

    transformers scores the rightmost token that is not the pad id; that is the last real
    token only when the pad id is no token an input holds. A tokenizer whose template appends
    the pad token (Qwen's ``<|endoftext|>`` as both) would have it score the token before, so
    such a folder is refused rather than served with other scores.
    """
    pad, path = cfg.get("pad_token_id"), folder / TOKENIZER_FILE
    if pad is not None and path.is_file() and pad in Tokenizer.from_file(str(path)).encode("x").ids:
        raise CheckpointError(
            f"{folder}: pad_token_id {pad} is a token the tokenizer adds to every input, so "
            f"transformers' Qwen3 classifier does not score the last token; give the model a "
            f"pad token of its own"
        )
    return {"pooling": "last", "head_dense": False, "head_bias": False}


FAMILY = Family(
    "qwen3",
    read_config,
    NAMES,
    IGNORED,
    prefix="model.",
    head=Head(((r"score\.", "head.out."),), read_head),
)
