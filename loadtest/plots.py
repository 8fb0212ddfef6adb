"""PNG plots of runs: latency over time with offered and achieved rate, the latency CDF, the
sweep's latency-vs-throughput curve, and a comparison of several runs.

matplotlib runs headless (Agg); every function writes one file and closes its figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .runner import Sample  # noqa: E402
from .stats import per_second  # noqa: E402
from .summary import Summary, SweepResult  # noqa: E402

DPI = 110


def save_figure(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def timeline(samples: Sequence[Sample], title: str, path: Path, open_loop: bool = True) -> Path:
    """Top: each request's latency at its scheduled time, with p50/p99 per second.
    Bottom: offered (scheduled; in a closed loop, sent) and achieved (answered OK) per second."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    ok = [s for s in samples if s.outcome == "ok"]
    bad = [s for s in samples if s.outcome != "ok"]
    horizon = max((s.done for s in samples), default=1.0)
    if ok:
        t = np.array([s.scheduled for s in ok])
        lat = np.array([s.latency_ms for s in ok])
        top.scatter(t, lat, s=6, alpha=0.4, color="tab:blue", label="request", linewidths=0)
        seconds = np.floor(t).astype(int)
        marks = sorted(set(seconds.tolist()))
        for q, color in ((50, "tab:green"), (99, "tab:red")):
            top.plot(
                [m + 0.5 for m in marks],
                [np.percentile(lat[seconds == m], q) for m in marks],
                color=color,
                label=f"p{q} per second",
            )
        top.set_yscale("log")
    if bad:
        top.scatter(
            [s.scheduled for s in bad],
            [max(s.latency_ms, 0.1) for s in bad],
            s=10,
            marker="x",
            color="black",
            label="error",
        )
    top.set_ylabel("latency (ms, from scheduled start)")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3, which="both")
    offered = per_second(np.array([s.scheduled for s in samples]), horizon)
    achieved = per_second(np.array([s.done for s in ok]), horizon)
    edges = np.arange(len(offered) + 1, dtype=float)
    sent = "offered (scheduled)" if open_loop else "sent (closed loop)"
    bottom.stairs(offered, edges, label=sent, color="tab:gray")
    bottom.stairs(achieved, edges, label="achieved (OK answers)", color="tab:blue")
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("requests/s")
    bottom.legend(loc="lower right", fontsize=8)
    bottom.grid(alpha=0.3)
    return save_figure(fig, path)


def cdf(curves: dict[str, list[tuple[float, float]]], title: str, path: Path) -> Path:
    """Latency CDFs from ``(percent, ms)`` points: one curve per run."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in curves.items():
        if points:
            pct, ms = zip(*points, strict=True)
            ax.plot(ms, pct, label=label)
    for q in (50, 99):
        ax.axhline(q, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("percent of requests at or below")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if len(curves) > 1 or any(curves.values()):
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def sweep_curve(sweep: SweepResult, title: str, path: Path) -> Path:
    """p50/p99 against achieved throughput for each offered rate, with the objective."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = sorted(sweep.steps, key=lambda s: s.offered_rps)
    x = [s.throughput_rps for s in steps]
    for q, color in (("p50", "tab:green"), ("p99", "tab:red")):
        ax.plot(x, [getattr(s.latency_ms, q) or np.nan for s in steps], "o-", color=color, label=q)
    for s in steps:
        ax.annotate(
            f"{s.offered_rps:g}/s",
            (s.throughput_rps, s.latency_ms.p99 or np.nan),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.axhline(sweep.slo_p99_ms, color="black", linestyle="--", label="p99 objective")
    if sweep.max_rate_rps is not None:
        ax.set_title(f"{title} — holds up to {sweep.max_rate_rps:g} req/s offered")
    else:
        ax.set_title(f"{title} — no step held")
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def compare(summaries: dict[str, Summary], path: Path) -> Path:
    """Left: latency CDFs; right: inputs/s per run."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(3, 2))
    for label, summary in summaries.items():
        if summary.latency_cdf_ms:
            pct, ms = zip(*summary.latency_cdf_ms, strict=True)
            left.plot(ms, pct, label=label)
    left.set_xscale("log")
    left.set_xlabel("latency (ms)")
    left.set_ylabel("percent of requests at or below")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8, loc="lower right")
    labels = list(summaries)
    right.barh(labels, [summaries[k].inputs_per_s for k in labels], color="tab:blue")
    right.invert_yaxis()
    right.set_xlabel("inputs/s")
    right.grid(alpha=0.3, axis="x")
    fig.suptitle("load test comparison")
    return save_figure(fig, path)
