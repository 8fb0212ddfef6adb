"""The sentence encoder, written from first principles, and its pretrained weights.

The public names load on first use (PEP 562): the service imports ``models.tokenizer`` and
``models.config``, and must not pay for torch (1.6 s and ~160 MB of a replica's RSS) when it
serves through ONNX Runtime or OpenVINO. ``from models import X`` works as before and loads
only the submodule that defines ``X`` (and what that one imports).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each public name and the submodule that defines it: the one table the lazy import reads.
_SOURCES: dict[str, str] = {
    **dict.fromkeys(
        ("MultiHeadAttention", "attention_bias", "attention_math", "attention_sdpa"), "attention"
    ),
    **dict.fromkeys(("CheckpointError", "load_model", "save_model"), "checkpoint"),
    "SequenceClassifier": "classifier",
    **dict.fromkeys(("EncoderConfig", "ModelTask"), "config"),
    "ClassificationHead": "heads",
    **dict.fromkeys(("SentenceEncoder", "build_model"), "model"),
    **dict.fromkeys(
        (
            "DEFAULT_MODEL",
            "ClassifierModel",
            "EmbeddingModel",
            "LoadedEncoder",
            "ModelLocation",
            "SourceKind",
            "get_model_path",
            "load_classifier",
            "load_encoder",
            "load_pretrained",
            "locate_model",
        ),
        "pretrained",
    ),
    **dict.fromkeys(("EncodedBatch", "Tokenizer"), "tokenizer"),
}

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


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name``, and keep the name here for the next use."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
