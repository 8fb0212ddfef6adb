"""BERT, and the sentence-transformers models built on it (all-MiniLM-L6-v2 among them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..checkpoint import TOKENIZER_FILE, CheckpointError
from ..config import EncoderConfig
from .family import Family, SentenceSettings, sizes
from .head import Head

NAMES = (
    (r"embeddings\.word_embeddings\.", "embeddings.token."),
    (r"embeddings\.position_embeddings\.", "embeddings.position."),
    (r"embeddings\.token_type_embeddings\.", "embeddings.token_type."),
    (r"embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.query\.", r"layers.\1.attention.q_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.key\.", r"layers.\1.attention.k_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.value\.", r"layers.\1.attention.v_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.out_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.norm1."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.ffn.up."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.ffn.down."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.norm2."),
)
IGNORED = re.compile(r"^(embeddings\.position_ids|pooler\..*)$")


def read_config(
    cfg: dict[str, Any], folder: Path, settings: SentenceSettings, **family: Any
) -> EncoderConfig:
    """Our config from a BERT ``config.json``: post-norm, LayerNorm, learned positions.

    BERT's descendants (RoBERTa, MPNet) read the same keys; ``family`` is what they set on top
    (their ``position_offset``, no token types, a relative bias).
    """
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{folder}: only absolute position embeddings are supported")
    act = cfg.get("hidden_act", "gelu")
    if act not in ("gelu", "relu"):
        raise CheckpointError(f"{folder}: activation {act!r} is not supported (gelu, relu)")
    fields: dict[str, Any] = dict(
        **sizes(cfg, settings, family.get("position_offset", 0)),
        type_vocab_size=cfg.get("type_vocab_size", 2),
        activation=act,
        dropout=cfg.get("hidden_dropout_prob", 0.1),
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        pad_token_id=cfg.get("pad_token_id", 0),
    )
    return EncoderConfig(**(fields | family))


# BertForSequenceClassification: the pooler (dense, tanh) is the head's first half.
HEAD_NAMES = (
    (r"bert\.pooler\.dense\.", "head.dense."),
    (r"classifier\.", "head.out."),
)
SEPARATOR = "[SEP]"


def separator_id(cfg: dict[str, Any], folder: Path) -> int:
    """The id that ends the query of a ``[CLS] q [SEP] d [SEP]`` pair: ``config.json``'s
    ``sep_token_id`` when it has one (transformers 5's BertConfig writes none), else the id of
    ``[SEP]`` in the folder's tokenizer.json (what BERT's pair template puts there)."""
    if cfg.get("sep_token_id") is not None:
        return int(cfg["sep_token_id"])
    path = folder / TOKENIZER_FILE
    sep = Tokenizer.from_file(str(path)).token_to_id(SEPARATOR) if path.is_file() else None
    if sep is None:
        raise CheckpointError(
            f"{folder}: a BERT cross-encoder needs its separator id (token type 1 starts after "
            f"it): config.json has no sep_token_id and {path} has no {SEPARATOR} token"
        )
    return sep


def read_head(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The first token through the pooler, then the classifier; the document is segment 1."""
    two_segments = cfg.get("type_vocab_size", 2) >= 2
    return {
        "pooling": "cls",
        "segment_separator": separator_id(cfg, folder) if two_segments else None,
    }


FAMILY = Family(
    "bert", read_config, NAMES, IGNORED, prefix="bert.", head=Head(HEAD_NAMES, read_head)
)
