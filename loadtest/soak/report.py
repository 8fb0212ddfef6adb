"""What the soak hands an operator: the verdict lines (stdout and docs/soak.md), the Markdown
report, and the plot of latency per window and replica RSS over the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..plots import save_figure  # noqa: E402
from .verdicts import Records, SoakSummary, Verdict, Windows, is_unexpected  # noqa: E402


def verdict_row(v: Verdict) -> tuple[str, str, str, str]:
    """(result, check, measured, limit) in words."""
    result = "SKIP" if v.passed is None else "PASS" if v.passed else "FAIL"
    if v.unit == "count":
        return result, v.name, f"{v.value:.0f} ({v.detail})", f"{v.limit:.0f}"
    measured = v.detail if v.value is None else f"{v.value:+.1%} ({v.detail})"
    return result, v.name, measured, f"< {v.limit:.0%}"


def headline(s: SoakSummary) -> str:
    good = s.load * s.capacity.requests_per_s
    return (
        f"soak: {s.duration_s:g} s of mixed open-loop traffic at {s.load:.0%} of "
        f"{s.capacity.requests_per_s:.1f} requests/s capacity: {good:.1f} good + "
        f"{s.offered_rps - good:.2f} bad requests/s, {s.requests:,} requests"
    )


def console(s: SoakSummary, doc: Path) -> str:
    """The lines printed at the end: what ran, each verdict, and the outcome in one word."""
    lines = [headline(s)]
    lines += [f"  {r}  {name:<34} {measured}   limit {limit}"
              for r, name, measured, limit in map(verdict_row, s.verdicts)]  # fmt: skip
    lines += [f"    unexpected: {e}" for e in s.unexpected_examples]
    failed = [v.name for v in s.verdicts if v.passed is False]
    lines.append(f"soak FAILED: {', '.join(failed)}; see {doc}" if failed else
                 f"soak PASSED; see {doc}")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(s: SoakSummary, records: Records, path: Path) -> Path:
    """Top: every good request's latency (faint), p50/p99 per window, unexpected answers.
    Bottom: replica RSS samples. Shaded: the warm-up; outlined: the two windows compared."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    expected = {name: k.expected_status for name, k in s.kinds.items()}
    ok = [x for kind, xs in records.items() if expected[kind] == 200 for x in xs
          if x.outcome == "ok"]  # fmt: skip
    wrong = [x for kind, xs in records.items() for x in xs if is_unexpected(expected[kind], x)]
    top.scatter([x.scheduled for x in ok], [x.latency_ms for x in ok], s=4, alpha=0.25,
                color="tab:gray", linewidths=0, label=f"good request ({len(ok):,})")  # fmt: skip
    if wrong:
        top.scatter([x.scheduled for x in wrong], [max(x.latency_ms, 0.1) for x in wrong], s=14,
                    marker="x", color="black", label=f"unexpected ({len(wrong):,})")  # fmt: skip
    mid = [(w.start_s + w.end_s) / 2 for w in s.timeline]
    for q, color in (("p50", "tab:green"), ("p99", "tab:red")):
        values = [getattr(w, f"{q}_ms") for w in s.timeline]
        top.plot(mid, [v if v is not None else float("nan") for v in values], "o-",
                 color=color, label=f"{q} per {s.window_s:g} s (good, mixed)")  # fmt: skip
    top.set_yscale("log")
    top.set_ylabel("latency (ms, from scheduled)")
    top.set_title(headline(s).removeprefix("soak: "), fontsize=9)
    times = [p.t_s for p in s.rss if p.replica_mib]
    bottom.plot(times, [p.replica_mib for p in s.rss if p.replica_mib], ".-", color="tab:blue",
                label="replica RSS")  # fmt: skip
    bottom.set_ylabel("MiB")
    bottom.set_xlabel("time (s)")
    windows = Windows(s.duration_s, s.warmup_s, s.window_s)
    for ax in (top, bottom):  # labelled once, in the top legend
        spans = ax is top
        ax.axvspan(0, s.warmup_s, color="gray", alpha=0.12, label="warm-up" if spans else None)
        for (a, b), name, color in ((windows.baseline, "baseline", "tab:purple"),
                                    (windows.last, "last", "black")):  # fmt: skip
            ax.axvspan(a, b, fill=False, edgecolor=color, linestyle=":",
                       label=f"{name} window" if spans else None)  # fmt: skip
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper left", fontsize=7)
    return save_figure(fig, path)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:,.1f}"


