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
Pooling = Literal["mean", "cls", "max", "last"]
AttentionImpl = Literal["sdpa", "math"]
HeadActivation = Literal["tanh", "gelu", "relu", "silu"]
ModelTask = Literal["embedding", "rerank", "classify"]


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Hyper-parameters of a sentence encoder: BERT, and the parts later families swap in.

    Defaults are those of all-MiniLM-L6-v2, so ``EncoderConfig()`` describes the default model.
    ``attention`` picks the implementation of the same math: ``sdpa`` is PyTorch's fused kernel
    (fast in eager mode), ``math`` spells out MatMul -> Softmax -> MatMul (a leaner ONNX graph).
    ``positional``: ``learned`` and ``sinusoidal`` tables are added to the token embeddings;
    ``rotary`` instead rotates queries and keys inside attention (by ``rope_theta``).
    ``n_kv_heads`` below ``n_heads`` is grouped-query attention (None: one K/V head per head).

    The fields after ``pad_token_id`` are what the other families change; their defaults are
    BERT's, so a config without them (an older ``encoder_config.json``) loads as before:
    ``head_dim`` (None: d_model / n_heads; Qwen3 sets it wider), ``position_offset`` (the first
    row of the learned table a token uses: RoBERTa/MPNet start at pad_token_id + 1),
    ``relative_buckets`` (MPNet's T5-style relative position bias, 0: none), ``causal``
    (decoders: a token sees only those before it), ``qk_norm`` (Qwen3's per-head norm of q and
    k), the three ``*_bias`` switches (ModernBERT and Qwen3 drop biases), ``embedding_norm`` and
    ``first_attention_norm`` (ModernBERT's layer 0 reads the normed embeddings as they are),
    ``local_window`` with ``global_every`` (ModernBERT: every ``global_every``-th layer, from
    layer 0, attends globally, the others only to tokens within ``local_window / 2``) and
    ``local_rope_theta`` (the local layers' rotary base; None: ``rope_theta``).

    The ``head_*`` fields describe a cross-encoder's classification head (:mod:`models.heads`);
    ``num_labels`` 0 means an embedder, which has none. BERT's head is its pooler (dense, tanh)
    then the output layer; RoBERTa's and MPNet's the same shape; ModernBERT's adds a norm after
    the activation and drops the dense bias (``head_dense_bias``); Qwen3's is one output layer
    without a bias. ``segment_separator`` (BERT cross-encoders): inputs are ``[CLS] q [SEP] d
    [SEP]`` and the document tokens take token type 1; the model derives the types from this id
    so that its inputs stay ``input_ids`` and ``attention_mask``.
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
    head_dim: int | None = None
    position_offset: int = 0
    relative_buckets: int = 0
    relative_max_distance: int = 128
    causal: bool = False
    qk_norm: bool = False
    attention_bias: bool = True
    mlp_bias: bool = True
    norm_bias: bool = True
    embedding_norm: bool = True
    first_attention_norm: bool = True
    local_window: int | None = None
    global_every: int = 1
    local_rope_theta: float | None = None
    num_labels: int = 0
    head_dense: bool = True
    head_dense_bias: bool = True
    head_activation: HeadActivation = "tanh"
    head_norm: bool = False
    head_bias: bool = True
    segment_separator: int | None = None

    @property
    def task(self) -> ModelTask:
        """What the model is for: an embedder (no head), a reranker (one score per pair) or a
        classifier (a score per label)."""
        if self.num_labels == 0:
            return "embedding"
        return "rerank" if self.num_labels == 1 else "classify"

    @property
    def head_size(self) -> int:
        """Features per attention head: ``head_dim``, or d_model / n_heads when it is None."""
        return self.d_model // self.n_heads if self.head_dim is None else self.head_dim

    def is_global(self, layer: int) -> bool:
        """Whether ``layer`` attends to the whole input (every layer when there is no window)."""
        return self.local_window is None or layer % self.global_every == 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.head_dim is None and self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                f"change n_heads to a divisor of d_model or d_model to a multiple of n_heads, "
                f"or set head_dim"
            )
        if self.head_dim is not None and self.head_dim < 1:
            raise ValueError(f"head_dim must be positive or None, got {self.head_dim}")
        kv = self.n_kv_heads
        if kv is not None and (kv < 1 or self.n_heads % kv != 0):
            divisors = [d for d in range(1, self.n_heads + 1) if self.n_heads % d == 0]
            raise ValueError(
                f"n_kv_heads ({kv}) must divide n_heads ({self.n_heads}); set n_kv_heads to one "
                f"of {divisors}, or None for one key/value head per query head"
            )
        if self.positional == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if self.positional == "rotary" and self.head_size % 2 != 0:
            where = (
                f"d_model / n_heads = {self.d_model} / {self.n_heads} = {self.head_size}"
                if self.head_dim is None
                else f"head_dim = {self.head_dim}"
            )
            raise ValueError(
                f"rotary positions rotate pairs of features, so they need an even head_dim "
                f"({where}); change d_model or n_heads"
            )
        for name in ("rope_theta", "local_rope_theta"):
            theta = getattr(self, name)
            if theta is not None and theta <= 0:
                raise ValueError(f"{name} must be positive, got {theta}")
        self._check_positions()
        self._check_attention_span()
        self._check_head()
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary")

    def _check_positions(self) -> None:
        if self.position_offset < 0:
            raise ValueError(f"position_offset must be >= 0, got {self.position_offset}")
        usable = self.max_position - self.position_offset
        if not 0 < self.max_seq_length <= usable:
            offset = f" - position_offset ({self.position_offset})" if self.position_offset else ""
            raise ValueError(
                f"max_seq_length ({self.max_seq_length}) must be in 1..max_position "
                f"({self.max_position}){offset}; raise max_position or lower max_seq_length"
            )
        if self.relative_buckets < 0 or self.relative_buckets % 2 != 0:
            raise ValueError(
                f"relative_buckets must be 0 (no relative bias) or an even count (half for "
                f"each direction), got {self.relative_buckets}"
            )
        if self.relative_buckets and self.relative_max_distance <= self.relative_buckets // 4:
            raise ValueError(
                f"relative_max_distance ({self.relative_max_distance}) must exceed the exact "
                f"buckets (relative_buckets / 4 = {self.relative_buckets // 4}); raise it"
            )

    def _check_attention_span(self) -> None:
        if self.local_window is not None and self.local_window < 2:
            raise ValueError(
                f"local_window must be at least 2 tokens (it spans window / 2 each side), or "
                f"None for global attention everywhere; got {self.local_window}"
            )
        if self.global_every < 1:
            raise ValueError(
                f"global_every must be >= 1 (1: every layer global), got {self.global_every}"
            )

    def _check_head(self) -> None:
        if self.num_labels < 0:
            raise ValueError(
                f"num_labels must be 0 (an embedder) or the classifier's label count, got "
                f"{self.num_labels}"
            )
        sep = self.segment_separator
        if sep is not None and not (0 <= sep < self.vocab_size and self.type_vocab_size >= 2):
            raise ValueError(
                f"segment_separator {sep} needs an id inside the vocabulary and two token types "
                f"(type_vocab_size is {self.type_vocab_size}); set it to None"
            )

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
