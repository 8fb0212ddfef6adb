"""Issue 8's two numbers: useful FLOPs per text (checked against PyTorch's own FLOP counter on
the model) and the measured bf16 matmul peak (a cheap smoke run), then their report section."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from loadtest.bench.collect import long_flops
from loadtest.bench.flops import (
    OPENVINO,
    TORCH,
    artifact_encoder_config,
    best_of,
    bf16_matmul_peak,
    flops_per_sequence,
    mean_flops,
    token_lengths,
)
from loadtest.bench.report import render
from loadtest.bench.results import MatmulTrial, PeakResult, Row
from models import EncoderConfig, build_model

from .test_bench import _results

SMALL = EncoderConfig(
    vocab_size=100, d_model=48, n_heads=4, n_layers=2, d_ff=80, max_position=64,
    max_seq_length=64, attention="math",
)  # fmt: skip


def counted(config: EncoderConfig, batch: int, length: int) -> int:
    """FLOPs PyTorch's FlopCounterMode sees in one forward: it counts matrix multiplies only
    (mm, addmm, bmm; 2 per multiply-add, biases not counted), exactly the work
    ``flops_per_sequence`` counts, so the two must agree without slack."""
    model = build_model(config)
    ids = torch.randint(1, config.vocab_size, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.int64)  # real tokens only: no padding
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(ids, mask)
    return counter.get_total_flops()


@pytest.mark.parametrize("length", [1, 7, 33, 64])
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_flops_match_torch_flop_counter(length: int, norm: str) -> None:
    config = SMALL.replace(norm=norm)
    assert counted(config, 3, length) == pytest.approx(3 * flops_per_sequence(config, length))


def test_flops_match_torch_flop_counter_on_the_minilm_shape() -> None:
    config = EncoderConfig(attention="math")  # all-MiniLM-L6-v2's hyper-parameters
    assert counted(config, 1, 250) == pytest.approx(flops_per_sequence(config, 250))
    # By hand: 6 · (8·250·384² + 4·250²·384 + 4·250·384·1536) ≈ 5.88 GFLOP.
    assert flops_per_sequence(config, 250) == pytest.approx(5_884_416_000)


GATED_GQA = SMALL.replace(
    d_model=64, n_kv_heads=2, head_dim=24, d_ff=96, feed_forward="gated", activation="silu",
    norm="pre", norm_type="rms", positional="rotary",
)  # fmt: skip


def test_flops_of_a_gated_grouped_query_config_by_hand() -> None:
    # d 64; 4 query heads and 2 K/V heads of an explicit 24 features (wider than 64 / 4, as in
    # Qwen3); d_ff 96; 2 layers; 10 tokens. Q, O: 2·(2·10·64·96) = 245,760; K, V:
    # 2·(2·10·64·48) = 122,880; Q·Kᵀ and ·V over all query heads: 2·(2·10²·96) = 38,400;
    # gate, up, down: 3·(2·10·64·96) = 368,640.
    assert flops_per_sequence(GATED_GQA, 10) == 2 * (245_760 + 122_880 + 38_400 + 368_640)
    assert counted(GATED_GQA, 2, 10) == pytest.approx(2 * flops_per_sequence(GATED_GQA, 10))


def test_mean_flops_averages_per_text_counts() -> None:
    # The attention term is quadratic: the mean of the counts, not the count of the mean length.
    lengths = [10, 30]
    expected = (flops_per_sequence(SMALL, 10) + flops_per_sequence(SMALL, 30)) / 2
    assert mean_flops(SMALL, lengths) == pytest.approx(expected)
    assert mean_flops(SMALL, lengths) > flops_per_sequence(SMALL, 20)
    with pytest.raises(ValueError):
        flops_per_sequence(SMALL, -1)


def test_artifact_config_and_real_token_lengths(minilm_artifact: Path) -> None:
    from common import texts as corpus

    config = artifact_encoder_config(minilm_artifact)
    assert (config.n_layers, config.d_model, config.d_ff) == (6, 384, 1536)
    lengths = token_lengths(minilm_artifact, corpus.passages()[:4] + ["hi"])
    assert lengths[-1] == 3  # [CLS] hi [SEP]
    assert all(100 < n <= config.max_seq_length for n in lengths[:-1])


def test_bf16_peak_smoke() -> None:
    peak = bf16_matmul_peak(threads=1, shapes=((256, 256, 256),), repeats=2, budget_s=0.1)
    methods = {t.method for t in peak.trials}
    assert TORCH in methods and (OPENVINO in methods or OPENVINO in peak.skipped)
    assert all(t.tflops > 0 and t.repeats >= 1 for t in peak.trials)
    assert peak.tflops == max(t.tflops for t in peak.trials) and peak.threads == 1
    assert peak.shape == "(256×256)·(256×256)"


def test_best_of_keeps_the_best_trial_per_method_and_shape() -> None:
    def peak(*tflops: float) -> PeakResult:
        trials = [
            MatmulTrial(method=TORCH, m=64, k=64, n=64, tflops=tflops[0], repeats=3),
            MatmulTrial(method=OPENVINO, m=64, k=64, n=64, tflops=tflops[1], repeats=3),
        ]
        top = max(trials, key=lambda t: t.tflops)
        return PeakResult(threads=2, method=top.method, shape=top.shape, tflops=top.tflops,
                          trials=trials, seconds=1)  # fmt: skip

    combined = best_of([peak(0.3, 0.2), peak(0.1, 0.4)])
    assert [t.tflops for t in combined.trials] == [0.3, 0.4]
    assert (combined.method, combined.tflops, combined.runs) == (OPENVINO, 0.4, 2)


def test_long_flops_rates_and_report_section() -> None:
    peak = PeakResult(
        threads=2,
        method=TORCH,
        shape="(1024×1024)·(1024×1024)",
        tflops=0.25,
        trials=[MatmulTrial(method=TORCH, m=1024, k=1024, n=1024, tflops=0.25, repeats=5)],
        seconds=8,
    )
    rows = [
        Row(key="offline.ov.long8", section="offline", system="embedserve openvino bf16 (offline)",
            shape="long8", load="offline", inputs_per_s=20, median_inputs_per_s=16,
            requests_per_s=2.5, p50_ms=400, p99_ms=450),
        Row(key="served.w3", section="served", system="embedserve openvino bf16 served",
            shape="long8", load="W3: closed ×2", inputs_per_s=10, requests_per_s=1.25,
            p50_ms=1600, p99_ms=1700),
        Row(key="served.w2", section="served", system="embedserve openvino bf16 served",
            shape="short32", load="W2: closed ×4", inputs_per_s=300, requests_per_s=9,
            p50_ms=400, p99_ms=500),
    ]  # fmt: skip
    encoder = {"n_layers": 6, "d_model": 384, "n_heads": 12, "d_ff": 1536}
    result = long_flops(rows, "long8", [240, 260], 6e9, peak, encoder)
    assert [r.row for r in result.rates] == ["offline.ov.long8", "served.w3"]
    offline, served = result.rates
    assert offline.gflops == pytest.approx(120) and offline.fraction_of_peak == pytest.approx(0.48)
    assert offline.median_fraction_of_peak == pytest.approx(16 * 6e9 / 0.25e12)
    assert served.fraction_of_peak == pytest.approx(0.24) and served.median_gflops is None
    assert result.mean_tokens == 250 and result.max_tokens == 260 and result.target == 0.4

    results = _results()
    results.rows += rows
    results.long_flops = result
    text = render(results)
    assert "## Long passages: FLOP/s against the bf16 matmul peak" in text
    assert "**6.00 GFLOP per passage**" in text and "**0.250 TFLOP/s**" in text
    assert (
        "| embedserve openvino bf16 (offline) | offline | 20.0 | 120.0 | 48.0% | 38.4% | meets |"
        in text
    )
    assert "| W3: closed ×2 | 10.0 | 60.0 | 24.0% | – | **misses** |" in text
    assert "at **48.0%** of the peak, which meets the 40% target" in text
    assert "served (embedserve openvino bf16 served, W3): **24.0%**, which **misses** it" in text
