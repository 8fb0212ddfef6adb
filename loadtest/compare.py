"""``python -m loadtest compare A/summary.json B/summary.json ...``: one table, one plot.

Runs are labelled by their folder name (or ``label=path``), so comparing embedserve with a
peer measured by the same tool is one command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .summary import Summary

COLUMNS = (
    "run",
    "mode",
    "workload",
    "req/s",
    "inputs/s",
    "tokens/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "backend",
)


def load(spec: str) -> tuple[str, Summary]:
    """``label=path`` or ``path`` (a summary.json or its folder)."""
    label, _, raw = spec.rpartition("=")
    path = Path(raw)
    if path.is_dir():
        path = path / "summary.json"
    summary = Summary.model_validate_json(path.read_text(encoding="utf-8"))
    return label or summary.config.get("name") or path.parent.name or path.stem, summary


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def row(label: str, s: Summary) -> list[str]:
    mode = s.config.get("mode", "?")
    if mode == "open" and s.offered_rps:
        mode = f"open {s.offered_rps:g}/s"
    elif mode == "closed":
        mode = f"closed ×{s.config.get('concurrency', '?')}"
    backend = (s.server_info or {}).get("backend") or {}
    return [
        label,
        mode,
        str(s.config.get("workload", "?")),
        _num(s.throughput_rps),
        _num(s.inputs_per_s),
        _num(s.tokens_per_s, 0),
        _num(s.latency_ms.p50),
        _num(s.latency_ms.p99),
        _num(s.latency_ms.p999),
        str(s.errors),
        str(backend.get("name", "-")) if isinstance(backend, dict) else "-",
    ]


def table(runs: dict[str, Summary]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(label, s)) + " |" for label, s in runs.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest compare", description=__doc__)
    p.add_argument("summaries", nargs="+", help="summary.json files or folders, or label=path")
    p.add_argument("--out", type=Path, help="write compare.md and compare.png here")
    args = p.parse_args(argv)
    runs: dict[str, Summary] = {}
    for spec in args.summaries:
        label, summary = load(spec)
        while label in runs:
            label += "'"
        runs[label] = summary
    text = table(runs)
    sys.stdout.write(text)
    if args.out is not None:
        from . import plots

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.md").write_text(text, encoding="utf-8")
        path = plots.compare(runs, args.out / "compare.png")
        sys.stdout.write(f"wrote {args.out / 'compare.md'}, {path}\n")
    return 0
