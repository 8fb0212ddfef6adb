"""OpenVINO running the same ``model.onnx`` on the CPU, in fp32 or bf16 inference precision,
or the artifact's calibrated ``model.int8.onnx`` in int8.

bf16 roughly doubles throughput on CPUs with native bf16 (AVX512-BF16, AMX) at a min cosine of
about 0.99994 to fp32 on real text (docs/benchmarks.md); the weights in the artifact stay fp32.
int8: the plugin turns the graph's QuantizeLinear/DequantizeLinear pairs into int8 MatMuls on the
CPU's int8 dot products; what the graph keeps in float (attention, layer norms, GELU) runs in
bf16 where the CPU has it (1.66× the bf16 default on 32-sentence batches, against 1.38× with
those in f32: docs/export.md), else f32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from .base import NamedOutputs, Output

_HINTS = {"fp32": "f32", "bf16": "bf16"}
HINT = "INFERENCE_PRECISION_HINT"
# The CPU plugin keeps the kernels it builds for each input shape, 5000 shapes by default, about
# 0.4 MiB each: mixed traffic (batch × length) keeps making new shapes, and a replica grew by
# 834 MiB over 2000 random shapes (a soak saw 2 MiB/s). An LRU of 256 shapes stays at +146 MiB
# while the common shapes stay built: per call 1.00× the default's for single sentences, 1.01×
# for 32-sentence batches, 0.97× for mixed shapes; with no cache (0) single sentences took 1.96×.
RUNTIME_CACHE_SHAPES = 256


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 natively here."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def inference_hint(precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a served precision: for int8, that of the
    operations the int8 graph keeps in float."""
    if precision == "int8":
        return "bf16" if cpu_supports_bf16() else "f32"
    if precision not in _HINTS:
        raise ValueError(f"openvino runs fp32, bf16 or int8, not {precision}")
    if precision == "bf16" and not cpu_supports_bf16():
        raise ValueError("bf16 needs a CPU with AVX512-BF16 or AMX; use fp32")
    return _HINTS[precision]


class OpenVinoBackend(NamedOutputs):
    """One inference stream of a compiled model; ``compile_streams`` makes them."""

    name = "openvino"

    def __init__(
        self, compiled: ov.CompiledModel, precision: str, model_path: Path | None = None
    ) -> None:
        self.compiled = compiled
        self.model_path = model_path
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
            # What the graph's float operations run in (for int8: all but its int8 MatMuls).
            "float_ops_precision": self.compiled.get_property(HINT).get_type_name(),
            "model_file": None if self.model_path is None else self.model_path.name,
            "intra_op_threads": self.threads,
        }


def read_model(model_path: Path) -> ov.Model:
    return ov.Core().read_model(str(model_path))


def compile_streams(
    model_path: Path,
    threads: int,
    precision: str = "fp32",
    streams: int = 1,
    cache_shapes: int = RUNTIME_CACHE_SHAPES,
    model: ov.Model | None = None,
) -> list[OpenVinoBackend]:
    """``streams`` backends that can run at the same time, sharing ``threads`` between them.

    They come from one compiled model, whose plugin gives each stream its own cores: two models
    compiled apart with one thread each were measured taking turns on one core. ``model``: the
    file already read (``read_model``); two compilations of one ``ov.Model`` share its weights
    (93 MiB less per MiniLM replica for the streams and ``whole``; outputs bit-identical).
    """
    config = {
        HINT: inference_hint(precision),
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": streams,
        "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
        "CPU_RUNTIME_CACHE_CAPACITY": cache_shapes,
    }
    source = str(model_path) if model is None else model
    compiled = ov.Core().compile_model(source, "CPU", config)
    return [OpenVinoBackend(compiled, precision, model_path) for _ in range(streams)]
