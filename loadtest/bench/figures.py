"""The report's own figure: inputs/s of every row, grouped by request shape, with ratios."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .results import Row  # noqa: E402


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _plot_label(row: Row) -> str:
    if row.section == "served":
        return f"served {row.load.split(':')[0]}"
    return row.system.removesuffix(" (offline)")


def throughput_plot(rows: list[Row], labels: dict[str, str], path: Path) -> Path:
    """Inputs/s per row, grouped by texts-per-request shape, with the ratio to the baseline."""
    fig, axes = plt.subplots(len(labels), 1, figsize=(9, 2.2 * len(labels) + 0.5))
    axes = list(axes) if len(labels) > 1 else [axes]
    for ax, (shape, label) in zip(axes, labels.items(), strict=True):
        group = [r for r in rows if r.shape == shape]
        names = [_plot_label(r) for r in group]
        colors = [
            "tab:gray"
            if r.vs_baseline == 1.0
            else "tab:orange"
            if r.section == "served"
            else "tab:blue"
            for r in group
        ]
        bars = ax.barh(names, [r.inputs_per_s for r in group], color=colors)
        for bar, r in zip(bars, group, strict=True):
            middle = (bar.get_width(), bar.get_y() + bar.get_height() / 2)
            ax.annotate(
                _ratio(r.vs_baseline),
                middle,
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.invert_yaxis()
        ax.set_title(label, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="x")
        ax.set_xlim(0, max(r.inputs_per_s for r in group) * 1.18)
    axes[-1].set_xlabel("inputs/s (label: × sentence-transformers fp32)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
