"""Long passages against the hardware: useful FLOPs per text and the measured bf16 matmul peak.

Issue 8 asks what fraction of the machine's bf16 matrix-multiply peak the encoder reaches on
long passages. Both sides of that fraction are produced here:

- :func:`flops_per_sequence` counts an encoder's forward FLOPs from its config alone, on the
  real (unpadded) tokens of one text: "useful" FLOPs. Work a backend spends on padding inside a
  micro-batch is not counted, so padding shows up as a lower fraction rather than being hidden.
- :func:`bf16_matmul_peak` measures (rather than quotes from a datasheet) the fastest bf16
  matrix multiply this machine runs at the benchmark's thread count, through torch and through
  OpenVINO's CPU plugin (the runtime of the bf16 backend).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from models.config import EncoderConfig

from .results import MatmulTrial, PeakResult

log = logging.getLogger(__name__)

# (m, k, n) of (m×k)·(k×n): square sizes, where GEMM libraries reach their best, and the
# model's own skinny shapes (8 passages × 256 tokens = 2048 rows, d_model 384, d_ff 1536).
PEAK_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 4096, 4096),
    (2048, 384, 1536),
    (2048, 1536, 384),
)
TORCH = "torch.matmul bf16"
OPENVINO = "OpenVINO MatMul (bf16 hint)"


def flops_per_sequence(config: EncoderConfig, length: int) -> float:
    """Forward FLOPs of the encoder on one sequence of ``length`` real tokens (2 per multiply-add).

    Per layer, with L = length, d = d_model, H query heads and K key/value heads (K = H unless
    grouped-query attention) of Dh features each (``head_size``: d / H unless the config sets
    ``head_dim``, as Qwen3 does), and d_ff the feed-forward width:

    - Q and output projections: 2 · 2·L·d·(H·Dh); K and V projections: 2 · 2·L·d·(K·Dh)
    - attention scores Q·Kᵀ and the weighted sum of V, all query heads: 2 · 2·L²·(H·Dh)
      (grouped-query attention shares K and V between heads but every query head still
      multiplies by them)
    - feed-forward: 2 · 2·L·d·d_ff plain (up, down); 3 · 2·L·d·d_ff gated (gate, up, down)

    Causal or sliding-window attention does not halve the attention term: dense kernels (ours,
    ONNX Runtime's, OpenVINO's) compute every score and mask the unused ones, so the full L² is
    work the machine does. Ignored, because they are not matrix multiplies and are small beside
    them (about 1% for MiniLM): biases, norms, softmax, activations, rotary or relative position
    terms, residual adds, embedding lookups and pooling. The count is what a matmul peak can be
    compared with, and it is exactly what ``torch.utils.flop_counter.FlopCounterMode`` counts on
    the model with math attention.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    d, n, dh = config.d_model, float(length), config.head_size
    q_width = config.n_heads * dh
    kv_width = (config.n_kv_heads or config.n_heads) * dh
    projections = 2 * 2 * n * d * q_width + 2 * 2 * n * d * kv_width
    attention = 2 * 2 * n * n * q_width
    matrices = 3 if config.feed_forward == "gated" else 2
    feed_forward = matrices * 2 * n * d * config.d_ff
    return config.n_layers * (projections + attention + feed_forward)


def artifact_encoder_config(artifact_dir: str | Path) -> EncoderConfig:
    """The encoder config an artifact was exported from (its manifest records it)."""
    from export.artifact import load_artifact

    artifact = load_artifact(artifact_dir, verify_hashes=False)
    return EncoderConfig.from_dict(artifact.manifest["determinants"]["config"])


def token_lengths(artifact_dir: str | Path, texts: list[str]) -> list[int]:
    """Real tokens per text as the service sees them: the artifact's tokenizer, truncated to
    the serving ``max_seq_length``, special tokens included (as ``BackendEncoder`` does)."""
    from export.artifact import load_artifact
    from models.tokenizer import Tokenizer

    artifact = load_artifact(artifact_dir, verify_hashes=False)
    if artifact.tokenizer_path is None:
        raise ValueError(f"{artifact_dir} has no tokenizer: cannot count tokens of texts")
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    return [len(ids) for ids in tokenizer.tokenize(texts)]


def mean_flops(config: EncoderConfig, lengths: list[int]) -> float:
    """Mean useful FLOPs per text: inputs/s times this is useful FLOP/s for the same texts."""
    if not lengths:
        raise ValueError("no texts to count")
    return float(np.mean([flops_per_sequence(config, n) for n in lengths]))


def _best_tflops(
    call: Callable[[], object], flops: float, repeats: int, budget_s: float
) -> tuple[float, int]:
    """Best-of-``repeats`` TFLOP/s after one warm-up call; stops early past ``budget_s`` (but
    after two timed calls) so the large sizes stay affordable on a slow or busy machine."""
    call()  # warm-up: allocation, kernel selection, weight packing
    times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if len(times) >= 2 and spent > budget_s:
            break
    return flops / min(times) / 1e12, len(times)


