"""ONNX Runtime over the exported ``model.onnx``: CPU, or CUDA where present."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .base import NamedOutputs, Output

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(NamedOutputs):
    name = "onnxruntime"

    def __init__(
        self, model_path: Path, threads: int, device: str = "cpu", precision: str = "fp32"
    ) -> None:
        options = ort.SessionOptions()
        # One replica = one inference thread pool of `threads`; no inter-op pool on top.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            else:
                log.warning("CUDA requested but onnxruntime has no CUDA provider; using the CPU")
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        self.precision = precision
        self.threads = threads
        self.model_path = model_path

    def run_output(
        self, output: Output, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([output], feeds)[0].astype(np.float32, copy=False)

    def describe(self) -> dict[str, object]:
        return {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers": self.session.get_providers(),
            "model_file": self.model_path.name,
            "intra_op_threads": self.threads,
        }
