"""The one typed config that describes an encoder: every hyper-parameter lives here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Positional = Literal["learned", "sinusoidal"]
NormPlacement = Literal["post", "pre"]
Activation = Literal["gelu", "relu"]
Pooling = Literal["mean", "cls", "max"]
AttentionImpl = Literal["sdpa", "math"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "positional": ("learned", "sinusoidal"),
    "norm": ("post", "pre"),
    "activation": ("gelu", "relu"),
    "pooling": ("mean", "cls", "max"),
    "attention": ("sdpa", "math"),
}


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Hyper-parameters of a BERT-family sentence encoder.

    Defaults are those of all-MiniLM-L6-v2, so ``EncoderConfig()`` describes the default model.
    ``attention`` picks the implementation of the same math: ``sdpa`` is PyTorch's fused kernel
    (fast in eager mode), ``math`` spells out MatMul -> Softmax -> MatMul (a leaner ONNX graph).
    """

    vocab_size: int = 30522
    d_model: int = 384
    n_heads: int = 12
    n_layers: int = 6
    d_ff: int = 1536
    max_position: int = 512  # rows of the position table
    max_seq_length: int = 256  # tokens per input the model is used with (<= max_position)
    type_vocab_size: int = 2  # 0 disables token-type embeddings
    positional: Positional = "learned"
    norm: NormPlacement = "post"
    activation: Activation = "gelu"
    pooling: Pooling = "mean"
    attention: AttentionImpl = "sdpa"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                f"change n_heads to a divisor of d_model or d_model to a multiple of n_heads"
            )
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.positional == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if not 0 < self.max_seq_length <= self.max_position:
            raise ValueError(
                f"max_seq_length ({self.max_seq_length}) must be in 1..max_position "
                f"({self.max_position}); raise max_position or lower max_seq_length"
            )
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def replace(self, **changes: Any) -> EncoderConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys: {unknown}")
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> EncoderConfig:
        return cls.from_dict(json.loads(path.read_text()))
