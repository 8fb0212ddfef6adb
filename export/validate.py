"""Structural checks of an exported file: onnx.checker, the I/O signature, an ORT session.

These run before numeric parity because their failures are cheaper to explain: a wrong
signature or a graph ONNX Runtime cannot load would otherwise show up as a confusing crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from .artifact import INPUT_NAMES, OUTPUT_NAMES, task_outputs
from .errors import ExportError, ValidationError

Signature = list[dict[str, Any]]


def check_model(path: Path) -> None:
    """onnx.checker with ``full_check`` (type and shape inference); the path form handles
    external data and models above protobuf's 2 GiB limit."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationError(f"onnx.checker rejected {path.name}: {exc}") from exc


def _describe(values: Any) -> Signature:
    out = []
    for value in values:
        tensor = value.type.tensor_type
        out.append(
            {
                "name": value.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in tensor.shape.dim],
            }
        )
    return out


def signature(path: Path) -> tuple[Signature, Signature]:
    """(inputs, outputs) as name/dtype/shape, symbolic axes by name (for the manifest)."""
    proto = onnx.load(str(path), load_external_data=False)
    return _describe(proto.graph.input), _describe(proto.graph.output)


def check_signature(
    inputs: Signature, outputs: Signature, dimension: int, task: str = "embedding"
) -> None:
    """The contract the service relies on: names, int64 ids, dynamic batch/seq axes, and the
    task's outputs: (b, s, d) and (b, d) for an embedder, (b, num_labels) logits otherwise
    (``dimension`` is d_model or num_labels)."""
    problems = []
    if [i["name"] for i in inputs] != list(INPUT_NAMES):
        problems.append(f"inputs are {[i['name'] for i in inputs]}, expected {list(INPUT_NAMES)}")
    for i in inputs:
        if i["dtype"] != "int64" or len(i["shape"]) != 2:
            problems.append(f"input {i['name']} is {i['dtype']} {i['shape']}, not int64 [b, s]")
        elif not all(isinstance(d, str) for d in i["shape"]):
            problems.append(f"input {i['name']} has fixed axes {i['shape']}")
    expected = list(task_outputs(task))
    if [o["name"] for o in outputs] != expected:
        problems.append(f"outputs are {[o['name'] for o in outputs]}, expected {expected}")
    elif expected == list(OUTPUT_NAMES):
        token, sentence = (o["shape"] for o in outputs)
        problems += _embedding_shapes(token, sentence, dimension)
    else:
        (logits,) = (o["shape"] for o in outputs)
        if len(logits) != 2 or not isinstance(logits[0], str) or logits[1] != dimension:
            problems.append(f"output shape {logits} is not [b, {dimension}] (num_labels)")
    if problems:
        raise ValidationError("exported signature is wrong: " + "; ".join(problems))


def _embedding_shapes(token: list[Any], sentence: list[Any], dimension: int) -> list[str]:
    dynamic = all(isinstance(d, str) for d in token[:2] + sentence[:1])
    if len(token) != 3 or len(sentence) != 2 or not dynamic:
        return [f"output shapes {token}, {sentence} are not [b, s, d], [b, d]"]
    if token[2] != dimension or sentence[1] != dimension:
        return [f"output width {token[2]}/{sentence[1]} is not d_model {dimension}"]
    return []


def providers_for(device: str) -> list[str]:
    if device == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def cuda_available() -> bool:
    """Both halves are needed: torch for the reference, ONNX Runtime for the graph."""
    import torch

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


def require_device(device: str) -> None:
    if device == "cuda" and not cuda_available():
        raise ExportError(
            "cuda requested but not available (needs torch with CUDA and "
            "onnxruntime-gpu's CUDAExecutionProvider); use --device cpu"
        )


def open_session(path: Path, device: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An ORT session with ORT's own warnings muted (they are not about the user's model)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=providers_for(device))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValidationError(f"ONNX Runtime cannot load {path.name}: {exc}") from exc
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ExportError(f"ONNX Runtime did not place {path.name} on CUDA")
    return session
