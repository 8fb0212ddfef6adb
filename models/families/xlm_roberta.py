"""XLM-RoBERTa and RoBERTa (multilingual-e5, paraphrase-multilingual, bge-m3's dense head).

BERT's architecture and tensor names with fairseq's position numbering: positions start at
``pad_token_id + 1`` (Hugging Face derives them from the ids; for a right-padded input the real
tokens sit at pad_token_id + 1 + i), so ``max_position_embeddings`` (514) leaves 512 usable.
There is one token type.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config import EncoderConfig
from . import bert
from .family import Family, SentenceSettings
from .head import DENSE_OUT_PROJ, Head, first_token_head

# Also the tokens-per-position buffer some exports saved; the pooler and LM head are unused.
IGNORED = re.compile(r"^(embeddings\.(position_ids|token_type_ids)|pooler\..*|lm_head\..*)$")


def read_config(cfg: dict[str, Any], folder: Path, settings: SentenceSettings) -> EncoderConfig:
    """BERT's keys, positions offset by ``pad_token_id + 1``."""
    return bert.read_config(
        cfg,
        folder,
        settings,
        position_offset=cfg.get("pad_token_id", 1) + 1,
        type_vocab_size=cfg.get("type_vocab_size", 1),
    )


HEAD = Head(DENSE_OUT_PROJ, first_token_head)  # RobertaClassificationHead
XLM_ROBERTA = Family("xlm-roberta", read_config, bert.NAMES, IGNORED, prefix="roberta.", head=HEAD)
ROBERTA = Family("roberta", read_config, bert.NAMES, IGNORED, prefix="roberta.", head=HEAD)
