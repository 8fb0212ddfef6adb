"""``python -m loadtest``: load-test an embedding server; ``python -m loadtest compare``.

Kept to argument parsing: every flag maps onto :class:`LoadConfig`, which validates it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError

from .config import (
    DEFAULT_DURATION_S,
    DEFAULT_SWEEP_STEP_S,
    Api,
    BuiltinWorkload,
    EncodingFormat,
    LoadConfig,
    Mode,
)

if TYPE_CHECKING:
    from .summary import Summary

EPILOG = """examples:
  python -m loadtest --url http://127.0.0.1:8000 --mode closed --concurrency 4 --workload batch
  python -m loadtest --url http://127.0.0.1:8000 --mode open --rate 50 --duration 30 --out run1
  python -m loadtest --url http://127.0.0.1:8080 --api tei --sweep --slo-p99-ms 100 --out sweep
  python -m loadtest --url http://127.0.0.1:8000 --api rerank --workload pairs --concurrency 4
  python -m loadtest compare run1/summary.json run2/summary.json --out cmp
"""


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Load-test an OpenAI- or TEI-compatible embedding (or reranking) server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", required=True, help="base URL (route added per --api) or endpoint")
    p.add_argument(
        "--api",
        choices=get_args(Api),
        default="openai",
        help="openai: POST /v1/embeddings {input}; tei: POST /embed {inputs}; rerank: POST "
        "/rerank {query, texts} (with --workload pairs)",
    )
    p.add_argument("--model", help="OpenAI requests' model field; TEI's x-model header")
    p.add_argument("--encoding-format", choices=get_args(EncodingFormat), default="float")
    p.add_argument("--api-key", help="sent as Authorization: Bearer KEY")
    g = p.add_argument_group("load")
    g.add_argument("--mode", choices=get_args(Mode), help="default: open with --rate")
    g.add_argument("--rate", type=float, help="open loop: Poisson arrivals per second")
    g.add_argument("--concurrency", type=int, default=1, help="closed loop: clients")
    g.add_argument("--sweep", action="store_true", help="raise --rate until the SLO breaks")
    g.add_argument("--slo-p99-ms", type=float, default=100.0, help="sweep: latency objective")
    g.add_argument("--sweep-factor", type=float, default=1.5, help="sweep: rate × per step")
    g.add_argument("--sweep-max-steps", type=int, default=12)
    g.add_argument("--sweep-refine", type=int, default=2, help="sweep: bisections at the knee")
    g.add_argument("--max-in-flight", type=int, help="open loop: drop arrivals beyond this")
    w = p.add_argument_group("workload")
    w.add_argument(
        "--workload",
        choices=get_args(BuiltinWorkload),
        default="short",
        help="short: 1 sentence/request; batch: --batch-size sentences; long: ~250-token "
        "passages; mixed: 60%% short, 30%% batch, 10%% 4 passages; pairs: a sentence as the query "
        "and --batch-size documents (built-in English prose)",
    )
    w.add_argument("--batch-size", type=int, help="inputs per request (batch: 32, long: 1)")
    w.add_argument("--texts", type=Path, help="inputs from a .txt (lines) or .jsonl file")
    w.add_argument("--seed", type=int, default=0, help="arrival schedule and mixed draws")
    b = p.add_argument_group("bounds")
    b.add_argument(
        "--duration",
        type=float,
        help=f"seconds (default {DEFAULT_DURATION_S:g}; per sweep step {DEFAULT_SWEEP_STEP_S:g})",
    )
    b.add_argument("--requests", type=int, help="stop after this many requests")
    b.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured load first")
    b.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, help="folder for summary.json, requests.csv, plots")
    o.add_argument("--name", help="label for plot titles and compare tables")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    mode: Mode = args.mode or ("open" if args.rate is not None or args.sweep else "closed")
    return LoadConfig(
        url=args.url,
        api=args.api,
        model=args.model,
        encoding_format=args.encoding_format,
        api_key=args.api_key,
        mode=mode,
        rate=args.rate,
        concurrency=args.concurrency,
        sweep=args.sweep,
        slo_p99_ms=args.slo_p99_ms,
        sweep_factor=args.sweep_factor,
        sweep_max_steps=args.sweep_max_steps,
        sweep_refine=args.sweep_refine,
        max_in_flight=args.max_in_flight,
        workload="file" if args.texts is not None else args.workload,
        batch_size=args.batch_size,
        texts=args.texts,
        seed=args.seed,
        duration_s=args.duration,
        requests=args.requests,
        warmup_s=args.warmup,
        timeout_s=args.timeout,
        out=args.out,
        name=args.name,
        progress=not args.quiet,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _report(summary: Summary) -> str:
    lat = summary.latency_ms
    lines = [
        f"requests {summary.requests} (ok {summary.ok}, errors {summary.errors}) "
        f"in {summary.duration_s:.1f} s{'  [interrupted]' if summary.interrupted else ''}",
        f"throughput {summary.throughput_rps:.1f} req/s, {summary.inputs_per_s:.1f} inputs/s"
        + (f", {summary.tokens_per_s:.0f} tokens/s" if summary.tokens_per_s else ""),
        f"latency ms  p50 {_fmt(lat.p50)}  p90 {_fmt(lat.p90)}  p99 {_fmt(lat.p99)}  "
        f"p99.9 {_fmt(lat.p999)}  max {_fmt(lat.max)}",
        f"status {summary.status_counts}",
    ]
    if summary.server is not None:
        s = summary.server
        lines.append(
            f"server ms/request  queue {_fmt(s.queue_ms)}  tokenize {_fmt(s.tokenize_ms)}  "
            f"inference {_fmt(s.inference_ms)}  other {_fmt(s.other_ms)}"
        )
    if summary.sweep is not None:
        best = summary.sweep.max_rate_rps
        lines.append(
            f"sweep: highest rate within p99 ≤ {summary.sweep.slo_p99_ms:g} ms: "
            + (f"{best:g} req/s" if best is not None else "none")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["compare"]:
        from .compare import main as compare_main

        return compare_main(argv[1:])
    args = run_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValidationError as exc:
        run_parser().error("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))
    from .driver import run

    result = run(config)
    sys.stdout.write(_report(result.summary))
    if result.files:
        sys.stdout.write(f"wrote {', '.join(str(f) for f in result.files)}\n")
    return 130 if result.summary.interrupted else 0