def _torch_trials(
    shapes: tuple[tuple[int, int, int], ...], threads: int, repeats: int, budget_s: float
) -> list[MatmulTrial]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    trials = []
    try:
        gen = torch.Generator().manual_seed(0)
        for m, k, n in shapes:
            a = torch.randn(m, k, generator=gen).to(torch.bfloat16)
            b = torch.randn(k, n, generator=gen).to(torch.bfloat16)
            with torch.inference_mode():
                call = partial(torch.matmul, a, b)
                tflops, done = _best_tflops(call, 2.0 * m * k * n, repeats, budget_s)
            trials.append(MatmulTrial(method=TORCH, m=m, k=k, n=n, tflops=tflops, repeats=done))
    finally:
        torch.set_num_threads(previous)
    return trials


def _openvino_trials(
    shapes: tuple[tuple[int, int, int], ...], threads: int, repeats: int, budget_s: float
) -> list[MatmulTrial]:
    """One MatMul per shape: an fp32 activation times constant fp32 weights, compiled for CPU
    with the bf16 inference hint and the bf16 backend's stream settings. That is how the model's
    linear layers reach the plugin: it converts the weights to bf16 and packs them once."""
    import openvino as ov
    from openvino import opset13 as ops

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }
    rng = np.random.default_rng(0)
    trials = []
    for m, k, n in shapes:
        a = ops.parameter([m, k], ov.Type.f32, name="a")
        weights = ops.constant(rng.standard_normal((k, n), dtype=np.float32))
        model = ov.Model([ops.matmul(a, weights, False, False)], [a], f"matmul_{m}_{k}_{n}")
        request = core.compile_model(model, "CPU", config).create_infer_request()
        x = rng.standard_normal((m, k), dtype=np.float32)
        call = partial(request.infer, {0: x})
        tflops, done = _best_tflops(call, 2.0 * m * k * n, repeats, budget_s)
        trials.append(MatmulTrial(method=OPENVINO, m=m, k=k, n=n, tflops=tflops, repeats=done))
    return trials


def bf16_matmul_peak(
    threads: int,
    shapes: tuple[tuple[int, int, int], ...] = PEAK_SHAPES,
    repeats: int = 5,
    budget_s: float = 1.0,
) -> PeakResult:
    """The machine's bf16 matmul peak at ``threads`` threads: the best TFLOP/s over methods and
    shapes, each the best of ``repeats`` timed calls after a warm-up.

    Measured with the benchmark's own thread count because that is the compute the encoder is
    given; a method that cannot run here (no OpenVINO, or no native bf16 in its CPU plugin) is
    left out and named in ``skipped``. About 10 s with the default shapes on 2 cores.
    """
    start = time.perf_counter()
    trials: list[MatmulTrial] = []
    skipped: dict[str, str] = {}
    trials += _torch_trials(shapes, threads, repeats, budget_s)
    try:
        from service.backends.openvino import cpu_supports_bf16

        if cpu_supports_bf16():
            trials += _openvino_trials(shapes, threads, repeats, budget_s)
        else:
            skipped[OPENVINO] = "the OpenVINO CPU plugin reports no native bf16 here"
    except ImportError as exc:
        skipped[OPENVINO] = f"openvino is not installed ({exc})"
    best = max(trials, key=lambda t: t.tflops)
    for t in trials:
        log.info("bf16 peak: %s %s: %.3f TFLOP/s", t.method, t.shape, t.tflops)
    return PeakResult(
        threads=threads,
        method=best.method,
        shape=best.shape,
        tflops=best.tflops,
        trials=trials,
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )


def best_of(peaks: list[PeakResult]) -> PeakResult:
    """Several peak measurements (e.g. before and after the offline rounds) as one: the best
    trial of each method and shape. On a shared machine a burst of someone else's load can
    only lower a measurement, so the highest is the fairest peak, and the least flattering
    denominator for the encoder's share of it."""
    if not peaks:
        raise ValueError("no peak measurements to combine")
    best: dict[tuple[str, str], MatmulTrial] = {}
    for trial in (t for p in peaks for t in p.trials):
        key = (trial.method, trial.shape)
        if key not in best or trial.tflops > best[key].tflops:
            best[key] = trial
    top = max(best.values(), key=lambda t: t.tflops)
    return PeakResult(
        threads=peaks[0].threads,
        method=top.method,
        shape=top.shape,
        tflops=top.tflops,
        trials=list(best.values()),
        skipped={k: v for p in peaks for k, v in p.skipped.items()},
        seconds=sum(p.seconds for p in peaks),
        runs=sum(p.runs for p in peaks),
    )
