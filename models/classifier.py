"""The cross-encoder: the encoder's trunk, pooled, then a classification head -> raw logits."""

from __future__ import annotations

from torch import Tensor

from .config import EncoderConfig
from .heads import ClassificationHead
from .model import EncoderTrunk
from .pooling import pool


class SequenceClassifier(EncoderTrunk):
    """What a ``*ForSequenceClassification`` checkpoint computes, dropout aside.

    The trunk's tensors keep :class:`~models.model.SentenceEncoder`'s names and the head's go
    under ``head.``. Pooling follows ``config.pooling``: BERT, RoBERTa and MPNet read the first
    token, ModernBERT its ``classifier_pooling``, Qwen3 the last real token (transformers takes
    the rightmost token that is not the pad id; with a pad id that is no real token, that is the
    last one the mask keeps, on either padding side).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.head = ClassificationHead(config)  # refuses num_labels 0 (an embedder)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) int64 ids and mask -> (B, num_labels) raw logits."""
        x = self.hidden_states(input_ids, attention_mask)  # (B, T, D)
        return self.head(pool(x, attention_mask, self.config.pooling))  # (B, D) -> (B, L)
