"""Calibrated int8 against the bf16 default, offline through the service's backends (issue 18).

Each int8 recipe (``export.quantize.Int8Recipe``: NNCF or ONNX Runtime's static QDQ, and which
MatMuls stay in float) quantises the artifact's ``model.onnx``; the service's own
``create_backend`` then runs it as ``--precision int8`` would (OpenVINO, the float ops in bf16
where the CPU has it), and ``model.onnx`` as the default runs it (OpenVINO bf16).

Accuracy: every bench text (``common.texts``: sentences and passages) against the fp32 graph
(ONNX Runtime fp32, parity 7e-6 with PyTorch): min and mean cosine, and top-10 retrieval
agreement (``export.quantize.neighbour_agreement``). Speed: W2's shape (requests of 32
sentences) and W3's (requests of 8 passages, ~250 tokens), each request cut into micro-batches
as the replica cuts it (``offline.BackendEncoder``), in interleaved rounds (every encoder once
per round, rotating order); a ratio is bf16's time over int8's in the same round, median over
rounds, so the shared machine's bursts hit both sides of a ratio.

Served: the export's recipe (the first) in the artifact folder ``python -m export --quantize
int8`` would write (``served_artifact``: the artifact's files, the same int8 graph, its measured
accuracy in the serving config and manifest), served twice at once by ``served.embedserve`` (cache
off): ``--precision int8``, and the defaults (bf16). Each serves every bench text first (its
vectors: the served accuracy, and a warm-up); then W2's and W3's closed loops
(``served.CLOSED_LOOPS``) run on each in turn, in pairs whose order alternates
(``served.alternate``); a ratio is int8's inputs/s over bf16's in the same pair, median over
pairs, with their range.

Quantised graphs are kept in ``GRAPH_CACHE`` under a key of the graph, the recipe, the quantising
code and library: a rerun on the same artifact skips quantisation (3.7 min for the three recipes
here). Sizing, on 2 cores shared with other sessions' test suites (load average 6-20): 383-476 s
with the graphs cached: ~1 min the accuracy encodes, 2.1-3.2 min the offline rounds (4 of them;
5, with the ONNX Runtime fallback timed too, took 4.4 min), 3.3-3.6 min the served part
(start-ups, every text through each service, 3 pairs of 8 s W2 and 10 s W3 runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import export.quantize
from common import texts as corpus
from export.artifact import (
    INT8_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SERVING_CONFIG_FILE,
    Artifact,
    load_artifact,
    with_int8,
    write_json,
)
from export.manifest import file_entries
from export.quantize import Int8Recipe, int8_accuracy, quantize_int8

from ..config import LoadConfig
from ..driver import run
from . import served
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
ROUNDS = 4  # at scale 1.0; never fewer than 2
# Kept across runs (a fresh ``work`` each run would quantise again): keyed by ``graph_key``.
GRAPH_CACHE = Path(tempfile.gettempdir()) / "embedserve-bench-int8-graphs"
SERVED = {"w2": 8.0, "w3": 10.0}  # seconds per served run at scale 1.0, by CLOSED_LOOPS key
SERVED_PAIRS = 3
ACCURACY_BATCH = 32  # texts per request when the services' vectors are fetched
INT8_FLAGS = ("--precision", "int8")


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


def graph_key(base: Artifact, recipe: Int8Recipe) -> str:
    """What an int8 graph is a function of: the fp32 graph, the recipe (with its calibration),
    the quantising code and the library that quantises."""
    library = "nncf" if recipe.method == "nncf" else "onnxruntime"
    parts = [
        base.manifest["files"][MODEL_FILE]["sha256"],
        json.dumps(recipe.to_dict(), sort_keys=True),
        hashlib.sha256(Path(export.quantize.__file__).read_bytes()).hexdigest(),
        f"{library} {metadata.version(library)}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def quantized_graph(base: Artifact, recipe: Int8Recipe) -> tuple[Path, float]:
    """``recipe``'s int8 graph of ``base`` (from ``GRAPH_CACHE`` when there) and the seconds
    quantising took (0 when cached)."""
    from models.tokenizer import Tokenizer

    name = f"{recipe.method}-{'-'.join(recipe.keep)}-{graph_key(base, recipe)}.int8.onnx"
    path = GRAPH_CACHE / name
    if path.is_file():
        return path, 0.0
    assert base.tokenizer_path is not None
    tokenizer = Tokenizer(base.tokenizer_path, base.config.max_seq_length)
    GRAPH_CACHE.mkdir(parents=True, exist_ok=True)
    pending = path.with_name(f"pending-{os.getpid()}-{name}")  # never a half-written hit
    log.info("int8: quantising with %s", recipe.label)
    start = time.perf_counter()
    quantize_int8(base.model_path, pending, tokenizer, recipe=recipe)
    pending.replace(path)
    return path, time.perf_counter() - start


def served_artifact(
    base: Artifact, graph: Path, recipe: Int8Recipe, accuracy: dict[str, Any], folder: Path
) -> Path:
    """``folder`` as ``python -m export --quantize int8`` writes it, with ``graph`` as its
    ``model.int8.onnx``: ``base``'s files (linked), the int8 accuracy in the serving config
    (``/info`` and the backend choice quote it) and the manifest, every file hashed."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in base.manifest["files"]:
        if name not in (SERVING_CONFIG_FILE, INT8_FILE):
            (folder / name).symlink_to(base.root / name)
    (folder / INT8_FILE).symlink_to(graph.resolve())
    write_json(folder / SERVING_CONFIG_FILE, with_int8(base.config, accuracy).to_dict())
    extras = {**base.manifest.get("extras", {})}
    extras["int8"] = {"file": INT8_FILE, "recipe": recipe.to_dict(), **accuracy}
    manifest = {**base.manifest, "files": file_entries(folder), "extras": extras}
    write_json(folder / MANIFEST_FILE, manifest)
    return folder


