"""OpenVINO running the same ``model.onnx`` on the CPU, in fp32 or bf16 inference precision.

bf16 roughly doubles throughput on CPUs with native bf16 (AVX512-BF16, AMX) at a min cosine of
about 0.99994 to fp32 on real text (docs/benchmarks.md); the weights in the artifact stay fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from .base import NamedOutputs, Output

_HINTS = {"fp32": "f32", "bf16": "bf16"}
# The CPU plugin keeps the kernels it builds for each input shape, 5000 shapes by default, about
# 0.4 MiB each: mixed traffic (batch × length) keeps making new shapes, and a replica grew by
# 834 MiB over 2000 random shapes (a soak saw 2 MiB/s). An LRU of 256 shapes stays at +146 MiB
# while the common shapes stay built: per call 1.00× the default's for single sentences, 1.01×
# for 32-sentence batches, 0.97× for mixed shapes; with no cache (0) single sentences took 1.96×.
RUNTIME_CACHE_SHAPES = 256


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 natively here."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoBackend(NamedOutputs):
    """One inference stream of a compiled model; ``compile_streams`` makes them."""

    name = "openvino"

    def __init__(self, compiled: ov.CompiledModel, precision: str) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._outputs = {o.get_any_name(): o for o in compiled.outputs}
        self.precision = precision
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))

    def run_output(
        self, output: Output, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        result = self.request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        # The request reuses its output buffers: copy before the next call overwrites them.
        return np.array(result[self._outputs[output]], dtype=np.float32, copy=True)

    def describe(self) -> dict[str, object]:
        return {
            "runtime": "openvino",
            "version": ov.get_version(),
            "inference_precision": self.precision,
            "intra_op_threads": self.threads,
        }


def compile_streams(
    model_path: Path,
    threads: int,
    precision: str = "fp32",
    streams: int = 1,
    cache_shapes: int = RUNTIME_CACHE_SHAPES,
) -> list[OpenVinoBackend]:
    """``streams`` backends that can run at the same time, sharing ``threads`` between them.

    They come from one compiled model, whose plugin gives each stream its own cores: two models
    compiled apart with one thread each were measured taking turns on one core.
    """
    if precision not in _HINTS:
        raise ValueError(f"openvino runs fp32 or bf16, not {precision}")
    if precision == "bf16" and not cpu_supports_bf16():
        raise ValueError("bf16 needs a CPU with AVX512-BF16 or AMX; use fp32")
    config = {
        "INFERENCE_PRECISION_HINT": _HINTS[precision],
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": streams,
        "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
        "CPU_RUNTIME_CACHE_CAPACITY": cache_shapes,
    }
    compiled = ov.Core().compile_model(str(model_path), "CPU", config)
    return [OpenVinoBackend(compiled, precision) for _ in range(streams)]
