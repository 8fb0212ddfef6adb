"""The report's section on the reranker and on several models in one service (``rerank``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..stats import median_ratio, spread
from .rerank import CROSS_ENCODER
from .results import RerankResult, ServedRun, SeveralModels

Percentile = Literal["p50", "p99"]


def latencies(several: SeveralModels, q: Percentile) -> list[tuple[float, float]]:
    """(one model's service, several models') W1 latency ``q`` of each pair, in ms."""
    return [(_ms(a, q), _ms(b, q)) for a, b in several.pairs]


def _ms(run: ServedRun, q: Percentile) -> float:
    value = getattr(run.latency_ms, q)
    if value is None:
        raise ValueError("a W1 run had no successful request")
    return float(value)


def within_noise(pairs: Sequence[tuple[float, float]]) -> tuple[bool, float, float]:
    """Whether the median ratio (second over first) departs from 1 by no more than either
    setup's own run-to-run spread; with the ratio and that spread."""
    ratio = median_ratio(pairs)
    noise = max(spread([a for a, _ in pairs]), spread([b for _, b in pairs]))
    return abs(ratio - 1) <= noise, ratio, noise


def verdict(several: SeveralModels, q: Percentile) -> str:
    inside, ratio, noise = within_noise(latencies(several, q))
    where = "within" if inside else "beyond"
    return f"{q} {ratio:.2f}× ({where} the runs' own spread of ±{noise:.0%})"


def several_models(s: SeveralModels) -> list[str]:
    default, others = s.models[0], ", ".join(s.models[1:])
    lines = [
        "### Several models in one service",
        "",
        f"{default}'s W1 (single sentences, {s.clients} client, closed loop, "
        f"{s.seconds_per_run:g} s per run) on a service of {default} alone and on one of "
        f"{default} (the default) with {others}, both up at once, run back to back "
        f"{len(s.pairs)} times in alternating order:",
        "",
        "| pair | alone p50 ms | alone p99 ms | beside p50 ms | beside p99 ms | "
        "alone / beside sentences/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (a, b) in enumerate(s.pairs, 1):
        lines.append(
            f"| {i} | {_ms(a, 'p50'):.1f} | {_ms(a, 'p99'):.1f} | {_ms(b, 'p50'):.1f} | "
            f"{_ms(b, 'p99'):.1f} | {a.inputs_per_s:,.1f} / {b.inputs_per_s:,.1f} |"
        )
    errors = sum(a.errors + b.errors for a, b in s.pairs)
    return [
        *lines,
        "",
        f"Beside the reranker over alone, median over the pairs: {verdict(s, 'p50')}, "
        f"{verdict(s, 'p99')}; errors: {errors}. The reranker is idle during these runs; each "
        "model has its own queue and batcher in the one service.",
        "",
    ]


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def section(r: RerankResult | None, skipped: str | None, cores: int) -> list[str]:
    """The section (or why it was not measured) on a machine of ``cores`` cores."""
    if r is None:
        return [] if skipped is None else ["## Reranking", "", f"Not measured: {skipped}", ""]
    t = r.throughput
    load = (
        ""
        if r.load_avg is None
        else f"; load average (1/5/15 min) {_load(r.load_avg[0])} at its start, "
        f"{_load(r.load_avg[1])} at its end (other sessions' work on the same cores, which the "
        "pairing is there for)"
    )
    pairs = ", ".join(f"{o:,.1f} → {s:,.1f} ({s / o:.2f}×)" for o, s in t.pairs)
    scores = "; ".join(f"{system} {diff:.2e}" for system, diff in r.max_abs_score.items())
    bf16 = (
        "the export measured no bf16 path"
        if r.bf16_max_abs_score is None
        else f"the export measured the bf16 path at {r.bf16_max_abs_score:.2e} on its own pairs"
    )
    return [
        "## Reranking",
        "",
        f"The reranker `{r.model}`: {r.checkpoint}. Served beside all-MiniLM-L6-v2 by one "
        f"`python -m service --artifact ... --artifact ...` ({r.served_system}, `--num-cpus "
        f"{r.threads}`) on the same {cores}-core machine; `python -m loadtest.bench --only "
        "rerank` reruns this section alone and re-renders this page.",
        "",
        f"Scores (`/rerank`, sigmoid) against {CROSS_ENCODER} on {r.score_pairs} (query, "
        f"document) pairs, max abs difference: {scores}; {bf16}.",
        "",
        f"Throughput: requests of one query and {r.documents_per_request} documents (passages "
        f"and sentences alternating), {t.clients} clients, closed loop, "
        f"{t.seconds_per_served_run:g} s per run, against {CROSS_ENCODER} `predict` offline at "
        f"{r.threads} threads on the first requests' pairs, in {len(t.pairs)} back-to-back "
        f"pairs: served / offline = **{t.ratio:.2f}×** (median pair; median pairs/s: offline "
        f"{t.offline_per_s:,.1f}, served {t.served_per_s:,.1f}). Most of the gap is torch "
        "eager under other tenants' load: its two OpenMP threads slow down most when another "
        "process takes a core (the offline rounds above show the same), so read the ratio "
        "with the load average below.",
        "",
        f"Pairs, offline → served pairs/s: {pairs}. Section time: {r.seconds:.0f} s{load}.",
        "",
        *several_models(r.several),
    ]
