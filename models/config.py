"""The one typed config that describes an encoder: every hyper-parameter lives here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

Positional = Literal["learned", "sinusoidal", "rotary"]
NormPlacement = Literal["post", "pre"]
NormType = Literal["layer", "rms"]
FeedForwardType = Literal["plain", "gated"]
Activation = Literal["gelu", "relu", "silu"]
Pooling = Literal["mean", "cls", "max"]
AttentionImpl = Literal["sdpa", "math"]


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Hyper-parameters of a sentence encoder: BERT, and the parts later families swap in.

    Defaults are those of all-MiniLM-L6-v2, so ``EncoderConfig()`` describes the default model.
    ``attention`` picks the implementation of the same math: ``sdpa`` is PyTorch's fused kernel
    (fast in eager mode), ``math`` spells out MatMul -> Softmax -> MatMul (a leaner ONNX graph).
    ``positional``: ``learned`` and ``sinusoidal`` tables are added to the token embeddings;
    ``rotary`` instead rotates queries and keys inside attention (by ``rope_theta``).
    ``n_kv_heads`` below ``n_heads`` is grouped-query attention (None: one K/V head per head).
    """

    vocab_size: int = 30522
    d_model: int = 384
    n_heads: int = 12
    n_kv_heads: int | None = None
    n_layers: int = 6
    d_ff: int = 1536
    max_position: int = 512  # rows of the position table
    max_seq_length: int = 256  # tokens per input the model is used with (<= max_position)
    type_vocab_size: int = 2  # 0 disables token-type embeddings
    positional: Positional = "learned"
    rope_theta: float = 10000.0
    norm: NormPlacement = "post"
    norm_type: NormType = "layer"
    feed_forward: FeedForwardType = "plain"
    activation: Activation = "gelu"
    pooling: Pooling = "mean"
    attention: AttentionImpl = "sdpa"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                f"change n_heads to a divisor of d_model or d_model to a multiple of n_heads"
            )
        kv = self.n_kv_heads
        if kv is not None and (kv < 1 or self.n_heads % kv != 0):
            divisors = [d for d in range(1, self.n_heads + 1) if self.n_heads % d == 0]
            raise ValueError(
                f"n_kv_heads ({kv}) must divide n_heads ({self.n_heads}); set n_kv_heads to one "
                f"of {divisors}, or None for one key/value head per query head"
            )
        if self.positional == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        head_dim = self.d_model // self.n_heads
        if self.positional == "rotary" and head_dim % 2 != 0:
            raise ValueError(
                f"rotary positions rotate pairs of features, so they need an even head_dim "
                f"(d_model / n_heads = {self.d_model} / {self.n_heads} = {head_dim}); "
                f"change d_model or n_heads"
            )
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta}")
        if not 0 < self.max_seq_length <= self.max_position:
            raise ValueError(
                f"max_seq_length ({self.max_seq_length}) must be in 1..max_position "
                f"({self.max_position}); raise max_position or lower max_seq_length"
            )
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary")

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


# The allowed values of every choice field, read from its Literal type: the type is the only list.
_CHOICES: dict[str, tuple[str, ...]] = {
    name: get_args(hint)
    for name, hint in get_type_hints(EncoderConfig).items()
    if get_origin(hint) is Literal
}
