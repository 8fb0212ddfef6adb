"""The report's section on models measured beside all-MiniLM-L6-v2 (``extra_models``)."""

from __future__ import annotations

from .results import BenchResults, ExtraModelResult

MAIN_W2_ROW = "served.w2"  # MiniLM's served W2 row: its × baseline is the ratio compared with


def main_ratio(results: BenchResults) -> float | None:
    """MiniLM's served W2 inputs/s over sentence-transformers fp32 offline on the same shape."""
    row = next((r for r in results.rows if r.key == MAIN_W2_ROW), None)
    return None if row is None else row.vs_baseline


def comparison(m: ExtraModelResult, minilm: float | None) -> str:
    """One sentence setting ``m``'s ratio beside MiniLM's."""
    if minilm is None:
        return "MiniLM's served W2 row is not in these results, so there is no ratio to compare."
    relative = m.ratio / minilm
    direction = (
        "about the same as" if abs(relative - 1) < 0.05 else "above" if relative > 1 else "below"
    )
    return (
        f"all-MiniLM-L6-v2's W2 in the table above runs at {minilm:.2f}× sentence-transformers "
        f"fp32 (its best offline round rather than pairs), so {m.model}'s ratio is {direction} "
        f"MiniLM's ({relative:.2f}× it), for {m.work_vs_main:.1f}× the matmul work per sentence."
    )


def model_section(m: ExtraModelResult, minilm: float | None) -> list[str]:
    pairs = ", ".join(f"{o:,.1f} → {s:,.1f} ({s / o:.2f}×)" for o, s in m.pairs)
    lines = [
        f"### {m.model}",
        "",
        f"Cosine to sentence-transformers fp32 over {m.parity_texts['sentences']} sentences and "
        f"{m.parity_texts['passages']} passages:",
        "",
        "| system | texts | min cosine | mean cosine |",
        "|---|---:|---:|---:|",
    ]
    for system, acc in m.accuracy.items():
        lines.append(f"| {system} | {acc.texts} | {acc.min_cosine:.6f} | {acc.mean_cosine:.6f} |")
    return [
        *lines,
        "",
        f"Served ({m.served_system}, `--num-cpus {m.threads}`; {m.inputs_per_request} "
        f"sentences per request, {m.clients} clients, closed loop, {m.seconds_per_served_run:g} s "
        f"per run) against sentence-transformers fp32 offline at {m.threads} threads on the same "
        f"sentences, in {len(m.pairs)} back-to-back pairs: served / offline = **{m.ratio:.2f}×** "
        f"(median pair; median inputs/s: offline {m.offline_inputs_per_s:,.1f}, served "
        f"{m.served_inputs_per_s:,.1f}). {comparison(m, minilm)}",
        "",
        f"Pairs, offline → served inputs/s: {pairs}. Section time: {m.seconds:.0f} s.",
        "",
    ]


def section(
    models: list[ExtraModelResult], skipped: dict[str, str], cores: int, minilm: float | None
) -> list[str]:
    """The section for ``models`` (and those ``skipped``), on a machine of ``cores`` cores;
    ``minilm``: MiniLM's served W2 ratio, when the same results have it."""
    if not models and not skipped:
        return []
    lines = [
        "## Other models beside all-MiniLM-L6-v2",
        "",
        f"Each model exported once to `artifacts/`, served by the same launcher with default "
        f"settings on the same {cores}-core machine; `python -m loadtest.bench --only mpnet` "
        "reruns this section alone and re-renders this page.",
        "",
    ]
    for m in models:
        lines += model_section(m, minilm)
    for name, why in skipped.items():
        lines += [f"{name}: not measured: {why}", ""]
    return lines


def extra_models(results: BenchResults) -> list[str]:
    return section(
        results.extra_models,
        results.extra_models_skipped,
        results.machine.cores,
        main_ratio(results),
    )
