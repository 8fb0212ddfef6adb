"""Static int8: post-training quantisation calibrated on real text, and how far it moves vectors.

The int8 graph is ``model.onnx`` with QuantizeLinear/DequantizeLinear pairs (QDQ) around the
weight MatMuls: int8 weights per output channel, int8 activations with ranges calibrated on
every ``CALIBRATION_STRIDE``-th text of ``common.texts`` (sentences and passages), one text per
call so padding never widens a range. OpenVINO turns each pair into an int8 MatMul on the CPU's
int8 dot products (VNNI, AMX-INT8) and ONNX Runtime into QLinearMatMul, so one file serves both.

What stays in float: attention's two activation-by-activation MatMuls (Q·Kᵀ and softmax·V);
quantising the scores' inputs bought no speed at MiniLM's sizes. Keeping the feed-forward's
down-projections in float too (``ffn_down``) lifts MiniLM's top-10 agreement from 0.951 to 0.969
but cost all of int8's speed as served (0.86-0.92× bf16 against 1.37-1.52×), so the export
keeps attention alone (docs/export.md has the measurements;
``python -m loadtest.bench --only int8`` re-measures them).

Two methods, both measured (``METHODS``): OpenVINO's NNCF (``ModelType.TRANSFORMER``: SmoothQuant,
bias correction, mixed preset) and ONNX Runtime's ``quantize_static`` (QDQ, per-channel
weights, min-max calibration). NNCF is the export's: ONNX Runtime's lost a tenth of the
neighbours (top-10 agreement 0.90) with the same MatMuls in float. NNCF is imported only here,
only when quantising.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import onnx

from common import texts as corpus
from common.arrays import cosine_rows, normalize_rows
from models import Tokenizer

from .artifact import EXTERNAL_DATA_SUFFIX, INPUT_NAMES
from .errors import ValidationError
from .parity import Session, embed_texts
from .quiet import quiet

Int8Method = Literal["nncf", "ort-qdq"]
METHODS: tuple[Int8Method, ...] = get_args(Int8Method)
DEFAULT_METHOD: Int8Method = "nncf"
# Every other text calibrates (357 of 714); all of them are measured, so half are held out.
CALIBRATION_STRIDE = 2
# Retrieval agreement: for each text, the overlap of its TOP_K nearest neighbours in the
# corpus under int8 and under fp32.
TOP_K = 10
# Which MatMuls stay in float, by role (``matmul_roles``).
KeepRole = Literal["attention", "ffn_down"]
DEFAULT_KEEP: tuple[KeepRole, ...] = ("attention",)
# OpenVINO CPU capabilities that mean int8 dot products in hardware (VNNI or AMX-INT8), and the
# /proc/cpuinfo flags that say the same where OpenVINO is absent.
INT8_CAPABILITY = "INT8"
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Int8Recipe:
    """How an int8 graph is made: the method and the MatMul roles kept in float."""

    method: Int8Method = DEFAULT_METHOD
    keep: tuple[KeepRole, ...] = DEFAULT_KEEP

    @property
    def label(self) -> str:
        kept = "+".join(self.keep) or "nothing"
        return f"{self.method}, {kept} kept in float"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keep": list(self.keep), "calibration_stride": CALIBRATION_STRIDE}


def int8_dot_product_reason() -> str | None:
    """None when this CPU has int8 dot-product instructions (VNNI, AMX-INT8), else why not."""
    if importlib.util.find_spec("openvino") is not None:
        import openvino as ov

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if INT8_CAPABILITY in capabilities and _cpu_flags() & set(INT8_CPU_FLAGS):
            return None
    elif _cpu_flags() & set(INT8_CPU_FLAGS):
        return None
    return f"this CPU has no int8 dot products (none of {', '.join(INT8_CPU_FLAGS)})"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(flags.partition(":")[2].split())


def calibration_texts() -> list[str]:
    """Every ``CALIBRATION_STRIDE``-th sentence and passage of ``common.texts``."""
    return corpus.corpus()[::CALIBRATION_STRIDE]


def calibration_feeds(tokenizer: Tokenizer) -> list[dict[str, np.ndarray]]:
    """One unpadded ``(1, T)`` feed per calibration text."""
    feeds = []
    for ids in tokenizer.tokenize(calibration_texts()):
        row = np.asarray([ids], dtype=np.int64)  # (1, T)
        feeds.append(dict(zip(INPUT_NAMES, (row, np.ones_like(row)), strict=True)))
    return feeds


def matmul_roles(path: Path) -> dict[KeepRole, list[str]]:
    """Node names of the MatMuls by role: ``attention`` (no weight input: Q·Kᵀ, softmax·V) and
    ``ffn_down`` (a weight MatMul fed by the feed-forward's activation, whose input has the
    widest range)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    producer = {out: node.op_type for node in graph.node for out in node.output}
    roles: dict[KeepRole, list[str]] = {"attention": [], "ffn_down": []}
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        if not weights & set(node.input):
            roles["attention"].append(node.name)
        elif producer.get(node.input[0]) in {"Gelu", "Relu", "Erf", "Tanh", "Sigmoid", "Mul"}:
            roles["ffn_down"].append(node.name)
    return roles


