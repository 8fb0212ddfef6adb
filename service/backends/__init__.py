"""Inference backends behind one small interface, and the choice between them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..settings import ServiceSettings
from .base import Backend

if TYPE_CHECKING:
    from export.artifact import Artifact


def create_backend(settings: ServiceSettings, artifact: Artifact) -> tuple[Backend, str]:
    """The backend the settings ask for, and a sentence saying why it was chosen."""
    threads = settings.intra_op_threads
    if settings.backend == "torch":
        from .torch import TorchBackend

        # The reference runs the PyTorch model the artifact was exported from.
        source = artifact.manifest["model"]["source"]
        return TorchBackend(source, threads, settings.device), "asked for: --backend torch"
    from .onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(artifact.model_path, threads, settings.device)
    if settings.backend == "onnxruntime":
        return backend, "asked for: --backend onnxruntime"
    return backend, "auto: ONNX Runtime fp32 is the only path that meets the accuracy bar here"


__all__ = ["Backend", "create_backend"]