def _rate(config: LoadConfig) -> tuple[float, int]:
    """Inputs/s and errors of one closed-loop run."""
    summary = run(config).summary
    return summary.inputs_per_s, summary.errors


def measure_served(
    artifact: Path, threads: int, scale: float, work: Path, reference: np.ndarray
) -> dict[str, Any]:
    """The int8 artifact served with ``--precision int8`` and with the defaults, at once: each
    one's /info backend, its vectors' accuracy on every bench text, and W2's and W3's pairs."""
    texts = corpus.corpus()
    batches = [texts[i : i + ACCURACY_BATCH] for i in range(0, len(texts), ACCURACY_BATCH)]
    flags: dict[str, tuple[str, ...]] = {"int8": INT8_FLAGS, "bf16": ()}
    with served.embedserves(
        [
            partial(served.embedserve, artifact, threads, work / f"{name}-server.log", flags=f)
            for name, f in flags.items()
        ]
    ) as servers:
        urls = dict(zip(flags, (s.url for s in servers), strict=True))
        backends = {k: (served.server_info(u) or {}).get("backend", {}) for k, u in urls.items()}
        accuracy = {
            k: int8_accuracy(reference, served.served_vectors(u, batches)) for k, u in urls.items()
        }
        loops: dict[str, Any] = {}
        for key, seconds in SERVED.items():
            loop = served.CLOSED_LOOPS[key]
            configs = {k: served.loop_config(u, loop, seconds * scale) for k, u in urls.items()}
            pairs = served.alternate(
                partial(_rate, configs["int8"]), partial(_rate, configs["bf16"]), SERVED_PAIRS
            )
            ratios = [q[0] / b[0] for q, b in pairs]
            loops[key] = {
                "label": loop.label(key),
                "clients": loop.clients,
                "seconds_per_run": seconds * scale,
                "pairs": [{"int8": q[0], "bf16": b[0]} for q, b in pairs],
                "errors": sum(q[1] + b[1] for q, b in pairs),
                "ratio_median": statistics.median(ratios),
                "ratio_range": (min(ratios), max(ratios)),
            }
            log.info("int8 served %s: int8/bf16 %.2f (range %.2f-%.2f)", key,
                     loops[key]["ratio_median"], *loops[key]["ratio_range"])  # fmt: skip
    return {"backends": backends, "accuracy": accuracy, "loops": loops}


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict:
    start, load_start = time.perf_counter(), os.getloadavg()
    work.mkdir(parents=True, exist_ok=True)
    base = load_artifact(artifact)
    texts = corpus.corpus()
    reference = _encoder(base, "onnxruntime", "fp32", threads).encode(texts)
    encoders = {"bf16": _encoder(base, "openvino", "bf16", threads)}
    recipes: dict[str, dict] = {}
    graphs: dict[Int8Recipe, Path] = {}
    export_accuracy: dict[str, Any] = {}
    for recipe in RECIPES:
        graphs[recipe], seconds = quantized_graph(base, recipe)
        variant = replace(base, int8_path=graphs[recipe])
        encoders[recipe.label] = _encoder(variant, "openvino", "int8", threads)
        accuracy = int8_accuracy(reference, encoders[recipe.label].encode(texts))
        recipes[recipe.label] = {**accuracy, "quantize_s": seconds}
        if recipe == RECIPES[0]:  # what the served artifact records; the fallback without OpenVINO
            export_accuracy = accuracy
            fallback = _encoder(variant, "onnxruntime", "int8", threads)
            recipes[f"{recipe.label} (onnxruntime)"] = int8_accuracy(
                reference, fallback.encode(texts)
            )
            del fallback  # accuracy only: without OpenVINO the default is fp32, not bf16
    bf16 = int8_accuracy(reference, encoders["bf16"].encode(texts))
    rounds = max(2, round(ROUNDS * scale))
    log.info("int8: %d interleaved rounds of W2 and W3 shapes", rounds)
    times = _speed(encoders, rounds)
    del encoders  # their compiled models: the services below need the memory
    for label in times.keys() - {"bf16"}:
        recipes[label]["ratio"] = {
            shape: statistics.median(
                b / q for b, q in zip(times["bf16"][shape], times[label][shape], strict=True)
            )
            for shape in ("w2", "w3")
        }
    export_recipe = RECIPES[0]
    folder = served_artifact(
        base, graphs[export_recipe], export_recipe, export_accuracy, work / "served-artifact"
    )
    log.info("int8: %s served with %s and with the defaults", folder, " ".join(INT8_FLAGS))
    return {
        "threads": threads,
        "rounds": rounds,
        "bf16": bf16,
        "recipes": recipes,
        "served": {
            "recipe": export_recipe.label,
            **measure_served(folder, threads, scale, work, reference),
        },
        "seconds": time.perf_counter() - start,
        "load_avg": (load_start, os.getloadavg()),
    }


