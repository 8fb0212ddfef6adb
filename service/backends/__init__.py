"""Inference backends behind one small interface, and the choice between them.

``auto`` takes the fastest path known to keep min cosine ≥ 0.9999 to the fp32 PyTorch model
on the hardware it runs on (each such path is checked by the test suite): CUDA when asked for
and present, else OpenVINO (bf16 where the CPU has native bf16 and the export measured the
model's bf16 vectors at or above that floor; fp32 otherwise), else ONNX Runtime fp32.
A classifier (reranker) is served in fp32 unless bf16 is asked for: its answer is a score whose
order a client acts on, and no floor like the embedders' cosine is set for scores; the export's
measured bf16 difference is in the reason, for whoever weighs ``--precision bf16``.

``auto`` never picks int8: it is opt-in (``--precision int8``), served from the artifact's
calibrated ``model.int8.onnx`` by OpenVINO (int8 MatMuls on the CPU's int8 dot products, the
rest in bf16 where the CPU has it) or, without OpenVINO, ONNX Runtime; the reason quotes the
accuracy the export measured. A plan that cannot run (int8 without an int8 variant, bf16 on a
CPU without it, a backend that does not run the precision) is a ``ValueError`` here, so that
the launcher refuses it before Ray starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import ServiceSettings
from .base import Backend

if TYPE_CHECKING:
    from export.artifact import Artifact

# The project's bar for a default path: min cosine to the fp32 model over real text.
ACCURACY_FLOOR = 0.9999
SUPPORTED = {
    "onnxruntime": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "torch": ("fp32",),
}
# What ``auto`` tries on the CPU for a precision that was asked for, in order of preference.
CPU_BACKENDS = ("openvino", "onnxruntime")


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: str
    reason: str


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose(settings: ServiceSettings, artifact: Artifact) -> Choice:
    """Resolve ``auto`` for backend and precision, and say why; a ``ValueError`` (one line)
    for a plan no replica could run."""
    choice = _resolve(settings, artifact)
    _check_runnable(choice, artifact, _native_bf16() if choice.precision == "bf16" else True)
    if choice.precision == "int8":
        return Choice(choice.backend, "int8", f"{choice.reason}; {int8_accuracy(artifact)}")
    return choice


def _resolve(settings: ServiceSettings, artifact: Artifact) -> Choice:
    backend: str = settings.backend
    precision: str = settings.precision
    if backend != "auto":
        if precision == "auto":
            precision = "fp16" if artifact.config.precision == "fp16" else "fp32"
        return Choice(backend, precision, f"asked for: --backend {backend} --precision {precision}")
    if settings.device == "cuda" and _cuda_available():
        precision = artifact.config.precision if precision == "auto" else precision
        return Choice("onnxruntime", precision, "auto: CUDA is present and was asked for")
    openvino = importlib.util.find_spec("openvino") is not None
    if precision == "auto":
        if not openvino:
            return Choice("onnxruntime", "fp32", "auto: OpenVINO is not installed")
        precision, why = _auto_cpu_precision(artifact, _native_bf16())
        return Choice("openvino", precision, f"auto: OpenVINO is installed; {why}")
    installed = [name for name in CPU_BACKENDS if openvino or name != "openvino"]
    runs = [name for name in installed if precision in SUPPORTED[name]]
    if not runs:
        raise ValueError(f"no installed CPU backend runs {precision} ({', '.join(installed)})")
    why = "OpenVINO is installed" if runs[0] == "openvino" else "OpenVINO is not installed"
    if openvino and runs[0] != "openvino":
        why = f"OpenVINO does not run {precision}"
    return Choice(runs[0], precision, f"auto: {why}; asked for {precision}")


def _native_bf16() -> bool:
    if importlib.util.find_spec("openvino") is None:
        return False
    from .openvino import cpu_supports_bf16

    return cpu_supports_bf16()


def _check_runnable(choice: Choice, artifact: Artifact, native_bf16: bool) -> None:
    """The chosen backend runs the precision, on this CPU, from a file the artifact has."""
    backend, precision = choice.backend, choice.precision
    if precision not in SUPPORTED[backend]:
        raise ValueError(f"{backend} supports {SUPPORTED[backend]}, not {precision}")
    if precision == "bf16" and backend == "openvino" and not native_bf16:
        raise ValueError("bf16 needs a CPU with AVX512-BF16 or AMX; this one has neither")
    if precision == "int8" and artifact.int8_path is None:
        raise ValueError(
            f"--precision int8 needs an int8 variant, and {artifact.root} has none: export it "
            "with python -m export --quantize int8"
        )


def int8_accuracy(artifact: Artifact) -> str:
    """The int8 variant's accuracy as the export measured it, for the choice's reason."""
    config = artifact.config
    if config.int8_min_cosine is None or config.int8_top10_agreement is None:
        return "int8 accuracy not measured at export (an older, dynamic int8 export?)"
    return (
        f"int8 calibrated at export: min cosine {config.int8_min_cosine:.4f} to fp32 (mean "
        f"{config.int8_mean_cosine or 0:.5f}), top-10 neighbour agreement "
        f"{config.int8_top10_agreement:.3f} on real text"
    )


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
        from .openvino import compile_streams, read_model

        path, precision = _model_file(artifact, choice), choice.precision
        model = read_model(path)  # read once: the streams and ``whole`` share its weights
        whole = compile_streams(path, threads, precision, model=model)[0] if streams > 1 else None
        return Backends(
            compile_streams(path, threads, precision, streams, model=model), whole, choice
        )
    from .onnxruntime import OnnxRuntimeBackend

    path = _model_file(artifact, choice)
    backend = OnnxRuntimeBackend(path, threads, settings.device, choice.precision)
    return Backends([backend], None, choice)


def _model_file(artifact: Artifact, choice: Choice) -> Path:
    """The graph a precision runs: the int8 variant for int8, else ``model.onnx``."""
    return artifact.variant("int8") if choice.precision == "int8" else artifact.model_path


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
