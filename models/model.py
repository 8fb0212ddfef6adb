"""The sentence encoder: embeddings → N encoder layers → pooling."""

from __future__ import annotations

from torch import Tensor, nn

from .config import EncoderConfig
from .embeddings import Embeddings
from .layers import EncoderLayer
from .masks import AttentionBiases
from .norms import make_norm
from .pooling import pool


class EncoderTrunk(nn.Module):
    """Embeddings and layers, shared by the embedder and the cross-encoder so both keep the
    same tensor names (the families rename a checkpoint once for either)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.biases = AttentionBiases(config)
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(config.n_layers))
        # Pre-norm stacks leave the residual stream un-normalised; close it with one norm.
        self.final_norm = make_norm(config) if config.norm == "pre" else nn.Identity()

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) int64 ids and mask -> the last layer's token embeddings (B, T, D)."""
        x = self.embeddings(input_ids)  # (B, T, D)
        biases = self.biases(attention_mask, x.dtype)  # BERT: {global, local}: (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, biases[layer.span])
        return self.final_norm(x)


class SentenceEncoder(EncoderTrunk):
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T) int64 ids and mask -> token embeddings (B, T, D), sentence embedding (B, D)."""
        x = self.hidden_states(input_ids, attention_mask)  # (B, T, D)
        return x, pool(x, attention_mask, self.config.pooling)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm (RMSNorm starts
    at one by construction)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(config: EncoderConfig) -> SentenceEncoder:
    """A fresh, randomly initialised encoder in eval mode."""
    model = SentenceEncoder(config)
    model.apply(init_weights)
    return model.eval()
