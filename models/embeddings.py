"""Input embeddings: token (+ position table) (+ token type), then the norm (if any) and dropout."""

from __future__ import annotations

from torch import Tensor, nn

from .config import EncoderConfig
from .norms import make_norm
from .positions import make_positions


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
        # Decoders (Qwen3) pass the raw embeddings to their first pre-norm layer.
        self.norm = make_norm(config) if config.embedding_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        x = self.position(self.token(input_ids))  # (B, T, D)
        if self.token_type is not None:
            # Sentence encoders see a single segment: type 0 unless told otherwise.
            types = self.token_type
            x = x + (types.weight[0] if token_type_ids is None else types(token_type_ids))
        return self.dropout(self.norm(x))