def _times_bf16(recipe: dict, shape: str) -> str:
    """A recipe's speed over bf16's, or a dash for a row measured for accuracy only."""
    ratio = recipe.get("ratio")
    return "—" if ratio is None else f"{ratio[shape]:.2f}×"


def section(found: dict, cores: int) -> list[str]:
    """The Markdown of ``docs/benchmarks.md``'s int8 section: offline recipes, then served."""
    bf16 = found["bf16"]
    lines = [
        "## int8, calibrated, against the bf16 default (issue 18)",
        "",
        f"Offline through the service's backends on {cores} cores ({found['threads']} threads), "
        f"median of {found['rounds']} interleaved rounds; W2: requests of {W2_INPUTS} "
        f"sentences, W3: requests of {W3_INPUTS} passages. Accuracy on every bench text "
        f"({bf16['texts']}) against the fp32 graph; bf16 itself: min cosine "
        f"{bf16['min_cosine_vs_fp32']:.5f}, top-10 agreement {bf16['top10_agreement']:.3f}. "
        "The first row is what `python -m export --quantize int8` writes; its ONNX Runtime "
        "row (the fallback where OpenVINO is absent) is not timed: there the default is fp32, "
        "so a ratio to bf16 would say nothing.",
        "",
        "| recipe | min cosine | mean cosine | top-10 agreement | W2 × bf16 | W3 × bf16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in found["recipes"].items():
        lines.append(
            f"| {label} | {r['min_cosine_vs_fp32']:.4f} | {r['mean_cosine_vs_fp32']:.5f} | "
            f"{r['top10_agreement']:.3f} | {_times_bf16(r, 'w2')} | {_times_bf16(r, 'w3')} |"
        )
    return lines + ["", *served_section(found)]


def served_section(found: dict) -> list[str]:
    """Served int8 against served bf16, pair by pair, then beside the offline ratios."""
    s = found["served"]
    loops, backends, accuracy = s["loops"], s["backends"], s["accuracy"]
    offline = found["recipes"][s["recipe"]]
    offline_ratio = offline["ratio"]

    def backend(key: str) -> str:
        b = backends.get(key) or {}
        return f"{b.get('name')} {b.get('precision')}"

    def rates(pair: dict[str, float]) -> str:
        return f"{pair['int8']:,.1f} | {pair['bf16']:,.1f} | {pair['int8'] / pair['bf16']:.2f}×"

    def ratio(key: str) -> str:
        low, high = loops[key]["ratio_range"]
        return f"**{loops[key]['ratio_median']:.2f}×** ({low:.2f}-{high:.2f}×)"

    def cosines(a: dict[str, float]) -> str:
        return (
            f"{a['min_cosine_vs_fp32']:.4f} | {a['mean_cosine_vs_fp32']:.5f} | "
            f"{a['top10_agreement']:.3f}"
        )

    keys = list(loops)
    lines = [
        "### Served: `--precision int8` against the default",
        "",
        f"The first recipe's graph in the artifact folder `python -m export --quantize int8` "
        f"writes, served twice at once (cache off): `{' '.join(INT8_FLAGS)}` (/info: "
        f"{backend('int8')}) and the defaults (/info: {backend('bf16')}). "
        + "; ".join(
            f"{loops[k]['label']} from {loops[k]['clients']} clients, "
            f"{loops[k]['seconds_per_run']:g} s runs"
            for k in keys
        )
        + f"; each workload run on the two services in turn, {len(loops[keys[0]]['pairs'])} "
        f"pairs, order alternating. Errors: {sum(loops[k]['errors'] for k in keys)}.",
        "",
        "| pair | " + " | ".join(f"{k.upper()} int8 inputs/s | bf16 | ratio" for k in keys) + " |",
        "|---:|" + "---:|---:|---:|" * len(keys),
    ]
    for i, pairs in enumerate(zip(*(loops[k]["pairs"] for k in keys), strict=True), 1):
        lines.append(f"| {i} | " + " | ".join(rates(p) for p in pairs) + " |")
    lines += [
        "",
        "int8 over bf16, median of the pairs (range), beside the same graph offline, and the "
        f"vectors' accuracy against the fp32 graph on every bench text ({offline['texts']}):",
        "",
        "| | "
        + " | ".join(f"{k.upper()} × bf16" for k in keys)
        + " | min cosine | mean cosine | top-10 agreement |",
        "|---|" + "---:|" * (len(keys) + 3),
        f"| served int8 | {' | '.join(ratio(k) for k in keys)} | {cosines(accuracy['int8'])} |",
        f"| offline int8 | {' | '.join(f'{offline_ratio[k]:.2f}×' for k in keys)} | "
        f"{cosines(offline)} |",
        f"| served bf16 | {' | '.join('1×' for _ in keys)} | {cosines(accuracy['bf16'])} |",
        "",
        f"The section took {found['seconds']:.0f} s; load average (1 min) "
        f"{found['load_avg'][0][0]:.1f} at its start, {found['load_avg'][1][0]:.1f} at its end, on "
        "a machine shared with other work: the ratios, each taken seconds apart, are the "
        "result; the absolute rates are not.",
    ]
    return lines
