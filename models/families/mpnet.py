"""MPNet (all-mpnet-base-v2): BERT-like post-norm layers with a shared relative position bias.

Learned absolute positions numbered from 2 (Hugging Face hard-codes MPNet's padding index to 1
and starts after it, as RoBERTa does), no token types, and T5-style bucketed relative position
scores (:mod:`models.relative`) computed once and added to every layer's attention scores.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError
from ..config import EncoderConfig
from . import bert
from .family import Family, SentenceSettings
from .head import DENSE_OUT_PROJ, Head, first_token_head

PADDING_IDX = 1  # MPNetEmbeddings.padding_idx: fixed, whatever config.json's pad_token_id says
# MPNetEncoder.compute_position_bias buckets with its default of 32 whatever the table's size.
BUCKETS = 32
MAX_DISTANCE = 128  # MPNetEncoder.relative_position_bucket's default, also fixed

NAMES = (
    (r"embeddings\.word_embeddings\.", "embeddings.token."),
    (r"embeddings\.position_embeddings\.", "embeddings.position."),
    (r"embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"encoder\.relative_attention_bias\.", "biases.relative.table."),
    (r"encoder\.layer\.(\d+)\.attention\.attn\.q\.", r"layers.\1.attention.q_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attn\.k\.", r"layers.\1.attention.k_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attn\.v\.", r"layers.\1.attention.v_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attn\.o\.", r"layers.\1.attention.out_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.LayerNorm\.", r"layers.\1.norm1."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.ffn.up."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.ffn.down."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.norm2."),
)
IGNORED = re.compile(r"^(embeddings\.position_ids|pooler\..*|lm_head\..*)$")


def read_config(cfg: dict[str, Any], folder: Path, settings: SentenceSettings) -> EncoderConfig:
    """BERT's keys, no token types, positions from 2, 32 relative buckets."""
    buckets = cfg.get("relative_attention_num_buckets", BUCKETS)
    if buckets != BUCKETS:
        raise CheckpointError(
            f"{folder}: relative_attention_num_buckets is {buckets}, but MPNet buckets relative "
            f"positions into {BUCKETS} whatever the table's size; only {BUCKETS} is supported"
        )
    return bert.read_config(
        cfg,
        folder,
        settings,
        position_offset=PADDING_IDX + 1,
        type_vocab_size=0,
        relative_buckets=BUCKETS,
        relative_max_distance=MAX_DISTANCE,
    )


FAMILY = Family(
    "mpnet",
    read_config,
    NAMES,
    IGNORED,
    prefix="mpnet.",
    head=Head(DENSE_OUT_PROJ, first_token_head),  # MPNetClassificationHead
)
