"""Calibrated int8 against the bf16 default, offline through the service's backends (issue 18).

Each int8 recipe (``export.quantize.Int8Recipe``: NNCF or ONNX Runtime's static QDQ, and which
MatMuls stay in float) quantises the artifact's ``model.onnx`` into ``work``; the service's own
``create_backend`` then runs it as ``--precision int8`` would (OpenVINO, the float ops in bf16
where the CPU has it), and ``model.onnx`` as the default runs it (OpenVINO bf16).

Accuracy: every bench text (``common.texts``: sentences and passages) against the fp32 graph
(ONNX Runtime fp32, parity 7e-6 with PyTorch): min and mean cosine, and top-10 retrieval
agreement (``export.quantize.neighbour_agreement``). Speed: W2's shape (requests of 32
sentences) and W3's (requests of 8 passages, ~250 tokens), each request cut into micro-batches
as the replica cuts it (``offline.BackendEncoder``), in interleaved rounds (every encoder once
per round, rotating order); a ratio is bf16's time over int8's in the same round, median over
rounds, so the shared machine's bursts hit both sides of a ratio.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path

from common import texts as corpus
from export.artifact import Artifact, load_artifact
from export.quantize import Int8Recipe, int8_accuracy, quantize_int8

from .offline import BackendEncoder, replica_settings

log = logging.getLogger(__name__)

KEY = "int8"  # the name ``--only`` takes
# The export's recipe first; then what it was chosen against.
RECIPES = (
    Int8Recipe(),
    Int8Recipe("nncf", ("attention", "ffn_down")),
    Int8Recipe("ort-qdq", ("attention", "ffn_down")),  # ONNX Runtime's most accurate here
)
W2_INPUTS, W3_INPUTS = 32, 8  # inputs per request, as served.CLOSED_LOOPS
W2_REQUESTS = 10  # 320 sentences per round; W3 takes every passage (6 requests)
ROUNDS = 5  # at scale 1.0; never fewer than 2


def _encoder(artifact: Artifact, backend: str, precision: str, threads: int) -> BackendEncoder:
    from models.tokenizer import Tokenizer
    from service.backends import create_backend

    settings = replica_settings(artifact.root, backend, precision, threads)
    built, _ = create_backend(settings, artifact)
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    overhead = settings.batching.micro_batch_overhead_tokens
    return BackendEncoder(built, tokenizer, artifact.config.pad_token_id, overhead)


def _requests(texts: list[str], size: int, count: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, min(len(texts), size * count), size)]


def _speed(encoders: dict[str, BackendEncoder], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per pass over each shape's requests, per round, per encoder."""
    shapes = {
        "w2": _requests(corpus.sentences(), W2_INPUTS, W2_REQUESTS),
        "w3": _requests(corpus.passages(), W3_INPUTS, len(corpus.passages())),
    }
    for encoder in encoders.values():  # warm-up: the shapes' kernels built before timing
        for requests in shapes.values():
            encoder.encode(requests[0])
    times: dict[str, dict[str, list[float]]] = {n: {s: [] for s in shapes} for n in encoders}
    names = list(encoders)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for shape, requests in shapes.items():
                start = time.perf_counter()
                for request in requests:
                    encoders[name].encode(request)
                times[name][shape].append(time.perf_counter() - start)
    return times


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    base = load_artifact(artifact)
    texts = corpus.corpus()
    reference = _encoder(base, "onnxruntime", "fp32", threads).encode(texts)
    encoders = {"bf16": _encoder(base, "openvino", "bf16", threads)}
    recipes: dict[str, dict] = {}
    assert base.tokenizer_path is not None
    from models.tokenizer import Tokenizer

    tokenizer = Tokenizer(base.tokenizer_path, base.config.max_seq_length)
    for recipe in RECIPES:
        # Named by the graph it came from: a rerun on the same artifact reuses it.
        digest = base.manifest["files"]["model.onnx"]["sha256"][:12]
        path = work / f"{digest}-{recipe.method}-{'-'.join(recipe.keep)}.int8.onnx"
        start = time.perf_counter()
        if not path.is_file():
            log.info("int8: quantising with %s", recipe.label)
            quantize_int8(base.model_path, path, tokenizer, recipe=recipe)
        seconds = time.perf_counter() - start
        variant = replace(base, int8_path=path)
        encoders[recipe.label] = _encoder(variant, "openvino", "int8", threads)
        accuracy = int8_accuracy(reference, encoders[recipe.label].encode(texts))
        recipes[recipe.label] = {**accuracy, "quantize_s": seconds}
        if recipe == RECIPES[0]:  # the fallback where OpenVINO is absent
            fallback = f"{recipe.label} (onnxruntime)"
            encoders[fallback] = _encoder(variant, "onnxruntime", "int8", threads)
            recipes[fallback] = int8_accuracy(reference, encoders[fallback].encode(texts))
    bf16 = int8_accuracy(reference, encoders["bf16"].encode(texts))
    rounds = max(2, round(ROUNDS * scale))
    log.info("int8: %d interleaved rounds of W2 and W3 shapes", rounds)
    times = _speed(encoders, rounds)
    for label, found in recipes.items():
        found["ratio"] = {
            shape: statistics.median(
                b / q for b, q in zip(times["bf16"][shape], times[label][shape], strict=True)
            )
            for shape in ("w2", "w3")
        }
    return {"threads": threads, "rounds": rounds, "bf16": bf16, "recipes": recipes}


def section(found: dict, cores: int) -> list[str]:
    bf16 = found["bf16"]
    lines = [
        "## int8, calibrated, against the bf16 default (issue 18)",
        "",
        f"Offline through the service's backends on {cores} cores ({found['threads']} threads), "
        f"median of {found['rounds']} interleaved rounds; W2: requests of {W2_INPUTS} "
        f"sentences, W3: requests of {W3_INPUTS} passages. Accuracy on every bench text "
        f"({bf16['texts']}) against the fp32 graph; bf16 itself: min cosine "
        f"{bf16['min_cosine_vs_fp32']:.5f}, top-10 agreement {bf16['top10_agreement']:.3f}. "
        "The first row is what `python -m export --quantize int8` writes.",
        "",
        "| recipe | min cosine | mean cosine | top-10 agreement | W2 × bf16 | W3 × bf16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in found["recipes"].items():
        lines.append(
            f"| {label} | {r['min_cosine_vs_fp32']:.4f} | {r['mean_cosine_vs_fp32']:.5f} | "
            f"{r['top10_agreement']:.3f} | {r['ratio']['w2']:.2f}× | {r['ratio']['w3']:.2f}× |"
        )
    return lines
