"""Where the long-passage path (W3: 8 passages of ~253 tokens per call) spends its time, per
OpenVINO node type and per layer, against the matmul ceiling of the model's own shapes (issue
18); and the single-sentence latency of the backend beside the served W1 p50.

Everything runs through the service's own pieces: the backend ``service.backends.create_backend``
builds (OpenVINO bf16 at the bench's threads, one stream, as ``whole``), the artifact's
tokenizer, and the replica's micro-batching (``offline.BackendEncoder``). The profile compiles
the same ``ov.Model`` with the backend's own properties plus ``PERF_COUNT`` and sums
``request.profiling_info`` over the W3 batches. Fused nodes (GELU into the linear layers, the
attention's mask, softmax and both matmuls into one ``Subgraph``) report no time of their own.

One fix is tried here, interleaved with the backend as served: the same graph with only the
``sentence_embedding`` output (``ov.Model(outputs=...)``), so the per-token vectors are neither
converted to fp32 nor copied out when only pooled vectors are wanted.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common import texts

from . import flops, served
from .offline import BackendEncoder, replica_settings

log = logging.getLogger(__name__)

KEY = "profile"  # the name ``--only`` takes
PASSAGES = 8  # W3's passages per request
PROFILE_PASSES = 2  # at scale 1.0, after one warm-up pass
AB_ROUNDS = 6  # at scale 1.0: rounds over the W3 batches, full graph vs sentence_embedding only
W1_SENTENCES = 200  # at scale 1.0: single-sentence calls per offline latency measurement
W1_SECONDS = 6  # at scale 1.0: each served W1 run
W1_PAIRS = 3
# The backend's compile properties the profiled copy repeats (compile_streams sets them).
COPIED_PROPERTIES = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS",
                     "PERFORMANCE_HINT")  # fmt: skip
LINEAR, ATTENTION = "FullyConnected", "Subgraph"
WHAT = {
    LINEAR: "linear layers: Q, K, V, output, both feed-forward (GELU fused in)",
    ATTENTION: "attention: QKᵀ, mask, softmax, ·V (one fused subgraph per layer)",
    "Transpose": "head split/merge transposes",
    "Reorder": "layout and fp32↔bf16 reorders",
    "MulAdd": "layer norm scale and shift",
    "MVN": "layer norm (MVN)",
    "Add": "residual adds",
    "ReduceSum": "mean pooling",
    "Gather": "embedding lookup",
}


def w3_batches() -> list[list[str]]:
    passages = texts.passages()
    n = len(passages) // PASSAGES * PASSAGES
    return [passages[i : i + PASSAGES] for i in range(0, n, PASSAGES)]


def _properties(compiled: Any) -> dict[str, Any]:
    from service.backends.openvino import RUNTIME_CACHE_SHAPES

    config = {name: compiled.get_property(name) for name in COPIED_PROPERTIES}
    return {**config, "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_SHAPES}


def build(artifact_dir: Path, threads: int) -> tuple[BackendEncoder, BackendEncoder, Any, Any]:
    """The served backend (as an encoder), the pruned graph beside it, the profiled request and
    the encoder config."""
    import openvino as ov

    from export.artifact import load_artifact
    from models.tokenizer import Tokenizer
    from service.backends import create_backend
    from service.backends.openvino import OpenVinoBackend

    artifact = load_artifact(artifact_dir)
    settings = replica_settings(artifact_dir, "openvino", "bf16", threads)
    backend, _ = create_backend(settings, artifact)
    assert isinstance(backend, OpenVinoBackend)
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    overhead = settings.batching.micro_batch_overhead_tokens
    full = BackendEncoder(backend, tokenizer, artifact.config.pad_token_id, overhead)
    core = ov.Core()
    model = core.read_model(str(artifact.model_path))
    config = _properties(backend.compiled)
    pruned_model = ov.Model([model.output("sentence_embedding")], model.get_parameters(), "pooled")
    pruned = full.variant(
        ", sentence_embedding only",
        OpenVinoBackend(core.compile_model(pruned_model, "CPU", config), backend.precision),
    )
    profiled = core.compile_model(model, "CPU", {**config, "PERF_COUNT": True})
    return (
        full,
        pruned,
        profiled.create_infer_request(),
        flops.artifact_encoder_config(artifact_dir),
    )


def profile(
    request: Any, calls: list[tuple[Any, Any]], batches: int, passes: int, linear_per_layer: int
) -> dict:
    """Milliseconds per W3 batch (``batches`` of them make up ``calls``) by node type and by
    layer (execution order: a layer starts at its first linear layer, pooling at the first
    ReduceSum), after one warm-up pass that builds each shape's kernels."""
    by_type: dict[str, float] = defaultdict(float)
    by_layer: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    exec_types: dict[str, str] = {}
    for input_ids, attention_mask in calls:
        request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
    wall = 0.0
    for _ in range(passes):
        for input_ids, attention_mask in calls:
            start = time.perf_counter()
            request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
            wall += time.perf_counter() - start
            stage, linear = "embeddings", 0
            for node in request.profiling_info:
                ms = node.real_time.total_seconds() * 1e3
                if node.node_type == LINEAR:
                    linear += 1
                    stage = f"layer {(linear - 1) // linear_per_layer}"
                elif node.node_type == "ReduceSum":
                    stage = "pooling and outputs"
                by_type[node.node_type] += ms
                by_layer[stage] += ms
                if ms > 0:
                    counts[node.node_type] += 1
                    exec_types.setdefault(node.node_type, node.exec_type)
    n, runs = passes * batches, passes * len(calls)
    return {
        "ms_by_type": {k: v / n for k, v in by_type.items()},
        "infer_ms": wall * 1e3 / n,
        "exec_types": exec_types,
        "nodes_by_type": {k: v // runs for k, v in counts.items()},
        "ms_by_layer": {k: v / n for k, v in by_layer.items()},
        "calls": [list(ids.shape) for ids, _ in calls] * passes,
        "batches": n,
    }


def padded_flops(config: Any, calls: Sequence[Sequence[int]]) -> tuple[float, float]:
    """FLOPs the calls' padded shapes cost the linear layers and the attention matmuls."""
    linear = attention = 0.0
    for b, t in calls:
        every = flops.flops_per_sequence(config, t)
        att = config.n_layers * 2 * 2 * t * t * config.n_heads * config.head_size
        linear += b * (every - att)
        attention += b * att
    return linear, attention


def w1_offline_ms(encoder: BackendEncoder, sentences: list[str]) -> tuple[float, float]:
    """p50 ms of one sentence through the backend alone, and with tokenizing and padding."""
    run_ms, whole_ms = [], []
    for text in sentences:
        start = time.perf_counter()
        ids = encoder.tokenizer.tokenize([text])
        input_ids = np.asarray(ids, dtype=np.int64)
        mid = time.perf_counter()
        encoder.backend.run(input_ids, np.ones_like(input_ids))
        end = time.perf_counter()
        run_ms.append((end - mid) * 1e3)
        whole_ms.append((end - start) * 1e3)
    return statistics.median(run_ms), statistics.median(whole_ms)


def served_w1(
    artifact: Path, threads: int, scale: float, work: Path, encoder: BackendEncoder
) -> dict:
    """Served W1 p50 against the backend's own single-sentence p50, alternated in pairs."""
    from ..driver import run

    singles = served.singles_file(work)
    sentences = singles.read_text(encoding="utf-8").split("\n")[
        : max(20, round(W1_SENTENCES * scale))
    ]
    loop = served.CLOSED_LOOPS["w1"]
    # served.embedserve runs without the repeated-input cache, which would answer W1's
    # repeating sentences without the model.
    with served.embedserve(artifact, threads, work / "profile-server.log") as server:
        config = served.loop_config(server.url, loop, max(2.0, W1_SECONDS * scale), singles)
        pairs: list[tuple[tuple[float, float], float]] = []
        for k in range(W1_PAIRS):  # alternated, as served.alternate does
            if k % 2:
                p50 = run(config).summary.latency_ms.p50
                pairs.append((w1_offline_ms(encoder, sentences), p50 or 0.0))
            else:
                offline = w1_offline_ms(encoder, sentences)
                pairs.append((offline, run(config).summary.latency_ms.p50 or 0.0))
    return {
        "pairs": [[offline[0], offline[1], p50] for offline, p50 in pairs],
        "backend_ms": statistics.median(o[0] for o, _ in pairs),
        "tokenize_and_backend_ms": statistics.median(o[1] for o, _ in pairs),
        "served_p50_ms": statistics.median(p for _, p in pairs),
    }


def padded_calls(encoder: BackendEncoder, batches: list[list[str]]) -> list[tuple[Any, Any]]:
    """The (input_ids, attention_mask) of every backend call the replica makes for the batches:
    tokenized, sorted and cut into micro-batches as it does, padded."""
    from common.arrays import pad

    out = []
    for batch in batches:
        ids = encoder.tokenizer.tokenize(batch)
        for call in encoder.calls([len(x) for x in ids]):
            out.append(pad([ids[i] for i in call], encoder.pad_id))
    return out


def paired_calls(
    first: BackendEncoder, second: BackendEncoder, calls: list[tuple[Any, Any]], rounds: int
) -> list[float]:
    """Per round, ``first``'s time over ``second``'s (> 1: ``second`` is faster) summed over
    the calls, the two backends run back to back on each call, which goes first alternating.
    Whole passes each (``offline.one_pass``) were too coarse on a shared machine: they put one
    graph compiled twice 0.6-1.2× apart."""
    ratios = []
    for k in range(rounds):
        spent = [0.0, 0.0]
        for n, (input_ids, attention_mask) in enumerate(calls):
            for side in (0, 1) if (k + n) % 2 == 0 else (1, 0):
                backend = (first, second)[side].backend
                start = time.perf_counter()
                backend.run(input_ids, attention_mask)
                spent[side] += time.perf_counter() - start
        ratios.append(spent[0] / spent[1])
    return ratios


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    full, pruned, request, config = build(artifact, threads)
    batches = w3_batches()
    # Q, K, V, output, and the feed-forward's two (three when gated) per layer.
    linear_per_layer = 4 + (3 if config.feed_forward == "gated" else 2)
    log.info("profile: %d W3 batches per pass", len(batches))
    passes = max(1, round(PROFILE_PASSES * scale))
    calls = padded_calls(full, batches)
    found = profile(request, calls, len(batches), passes, linear_per_layer)
    linear, attention = padded_flops(config, found["calls"])
    seconds = {k: ms * found["batches"] / 1e3 for k, ms in found["ms_by_type"].items()}
    found["tflops"] = {LINEAR: linear / seconds[LINEAR] / 1e12,
                       ATTENTION: attention / seconds[ATTENTION] / 1e12}  # fmt: skip
    # Right after the profile, so both see the same background load; OpenVINO only (the
    # backend's runtime): torch's matmul is in make bench's peak.
    d, ff = config.d_model, config.d_ff
    rows = max(b * t for b, t in found["calls"])  # the largest call's token rows
    shapes = ((rows, d, d), (rows, d, ff), (rows, ff, d), flops.PEAK_SHAPES[2])
    log.info("profile: OpenVINO bf16 MatMul on the model's shapes")
    trials = flops._openvino_trials(shapes, threads, repeats=3, budget_s=1.0)
    found["matmul"] = {t.shape: t.tflops for t in trials}
    start = time.perf_counter()
    for batch in batches:  # the service's path: tokenize, micro-batch, pad, run, normalise
        full.encode(batch)
    found["encode_ms"] = (time.perf_counter() - start) * 1e3 / len(batches)
    log.info("profile: full graph vs sentence_embedding only")
    first = batches[0]
    found["pruned_max_abs"] = float(np.abs(full.encode(first) - pruned.encode(first)).max())
    ratios = paired_calls(full, pruned, calls, max(3, round(AB_ROUNDS * scale)))
    found["pruned_ratios"] = ratios
    found["pruned_ratio"] = statistics.median(ratios)
    log.info("profile: W1, backend vs served")
    found["w1"] = served_w1(artifact, threads, scale, work, full)
    found["threads"] = threads
    return found


def section(found: dict, cores: int) -> list[str]:
    types = found["ms_by_type"]
    total = sum(types.values())
    lines = [
        "## Where W3 spends its time (issue 18)",
        "",
        f"OpenVINO bf16 (the service's backend, one stream of {found['threads']} threads) on "
        f"W3's batches of {PASSAGES} passages, profiled with `PERF_COUNT` over "
        f"{found['batches']} batches on {cores} cores: the nodes' times sum to {total:.0f} ms "
        f"per batch; `infer` took {found['infer_ms']:.0f} ms (the rest: the runtime between "
        f"nodes, copying inputs in and outputs out), and the service's path around it "
        f"(tokenize, micro-batch, pad, run, normalise; no profiling) {found['encode_ms']:.0f} ms.",
        "",
        "| node type | what | ms per batch | share | nodes per call | kernel |",
        "|---|---|---:|---:|---:|---|",
    ]
    for kind, ms in sorted(types.items(), key=lambda kv: -kv[1]):
        if ms < 0.001 * total:
            continue
        lines.append(
            f"| {kind} | {WHAT.get(kind, '')} | {ms:.1f} | {100 * ms / total:.1f}% | "
            f"{found['nodes_by_type'].get(kind, 0)} | {found['exec_types'].get(kind, '')} |"
        )
    layers = found["ms_by_layer"]
    lines += [
        "",
        "Per layer (ms per batch): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in layers.items())
        + ".",
        "",
        f"Achieved on the padded shapes: linear layers "
        f"{found['tflops'][LINEAR]:.3f} TFLOP/s, attention {found['tflops'][ATTENTION]:.3f} "
        f"TFLOP/s; OpenVINO's bf16 MatMul alone on the model's shapes: "
        + ", ".join(f"{shape} {tf:.3f}" for shape, tf in found["matmul"].items())
        + " TFLOP/s.",
        "",
        f"Only `sentence_embedding` as output (no per-token vectors converted and copied out): "
        f"W3 inputs/s **{found['pruned_ratio']:.3f}×** the served graph's (median of "
        f"{len(found['pruned_ratios'])} rounds over W3's calls, each run on both back to back; "
        f"vectors max abs difference "
        f"{found['pruned_max_abs']:.1e}).",
    ]
    w1 = found["w1"]
    lines += [
        "",
        f"W1 (one sentence per request, one client): the backend alone "
        f"{w1['backend_ms']:.2f} ms p50 ({w1['tokenize_and_backend_ms']:.2f} ms with tokenizing), "
        f"served p50 {w1['served_p50_ms']:.2f} ms: **+{w1['served_p50_ms'] - w1['backend_ms']:.2f}"
        f" ms** (medians of {len(w1['pairs'])} alternated pairs).",
    ]
    return lines
