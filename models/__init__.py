"""The sentence encoder, written from first principles, and its pretrained weights."""

from .attention import MultiHeadAttention, attention_bias, attention_math, attention_sdpa
from .checkpoint import CheckpointError, load_model, save_model
from .config import EncoderConfig
from .model import SentenceEncoder, build_model
from .pretrained import (
    DEFAULT_MODEL,
    EmbeddingModel,
    LoadedEncoder,
    ModelLocation,
    SourceKind,
    get_model_path,
    load_encoder,
    load_pretrained,
    locate_model,
)
from .tokenizer import EncodedBatch, Tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "CheckpointError",
    "EmbeddingModel",
    "EncodedBatch",
    "EncoderConfig",
    "LoadedEncoder",
    "ModelLocation",
    "MultiHeadAttention",
    "SentenceEncoder",
    "SourceKind",
    "Tokenizer",
    "attention_bias",
    "attention_math",
    "attention_sdpa",
    "build_model",
    "get_model_path",
    "load_encoder",
    "load_model",
    "load_pretrained",
    "locate_model",
    "save_model",
]
