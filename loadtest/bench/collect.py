"""Measurements → report rows: offline and served throughput, latency, accuracy, client cost."""

from __future__ import annotations

import numpy as np

from common.arrays import cosine_rows

from ..driver import RunResult
from .offline import Measurement
from .results import Accuracy, ClientOverhead, FlopRate, LongPassageFlops, PeakResult, Row, Shape
from .served import CLOSED_LOOPS

BASELINE = "sentence-transformers fp32"
SERVED_ROWS = {  # run name → (shape, load)
    **{
        name: (loop.shape, f"{name.upper()}: closed ×{loop.clients}"
               + (" (sequential)" if loop.clients == 1 else ""))
        for name, loop in CLOSED_LOOPS.items()
    },
    "w4": ("single", "W4: open loop, highest rate within the p99 objective"),
}  # fmt: skip


def accuracy(short: np.ndarray | None, long: np.ndarray | None, reference: np.ndarray) -> Accuracy:
    """Cosine to the reference of every sentence (first pass of the 32-sentence batches, which
    walk the corpus in order) and every passage; ``reference`` is sentences then passages."""
    assert short is not None and long is not None
    n_passages = len(long)
    n_sentences = len(reference) - n_passages
    cos = cosines(np.concatenate([short[:n_sentences], long]), reference)
    return Accuracy(texts=len(cos), min_cosine=float(cos.min()), mean_cosine=float(cos.mean()))


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row by row cosine similarity, over the rows both have: the first pass of batches that
    wrap around the corpus, or the first texts of a longer reference."""
    n = min(len(vectors), len(reference))
    return cosine_rows(vectors[:n], reference[:n])


def offline_rows(
    measured: dict[tuple[str, str], Measurement], shapes: list[Shape], acc: dict[str, Accuracy]
) -> list[Row]:
    rows = []
    per_request = {s.key: s.inputs_per_request for s in shapes}
    for (system, shape), m in measured.items():
        p50, p99 = np.percentile(m.batch_ms, [50, 99]) if m.batch_ms else (None, None)
        rows.append(
            Row(
                key=f"offline.{system}.{shape}",
                section="offline",
                system=system,
                shape=shape,
                load="offline",
                inputs_per_s=m.inputs_per_s,
                median_inputs_per_s=m.median_inputs_per_s,
                requests_per_s=m.inputs_per_s / per_request[shape],
                p50_ms=float(p50) if p50 is not None else None,
                p99_ms=float(p99) if p99 is not None else None,
                mean_ms=float(np.mean(m.batch_ms)),
                vs_baseline=1.0 if system == BASELINE else None,
                min_cosine=acc[system].min_cosine if system in acc else None,
            )
        )
    return rows


def served_system(info: dict | None) -> str:
    """ "embedserve served <backend> <precision>" from the server's /info."""
    backend = (info or {}).get("backend") or {}
    return f"embedserve {backend.get('name', '?')} {backend.get('precision', '?')} served"


def served_rows(runs: dict[str, RunResult], system: str, acc: Accuracy) -> list[Row]:
    rows = []
    for name, (shape, load) in SERVED_ROWS.items():
        if name not in runs:
            continue
        s = runs[name].summary
        note = ""
        if s.sweep is not None:
            best = s.sweep.max_rate_rps
            note = f"highest offered rate that held: {best:g} req/s" if best else "no rate held"
        rows.append(
            Row(
                key=f"served.{name}",
                section="served",
                system=system,
                shape=shape,
                load=load,
                inputs_per_s=s.inputs_per_s,
                requests_per_s=s.throughput_rps,
                p50_ms=s.latency_ms.p50,
                p99_ms=s.latency_ms.p99,
                mean_ms=s.latency_ms.mean,
                min_cosine=acc.min_cosine,
                client_cpu_pct=100 * s.client.cpu_s / max(s.duration_s, 1e-9),
                note=note,
            )
        )
    return rows


def client_rows(runs: dict[str, RunResult]) -> list[ClientOverhead]:
    """``served.client_overhead``'s runs, keyed by what one request held."""
    out = []
    for name, result in runs.items():
        s = result.summary
        out.append(
            ClientOverhead(
                shape=name,
                concurrency=int(s.config.get("concurrency", 1)),
                requests_per_s=s.throughput_rps,
                cpu_ms_per_request=s.client.cpu_ms_per_request or 0.0,
                p50_ms=s.latency_ms.p50,
            )
        )
    return out


def long_flops(
    rows: list[Row],
    shape: str,
    lengths: list[int],
    mean_flops: float,
    peak: PeakResult,
    encoder: dict[str, int],
) -> LongPassageFlops:
    """Useful FLOP/s of every row on the long-passage shape (each offline system and the served
    W3 row) against the measured bf16 peak.

    inputs/s × mean FLOPs per passage is exact for the offline rows (each round runs every
    passage once) and for W3 up to the last partial cycle of its requests over the passages.
    """
    peak_flops = peak.tflops * 1e12
    rates = []
    for row in (r for r in rows if r.shape == shape):
        best = row.inputs_per_s * mean_flops
        median = None if row.median_inputs_per_s is None else row.median_inputs_per_s * mean_flops
        rates.append(
            FlopRate(
                row=row.key,
                section=row.section,
                system=row.system,
                inputs_per_s=row.inputs_per_s,
                gflops=best / 1e9,
                fraction_of_peak=best / peak_flops,
                median_gflops=None if median is None else median / 1e9,
                median_fraction_of_peak=None if median is None else median / peak_flops,
            )
        )
    return LongPassageFlops(
        encoder=encoder,
        texts=len(lengths),
        mean_tokens=float(np.mean(lengths)),
        max_tokens=max(lengths),
        mean_flops=mean_flops,
        peak=peak,
        rates=rates,
    )