def markdown(s: SoakSummary, png: Path, doc: Path) -> str:
    """docs/soak.md: the command, the machine, capacity, offered load, verdicts, the plot."""
    m = s.machine
    failed = [v.name for v in s.verdicts if v.passed is False]
    outcome = f"**FAIL** ({', '.join(failed)})" if failed else "**PASS**"
    load = [", ".join(f"{x:.1f}" for x in m.get(k) or ()) or "?" for k in
            ("load_avg_start", "load_avg_end")]  # fmt: skip
    steps = [(st["concurrency"], f"{st['requests_per_s']:.1f}", f"{st['inputs_per_s']:.0f}",
              ", ".join(f"{n} × {k}" for k, n in st["statuses"].items()))
             for st in s.capacity.steps]  # fmt: skip
    kinds = [(name, f"{k.share:.1%}", f"{k.rate_rps:.2f}", f"{k.requests:,}", k.expected_status,
              ", ".join(f"{n:,} × {c}" for c, n in k.statuses.items()), k.unexpected,
              _ms(k.latency_ms.p50), _ms(k.latency_ms.p99))
             for name, k in s.kinds.items()]  # fmt: skip
    lines = [
        "# Soak: mixed traffic at a steady fraction of capacity",
        "",
        "Generated by the command below (`make soak`); do not edit by hand.",
        "",
        "```",
        s.command,
        "```",
        "",
        f"Result: {outcome}. Started {s.started_at} against {s.url}.",
        "",
        f"Machine: {m.get('cores')} cores ({m.get('cpu_model')}), shared; commit "
        f"{m.get('git_commit')}{' (dirty)' if m.get('git_dirty') else ''}; load average "
        f"(1, 5, 15 min) {load[0]} at the start, {load[1]} at the end.",
        "",
        "## Capacity",
        "",
        f"{s.capacity.method}: **{s.capacity.requests_per_s:.1f} requests/s**.",
        "",
        *_table(("clients", "requests/s", "inputs/s", "statuses"), steps),
        "",
        "## Offered load",
        "",
        f"Open loop, Poisson arrivals, {s.duration_s:g} s: the good kinds together at "
        f"{s.load:.0%} of capacity, the bad ones on top at a fixed share. "
        f"{s.offered_rps:.2f} requests/s in all, {s.requests:,} requests. Latency counts from "
        "each request's scheduled time; each kind's percentiles are over the answers it must "
        "get.",
        "",
        *_table(("kind", "share", "requests/s", "requests", "must get", "statuses",
                 "unexpected", "p50 ms", "p99 ms"), kinds),  # fmt: skip
        "",
        "## Verdicts",
        "",
        f"Warm-up: the first {s.warmup_s:g} s, left out. Baseline: [{s.warmup_s:g}, "
        f"{s.warmup_s + s.window_s:g}) s; last window: [{s.duration_s - s.window_s:g}, "
        f"{s.duration_s:g}) s. RSS growth compares the replica's median VmRSS over the two "
        "windows; p99 drift compares the p99 of all good requests together (per-kind tails rest "
        "on a few dozen requests a minute). Any 429, 5xx, timeout or connection error on a good "
        "request, or a bad request without its own 4xx, is unexpected.",
        "",
        *_table(("check", "measured", "limit", "result"),
                [(n, meas, lim, r) for r, n, meas, lim in map(verdict_row, s.verdicts)]),
        *([""] + [f"- unexpected: `{e}`" for e in s.unexpected_examples]
          if s.unexpected_examples else []),
        "",
        f"![soak]({os.path.relpath(png, doc.parent)})",
        "",
    ]  # fmt: skip
    return "\n".join(lines)
