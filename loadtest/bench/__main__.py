"""``python -m loadtest.bench``: run every measurement, then write docs/benchmarks.md.

Phases: the fp32 PyTorch reference vectors; offline rounds (sentence-transformers and every
embedserve CPU backend); the load generator against a stub; embedserve served (W1-W4, then W2
paired with its own backend offline); finally results.json, the plots and the Markdown.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# The reference library must never reach for a hub; tokenizers must not fight for the cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from .. import corpus  # noqa: E402
from .. import plots as lt_plots  # noqa: E402
from ..driver import RunResult, run  # noqa: E402
from ..summary import now  # noqa: E402
from ..workload import chunks  # noqa: E402
from . import figures, offline, report, served  # noqa: E402
from .collect import accuracy, client_rows, offline_rows, served_rows, served_system  # noqa: E402
from .cpu import CpuBreakdown  # noqa: E402
from .machine import machine  # noqa: E402
from .results import Accuracy, BenchResults, ServedVsOffline, Shape  # noqa: E402

log = logging.getLogger("loadtest.bench")
DEFAULT_ARTIFACT = Path("artifacts/all-MiniLM-L6-v2")
SLO_P99_MS = 100.0
SINGLE_STRIDE = 6  # single-sentence rows cost one call per text: every sixth sentence
PAIRS = 4


@cache
def work_dir() -> Path:
    """Scratch space (the single-sentence texts file, the server's log): not part of the report."""
    return Path(tempfile.mkdtemp(prefix="embedserve-bench-"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    p.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    p.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--rounds", type=int, default=3, help="interleaved offline rounds")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="inference threads")
    p.add_argument("--quick", action="store_true", help="short runs: check the pipeline only")
    return p.parse_args(argv)


def ensure_artifact(artifact: Path) -> None:
    if (artifact / "manifest.json").is_file():
        return
    log.info("exporting all-MiniLM-L6-v2 to %s", artifact)
    cmd = [sys.executable, "-m", "export", "--model", "all-MiniLM-L6-v2", "--output", str(artifact)]
    subprocess.run(cmd, check=True)


@dataclass
class Texts:
    batches: dict[str, list[list[str]]]
    shapes: list[Shape]
    singles_file: Path
    reference: np.ndarray  # fp32 PyTorch: every sentence, then every passage


def texts(quick: bool) -> Texts:
    from models import load_pretrained

    sentences, passages = corpus.sentences(), corpus.passages()
    singles = sentences[::SINGLE_STRIDE][: 64 if quick else None]
    batches = {
        "single": chunks(singles, 1, len(singles)),
        "short32": chunks(sentences, 32, -(-len(sentences) // 32)),
        "long8": chunks(passages, 8, len(passages) // 8),
    }
    shapes = [
        Shape(key="single", label="1 sentence", inputs_per_request=1, texts=len(singles)),
        Shape(key="short32", label="32 sentences", inputs_per_request=32, texts=len(sentences)),
        Shape(key="long8", label="8 passages (~250 tokens)", inputs_per_request=8,
              texts=len(passages)),
    ]  # fmt: skip
    singles_file = work_dir() / "single_sentences.txt"
    singles_file.write_text("\n".join(singles) + "\n", encoding="utf-8")
    log.info("reference: fp32 PyTorch over %d texts", len(sentences) + len(passages))
    reference = load_pretrained("all-MiniLM-L6-v2").encode(sentences + passages, batch_size=32)
    return Texts(batches, shapes, singles_file, reference)


@dataclass
class Served:
    runs: dict[str, RunResult]
    vectors: np.ndarray
    vs_offline: ServedVsOffline | None
    cpu: CpuBreakdown | None


def serve_and_load(
    args: argparse.Namespace, t: Texts, encoders: list[offline.Encoder], assets: Path
) -> Served:
    scale = 0.25 if args.quick else 1.0
    with served.embedserve(args.artifact, args.threads, work_dir() / "server.log") as server:
        url = server.url
        vectors = served.served_vectors(url, t.batches["short32"] + t.batches["long8"])
        configs = served.workloads(url, assets, t.singles_file, scale)
        runs, cpu = served.run_all(configs, watch=("w2", server.pid))
        start_rps = max(1.0, round(runs["w1"].summary.throughput_rps / 2))
        sweep = served.sweep_config(url, assets, t.singles_file, start_rps, SLO_P99_MS, scale)
        runs["w4"] = run(sweep)
        # The ratio issue 5 asks for: against the backend the server itself chose.
        chosen = (runs["w1"].summary.server_info or {}).get("backend") or {}
        same = next(
            (
                e
                for e in encoders
                if isinstance(e, offline.BackendEncoder)
                and (e.backend.name, e.backend.precision)
                == (chosen.get("name"), chosen.get("precision"))
            ),
            None,
        )
        if same is None:
            log.warning("the served backend %s was not measured offline: no ratio", chosen)
            return Served(runs, vectors, None, cpu)
        log.info("W2 against %s offline, in back-to-back pairs", same.name)
        seconds = 10 * scale
        pairs = served.paired_w2(
            url, lambda: offline.one_pass(same, t.batches["short32"]), PAIRS, seconds
        )
    return Served(
        runs,
        vectors,
        cpu=cpu,
        vs_offline=ServedVsOffline(
            backend=same.name,
            served_inputs_per_s=float(np.median([s for _, s in pairs])),
            offline_inputs_per_s=float(np.median([o for o, _ in pairs])),
            ratio=float(np.median([s / o for o, s in pairs])),
            pairs=pairs,
            seconds_per_served_run=seconds,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    started, t0 = now(), time.perf_counter()
    assets = args.doc.parent / args.doc.stem  # docs/benchmarks/
    ensure_artifact(args.artifact)
    host = machine()

    import torch

    from models import get_model_path

    torch.set_num_threads(args.threads)
    t = texts(args.quick)

    log.info("offline: %d interleaved rounds", args.rounds)
    backends, skipped = offline.backend_encoders(args.artifact, args.threads)
    encoders = [offline.SentenceTransformersEncoder(str(get_model_path())), *backends]
    measured = offline.measure(encoders, t.batches, args.rounds)
    acc: dict[str, Accuracy] = {
        e.name: accuracy(
            measured[(e.name, "short32")].vectors, measured[(e.name, "long8")].vectors, t.reference
        )
        for e in encoders
    }

    log.info("client overhead against a stub server")
    overhead = client_rows(served.client_overhead(0.25 if args.quick else 1.0))

    log.info("served: starting embedserve")
    s = serve_and_load(args, t, encoders, assets)
    system = served_system(s.runs["w1"].summary.server_info)
    n_short = sum(len(b) for b in t.batches["short32"])
    acc[system] = accuracy(s.vectors[:n_short], s.vectors[n_short:], t.reference)
    rows = offline_rows(measured, t.shapes, acc) + served_rows(s.runs, system, acc[system])
    baseline = {r.shape: r.inputs_per_s for r in rows if r.vs_baseline == 1.0}
    for row in rows:
        row.vs_baseline = row.inputs_per_s / baseline[row.shape] if row.shape in baseline else None
    host.load_avg_end = os.getloadavg()

    labels = {shape.key: shape.label for shape in t.shapes}
    curves = {k.upper(): s.runs[k].summary.latency_cdf_ms for k in ("w1", "w2", "w3")}
    plots = [
        figures.throughput_plot(rows, labels, assets / "throughput.png"),
        lt_plots.cdf(curves, "served latency CDF", assets / "served_latency_cdf.png"),
        assets / "w2" / "latency_over_time.png",
        assets / "w4" / "sweep.png",
        assets / "w4" / "latency_over_time.png",
    ]
    results = BenchResults(
        generated_at=started.isoformat(timespec="seconds"),
        command="make bench    # = .venv/bin/python -m loadtest.bench"
        + (" --quick" if args.quick else ""),
        duration_s=time.perf_counter() - t0,
        machine=host,
        settings={
            "rounds": args.rounds,
            "threads": args.threads,
            "quick": args.quick,
            "slo_p99_ms": SLO_P99_MS,
            "skipped_backends": skipped,
            "durations": {k: f"{r.summary.config['duration_s']:g} s" for k, r in s.runs.items()},
        },
        shapes=t.shapes,
        rows=rows,
        accuracy=acc,
        served_vs_offline=s.vs_offline,
        server_split={k: r.summary.server for k, r in s.runs.items()},
        cpu_w2=s.cpu,
        server_info=s.runs["w2"].summary.server_info,
        sweep=s.runs["w4"].summary.sweep,
        client_overhead=overhead,
        plots=[str(p.relative_to(args.doc.parent)) for p in plots if p.is_file()],
    )
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "results.json").write_text(results.model_dump_json(indent=2) + "\n")
    args.doc.write_text(report.render(results), encoding="utf-8")
    log.info("wrote %s and %s in %.1f min", args.doc, assets, results.duration_s / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
