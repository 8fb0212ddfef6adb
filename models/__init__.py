"""The sentence encoder, written from first principles, and its pretrained weights."""

from .attention import MultiHeadAttention, attention_bias, attention_math, attention_sdpa
from .checkpoint import CheckpointError, load_model, save_model
from .classifier import SequenceClassifier
from .config import EncoderConfig, ModelTask
from .heads import ClassificationHead
from .model import SentenceEncoder, build_model
from .pretrained import (
    DEFAULT_MODEL,
    ClassifierModel,
    EmbeddingModel,
    LoadedEncoder,
    ModelLocation,
    SourceKind,
    get_model_path,
    load_classifier,
    load_encoder,
    load_pretrained,
    locate_model,
)
from .tokenizer import EncodedBatch, Tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "CheckpointError",
    "ClassificationHead",
    "ClassifierModel",
    "EmbeddingModel",
    "EncodedBatch",
    "EncoderConfig",
    "LoadedEncoder",
    "ModelLocation",
    "ModelTask",
    "MultiHeadAttention",
    "SentenceEncoder",
    "SequenceClassifier",
    "SourceKind",
    "Tokenizer",
    "attention_bias",
    "attention_math",
    "attention_sdpa",
    "build_model",
    "get_model_path",
    "load_classifier",
    "load_encoder",
    "load_model",
    "load_pretrained",
    "locate_model",
    "save_model",
]
