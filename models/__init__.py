"""The sentence encoder, written from first principles, and its pretrained weights."""

from .attention import MultiHeadAttention, attention_bias, attention_math, attention_sdpa
from .checkpoint import CheckpointError, load_model, save_model
from .config import EncoderConfig
from .model import SentenceEncoder, build_model
from .pretrained import DEFAULT_MODEL, EmbeddingModel, get_model_path, load_pretrained
from .tokenizer import EncodedBatch, Tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "CheckpointError",
    "EmbeddingModel",
    "EncodedBatch",
    "EncoderConfig",
    "MultiHeadAttention",
    "SentenceEncoder",
    "Tokenizer",
    "attention_bias",
    "attention_math",
    "attention_sdpa",
    "build_model",
    "get_model_path",
    "load_model",
    "load_pretrained",
    "save_model",
]
