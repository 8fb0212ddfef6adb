"""Inference backends behind one small interface, and the choice between them.

``auto`` takes the fastest path known to keep min cosine ≥ 0.9999 to the fp32 PyTorch model
on the hardware it runs on (each such path is checked by the test suite): CUDA when asked for
and present, else OpenVINO (bf16 where the CPU has native bf16 and the export measured the
model's bf16 vectors at or above that floor; fp32 otherwise), else ONNX Runtime fp32.
A classifier (reranker) is served in fp32 unless bf16 is asked for: its answer is a score whose
order a client acts on, and no floor like the embedders' cosine is set for scores; the export's
measured bf16 difference is in the reason, for whoever weighs ``--precision bf16``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..settings import ServiceSettings
from .base import Backend

if TYPE_CHECKING:
    from export.artifact import Artifact

# The project's bar for a default path: min cosine to the fp32 model over real text.
ACCURACY_FLOOR = 0.9999
SUPPORTED = {
    "onnxruntime": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16"),
    "torch": ("fp32",),
}


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: str
    reason: str


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose(settings: ServiceSettings, artifact: Artifact) -> Choice:
    """Resolve ``auto`` for backend and precision, and say why."""
    backend: str = settings.backend
    precision: str = settings.precision
    if backend != "auto":
        if precision == "auto":
            precision = "fp16" if artifact.config.precision == "fp16" else "fp32"
        if precision not in SUPPORTED[backend]:
            raise ValueError(f"{backend} supports {SUPPORTED[backend]}, not {precision}")
        return Choice(backend, precision, f"asked for: --backend {backend} --precision {precision}")
    if settings.device == "cuda" and _cuda_available():
        precision = artifact.config.precision if precision == "auto" else precision
        return Choice("onnxruntime", precision, "auto: CUDA is present and was asked for")
    if importlib.util.find_spec("openvino") is not None:
        from .openvino import cpu_supports_bf16

        if precision == "auto":
            precision, why = _auto_cpu_precision(artifact, cpu_supports_bf16())
        else:
            why = f"asked for {precision}"
        return Choice("openvino", precision, f"auto: OpenVINO is installed; {why}")
    precision = "fp32" if precision == "auto" else precision
    return Choice("onnxruntime", precision, "auto: OpenVINO is not installed")


def _auto_cpu_precision(artifact: Artifact, native_bf16: bool) -> tuple[str, str]:
    """bf16 where the CPU runs it natively, unless the export measured it below the floor;
    always fp32 for a classifier (the module's docstring says why)."""
    config = artifact.config
    if config.task != "embedding":
        measured = config.bf16_max_abs_score
        found = (
            "its bf16 accuracy was not measured at export"
            if measured is None
            else f"bf16 measured at export at max abs score difference {measured:.2g} to fp32"
        )
        return "fp32", f"a {config.task} model is served in fp32 ({found}; --precision bf16 asks)"
    if not native_bf16:
        return "fp32", "no native bf16 here"
    measured = artifact.config.bf16_min_cosine
    if measured is None:
        return "bf16", "the CPU has native bf16 (its accuracy was not measured at export)"
    if measured < ACCURACY_FLOOR:
        return "fp32", (
            f"bf16 measured at export at min cosine {measured:.6f} to fp32, under the "
            f"{ACCURACY_FLOOR} floor"
        )
    return "bf16", f"the CPU has native bf16 (min cosine {measured:.6f} to fp32 at export)"


def resolve_streams(settings: ServiceSettings, choice: Choice) -> int:
    """Inference streams per replica: ``settings.streams``, or 0 for the measured default.

    On the CPU, two OpenVINO streams of half the threads each beat one stream of all of them
    when HTTP handling and the tokenizer share the cores (docs/benchmarks.md); other runtimes
    and devices keep one stream.
    """
    threads = settings.intra_op_threads
    if settings.streams == 0:
        return 2 if choice.backend == "openvino" and threads >= 2 else 1
    if settings.streams > 1 and choice.backend != "openvino":
        raise ValueError(f"streams > 1 needs the openvino backend, not {choice.backend}")
    if settings.streams > threads:
        raise ValueError(f"{settings.streams} streams need at least as many threads (num_cpus)")
    return settings.streams


@dataclass(frozen=True)
class Backends:
    """What a replica runs: a backend per inference stream, and with several streams ``whole``,
    the same model as one stream on all the threads, for a single input that finds every stream
    idle (it runs faster on all the threads than on a stream's share)."""

    streams: Sequence[Backend]
    whole: Backend | None
    choice: Choice


def create_backends(settings: ServiceSettings, artifact: Artifact) -> Backends:
    """The backends the settings resolve to (``choose``, ``resolve_streams``)."""
    choice = choose(settings, artifact)
    threads, streams = settings.intra_op_threads, resolve_streams(settings, choice)
    if choice.backend == "torch":
        from .torch import TorchBackend

        # The reference runs the PyTorch model the artifact was exported from.
        source = artifact.manifest["model"]["source"]
        return Backends([TorchBackend(source, threads, settings.device)], None, choice)
    if choice.backend == "openvino":
        from .openvino import compile_streams

        path, precision = artifact.model_path, choice.precision
        whole = compile_streams(path, threads, precision)[0] if streams > 1 else None
        return Backends(compile_streams(path, threads, precision, streams), whole, choice)
    from .onnxruntime import OnnxRuntimeBackend

    path = artifact.variant("int8") if choice.precision == "int8" else artifact.model_path
    backend = OnnxRuntimeBackend(path, threads, settings.device, choice.precision)
    return Backends([backend], None, choice)


def create_backend(settings: ServiceSettings, artifact: Artifact) -> tuple[Backend, Choice]:
    """A single-stream backend, for one caller at a time (offline use, benchmarks, tests)."""
    backends = create_backends(settings.model_copy(update={"streams": 1}), artifact)
    return backends.streams[0], backends.choice


__all__ = [
    "Backend",
    "Backends",
    "Choice",
    "choose",
    "create_backend",
    "create_backends",
    "resolve_streams",
]
