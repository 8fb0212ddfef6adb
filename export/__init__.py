"""Export an encoder (embedder or cross-encoder) to a validated ONNX artifact folder
(``python -m export``).

Only the artifact reader is imported eagerly: the service uses :func:`load_artifact` and must
not pay for torch/onnx imports. The exporter itself is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .artifact import Artifact, ArtifactError, ServingConfig, load_artifact
from .errors import ExportError, ValidationError

if TYPE_CHECKING:
    from .options import ExportOptions
    from .pipeline import ExportResult, export_model

__all__ = [
    "Artifact",
    "ArtifactError",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "ServingConfig",
    "ValidationError",
    "export_model",
    "load_artifact",
]


def __getattr__(name: str) -> Any:
    if name == "ExportOptions":
        from .options import ExportOptions

        return ExportOptions
    if name in ("ExportResult", "export_model"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
