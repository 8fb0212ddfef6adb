"""The closing summary table: one row per model file, with its size and validation numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import artifact as fmt
from .progress import table


def count(n: int) -> str:
    """Parameter counts as 22.6M or 20.5k."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _mb(path: Path) -> str:
    size = path.stat().st_size
    data = path.with_name(path.name + fmt.EXTERNAL_DATA_SUFFIX)
    if data.is_file():
        size += data.stat().st_size
    return f"{size / 1e6:.1f} MB"


def _worst(parity: dict[str, Any]) -> str:
    """The largest difference over the graph's outputs (embeddings, or logits)."""
    return f"{max(v for k, v in parity.items() if k.startswith('max_abs_')):.2g}"


def _cosine(parity: dict[str, Any]) -> str:
    """Sentence-embedding cosine; a classifier's logits have none."""
    cosine = parity.get("min_cosine_sentence_embedding")
    return "-" if cosine is None else f"{cosine:.7f}"


def summary(output: Path, manifest: dict[str, Any]) -> str:
    """The table printed after a successful export, built from the manifest alone."""
    parity = manifest["validation"]["parity"]
    model = manifest["model"]
    notes = f"{manifest['graph']['nodes']} nodes, {manifest['options']['precision']}"
    if model["task"] != "embedding":
        labels = len(model["labels"])
        notes += f", {model['task']}: {labels} label{'' if labels == 1 else 's'}"
    rows = [[fmt.MODEL_FILE, _mb(output / fmt.MODEL_FILE), _worst(parity), _cosine(parity), notes]]
    extras = manifest["extras"]
    if "optimized" in extras:
        opt = extras["optimized"]
        p = opt["parity"]
        fused = ", ".join(f"{k} {v}" for k, v in opt["fused_operators"].items()) or "none"
        rows.append(
            [
                fmt.OPTIMIZED_FILE,
                _mb(output / fmt.OPTIMIZED_FILE),
                _worst(p),
                _cosine(p),
                f"fused: {fused}",
            ]
        )
    if "int8" in extras:
        q = extras["int8"]
        rows.append(
            [
                fmt.INT8_FILE,
                _mb(output / fmt.INT8_FILE),
                "-",
                f"{q['min_cosine_vs_fp32']:.7f}",
                f"vs fp32 on {q['texts']} texts, top-10 agreement {q['top10_agreement']:.3f}",
            ]
        )
    head = ["file", "size", "max|diff|", "min cosine", "notes"]
    return f"artifact {output}\n" + table(rows, head)
