"""Input embeddings: token (+ position table) (+ token type), then the norm (if any) and dropout."""

from __future__ import annotations

from torch import Tensor, nn

from .config import EncoderConfig
from .norms import make_norm
from .positions import make_positions


def segment_types(input_ids: Tensor, separator: int) -> Tensor:
    """Token types of ``[CLS] q [SEP] d [SEP]`` pairs: 0 up to and including the first
    separator, 1 after it, as BERT's pair template assigns them. Arithmetic only (no
    data-dependent branch), so it exports to ONNX as it is.
    """
    is_sep = (input_ids == separator).long()  # (B, T)
    return (is_sep.cumsum(dim=1) - is_sep).clamp(max=1)  # (B, T): separators before each token


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        self.position = make_positions(config)  # adds a (P, D) table, or nothing (rotary)
        self.token_type = (
            nn.Embedding(config.type_vocab_size, config.d_model)
            if config.type_vocab_size > 0
            else None
        )
        self.segment_separator = config.segment_separator
        # Decoders (Qwen3) pass the raw embeddings to their first pre-norm layer.
        self.norm = make_norm(config) if config.embedding_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.position(self.token(input_ids))  # (B, T, D)
        if self.token_type is not None:
            if self.segment_separator is None:
                # Sentence encoders see a single segment: type 0.
                x = x + self.token_type.weight[0]
            else:
                x = x + self.token_type(segment_types(input_ids, self.segment_separator))
        return self.dropout(self.norm(x))
