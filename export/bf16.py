"""How close bf16 inference of the exported graph stays to fp32, measured once at export.

The service's ``auto`` choice runs OpenVINO in bf16 where the CPU has native bf16, but only for
a model that keeps min cosine ≥ 0.9999 to fp32 (the project's bar for a default path): MiniLM
does (0.99994 in ``make bench``), all-mpnet-base-v2 does not (0.99985). The export measures it on
real text with the graph it writes, so the service decides from a number, not from the family.

A cross-encoder or classifier is served in fp32 by default; for one the export measures how far
bf16 scores (what /rerank and /predict answer) move on real (query, document) pairs, so a user
who asks for bf16 is told a number.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from common import texts as corpus
from common.arrays import cosine_rows, scores
from models import Tokenizer

from .parity import embed_texts, real_texts, score_pairs

# Every third text of the corpus: sentences and passages alike, a third of the time.
TEXT_STRIDE = 3
RUNTIME = "openvino CPU, INFERENCE_PRECISION_HINT=bf16"


class _OpenVinoSession:
    """An OpenVINO CPU compilation of the graph in bf16, run the way ``embed_texts`` runs an
    ONNX Runtime session (``run(output names, feed)``)."""

    def __init__(self, model_path: Path) -> None:
        import openvino as ov

        hint = {"INFERENCE_PRECISION_HINT": "bf16"}
        self.compiled = ov.Core().compile_model(str(model_path), "CPU", hint)

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.compiled(feed)
        return [np.asarray(results[self.compiled.output(name)]) for name in names]


def native_bf16_reason() -> str | None:
    """None when OpenVINO can run bf16 natively on this CPU, else why not."""
    if importlib.util.find_spec("openvino") is None:
        return "OpenVINO is not installed"
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "this CPU has no native bf16"
    return None


def bf16_agreement(model_path: Path, tokenizer: Tokenizer) -> dict[str, Any]:
    """Cosine of OpenVINO bf16 sentence embeddings to the fp32 graph's (ONNX Runtime, already
    checked against PyTorch by the parity grid) on real text."""
    texts, label = real_texts()
    texts = texts[::TEXT_STRIDE]
    fp32 = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    cos = cosine_rows(
        embed_texts(_OpenVinoSession(model_path), tokenizer, texts),
        embed_texts(fp32, tokenizer, texts),
    )
    return {
        "min_cosine_vs_fp32": float(cos.min()),
        "mean_cosine_vs_fp32": float(cos.mean()),
        "texts": int(cos.size),
        "data": f"every {TEXT_STRIDE}rd text of {label}",
        "runtime": RUNTIME,
    }


def bf16_score_agreement(model_path: Path, tokenizer: Tokenizer) -> dict[str, Any]:
    """Largest differences of OpenVINO bf16 logits and scores from the fp32 graph's (ONNX
    Runtime) on real (query, document) pairs."""
    pairs = corpus.pairs()
    fp32 = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    bf16_logits = score_pairs(_OpenVinoSession(model_path), tokenizer, pairs).astype(np.float64)
    fp32_logits = score_pairs(fp32, tokenizer, pairs).astype(np.float64)
    return {
        "max_abs_logit": float(np.abs(bf16_logits - fp32_logits).max()),
        "max_abs_score": float(np.abs(scores(bf16_logits) - scores(fp32_logits)).max()),
        "pairs": len(pairs),
        "data": "common.texts.pairs(): sentences as queries, passages and sentences as documents",
        "runtime": RUNTIME,
    }
