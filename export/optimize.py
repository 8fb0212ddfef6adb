"""Derived graphs: ORT transformer fusions and fp16 (static int8 is in :mod:`export.quantize`).
Each is an extra file, never a replacement for ``model.onnx``, and each is measured against the
fp32 graph it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from .artifact import EXTERNAL_DATA_SUFFIX
from .quiet import quiet

# Fused operators the BERT optimizer can produce; Attention/MultiHeadAttention are the big ones.
ATTENTION_FUSIONS = ("Attention", "MultiHeadAttention")


def _location(path: Path) -> str:
    return path.name + EXTERNAL_DATA_SUFFIX


def optimize_transformer(
    src: Path,
    dst: Path,
    *,
    num_heads: int,
    hidden_size: int,
    use_gpu: bool,
    external_data: bool,
    fp16: bool,
    verbose: bool = False,
) -> dict[str, Any]:
    """ONNX Runtime's BERT fusions (python pass only, ``opt_level=0``).

    ``opt_level=0`` keeps the file portable: higher levels bake in ORT's hardware-specific
    rewrites, which ORT redoes anyway when it loads the file on the serving machine.
    Returns the fused-operator counts and, when attention did not fuse, a note saying so.
    """
    from onnxruntime.transformers import optimizer

    with quiet(not verbose):
        model = optimizer.optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,
            use_gpu=use_gpu,
        )
        if fp16:
            model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(dst), use_external_data_format=external_data)
    stats = {k: int(v) for k, v in sorted(model.get_fused_operator_statistics().items()) if v}
    fused_attention = sum(stats.get(k, 0) for k in ATTENTION_FUSIONS)
    report: dict[str, Any] = {
        "fused_operators": stats,
        "nodes": len(model.model.graph.node),
        "opt_level": 0,
    }
    if not stats:
        report["note"] = "the fusions found nothing to fuse; the file equals the input graph"
    elif not fused_attention:
        report["note"] = (
            "attention did not fuse: ORT's BERT attention pattern does not match this "
            "exporter's attention subgraph; only the listed fusions were applied"
        )
    return report


def convert_fp16(src: Path, dst: Path, *, external_data: bool, verbose: bool = False) -> None:
    """fp16 weights and compute, fp32 inputs/outputs (``keep_io_types``) so the service's
    contract (int64 in, float32 out) does not change with precision."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet(not verbose):
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save_model(
            model,
            str(dst),
            save_as_external_data=external_data,
            all_tensors_to_one_file=True,
            location=_location(dst),
        )