def kept_nodes(path: Path, keep: Sequence[KeepRole]) -> list[str]:
    roles = matmul_roles(path)
    return [name for role in keep for name in roles[role]]


def quantize_int8(
    src: Path,
    dst: Path,
    tokenizer: Tokenizer,
    *,
    recipe: Int8Recipe = Int8Recipe(),
    external_data: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Write the calibrated int8 graph of ``src`` to ``dst``; returns the recipe as recorded."""
    feeds = calibration_feeds(tokenizer)
    keep = kept_nodes(src, recipe.keep)
    with quiet(not verbose):
        if recipe.method == "ort-qdq":
            _quantize_ort(src, dst, feeds, keep, external_data)
        else:
            onnx.save_model(
                _quantize_nncf(src, feeds, keep),
                str(dst),
                save_as_external_data=external_data,
                all_tensors_to_one_file=True,
                location=dst.name + EXTERNAL_DATA_SUFFIX,
            )
    if not dst.is_file():
        raise ValidationError(f"int8 quantization wrote no {dst.name}")
    return {**recipe.to_dict(), "calibration_texts": len(feeds), "kept_in_float": len(keep)}


def _quantize_nncf(src: Path, feeds: list[dict[str, np.ndarray]], keep: list[str]) -> Any:
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)  # one INFO line per skipped node
    return nncf.quantize(
        onnx.load(str(src)),
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
        ignored_scope=nncf.IgnoredScope(names=keep),
    )


class _Feeds:
    """ONNX Runtime's ``CalibrationDataReader``: the feeds once, then None; ``rewind`` restarts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.rest: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.rest, None)

    def rewind(self) -> None:
        self.rest = iter(self.feeds)


def _quantize_ort(
    src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], keep: list[str], external: bool
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src),
        str(dst),
        _Feeds(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep,
        use_external_data_format=external,
    )


def neighbour_agreement(reference: np.ndarray, other: np.ndarray, k: int = TOP_K) -> float:
    """Mean over texts of the overlap of each text's ``k`` nearest neighbours (cosine, itself
    left out) under ``other`` and under ``reference``: 1.0 means every search returns the same
    top ``k``."""

    def nearest(vectors: np.ndarray) -> np.ndarray:
        unit = normalize_rows(vectors.astype(np.float64))
        similarity = unit @ unit.T  # (n, n)
        np.fill_diagonal(similarity, -np.inf)
        return np.argpartition(-similarity, k, axis=1)[:, :k]  # (n, k), unordered

    ours, theirs = nearest(other), nearest(reference)
    overlap = [len(set(a) & set(b)) for a, b in zip(ours, theirs, strict=True)]
    return float(np.mean(overlap) / k)


def int8_accuracy(reference: np.ndarray, quantized: np.ndarray) -> dict[str, Any]:
    """Cosine of each text's int8 vector to its fp32 one (min, mean) and retrieval agreement."""
    cos = cosine_rows(reference, quantized)
    return {
        "min_cosine_vs_fp32": float(cos.min()),
        "mean_cosine_vs_fp32": float(cos.mean()),
        f"top{TOP_K}_agreement": neighbour_agreement(reference, quantized),
        "texts": int(cos.size),
    }


class _OpenVinoRun:
    """The int8 graph compiled as the service compiles it (``service.backends.openvino``), run
    the way ``embed_texts`` runs a session; the float ops in bf16 where the CPU has it."""

    def __init__(self, path: Path, hint: str) -> None:
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": hint}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.compiled(feed)
        return [np.asarray(results[self.compiled.output(name)]) for name in names]


def served_int8(path: Path) -> tuple[Session, str]:
    """The int8 graph in the runtime ``--precision int8`` serves it with, and its name."""
    if importlib.util.find_spec("openvino") is None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session, "onnxruntime CPU (OpenVINO is not installed)"
    import openvino as ov

    native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    hint = "bf16" if native else "f32"
    return _OpenVinoRun(path, hint), f"openvino CPU, int8 MatMuls, INFERENCE_PRECISION_HINT={hint}"


def measure_int8(fp32: Session, int8_path: Path, tokenizer: Tokenizer) -> dict[str, Any]:
    """``int8_accuracy`` of the served int8 graph against the fp32 graph (ONNX Runtime, whose
    parity with PyTorch the grid checked) on every text of ``common.texts``."""
    texts = corpus.corpus()
    session, runtime = served_int8(int8_path)
    reference = embed_texts(fp32, tokenizer, texts)
    accuracy = int8_accuracy(reference, embed_texts(session, tokenizer, texts))
    return {
        **accuracy,
        "data": f"common.texts: {len(texts)} sentences and passages, "
        f"every {CALIBRATION_STRIDE}nd of them used for calibration",
        "runtime": runtime,
    }
