"""``python -m loadtest.bench``: run every measurement, then write docs/benchmarks.md.

Phases: the fp32 PyTorch reference vectors; offline rounds (sentence-transformers and every
embedserve CPU backend); the load generator against a stub; embedserve served (W1-W4, then W2
paired with its own backend offline, then quality of service under load, ``qos``); the models
beside MiniLM (``extra_models``: all-mpnet-base-v2); a reranker beside MiniLM and several models
in one service (``rerank``); the calibrated int8 path, the repeated-input cache, long inputs,
compact vectors, the bulk client, the W3 profile and the footprint (``sections``); with
``--studies`` only, issue 8's one-off optimisation studies (``studies``); finally results.json,
the plots and the Markdown. ``--only KEY`` (mpnet, rerank, int8, cache, long, compact, bulk,
profile, footprint) runs that section alone and merges it into the last results.
"""

from __future__ import annotations

import argparse
import logging
import os
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

from common import texts as corpus  # noqa: E402
from export.artifact import CALIBRATION_FILE  # noqa: E402

from .. import plots as lt_plots  # noqa: E402
from ..config import LoadConfig  # noqa: E402
from ..driver import RunResult, run  # noqa: E402
from ..stats import median_ratio  # noqa: E402
from ..summary import now  # noqa: E402
from ..workload import chunks  # noqa: E402
from . import (  # noqa: E402
    extra_models,
    figures,
    flops,
    offline,
    qos,
    report,
    report_extra,
    report_rerank,
    rerank,
    sections,
    served,
    studies,
)
from .collect import (  # noqa: E402
    accuracy,
    client_rows,
    long_flops,
    offline_rows,
    served_rows,
    served_system,
)
from .cpu import CpuBreakdown  # noqa: E402
from .machine import machine  # noqa: E402
from .results import (  # noqa: E402
    Accuracy,
    BenchResults,
    BenchSettings,
    ExtraModelResult,
    LongPassageFlops,
    PeakResult,
    QosResults,
    Row,
    ServedVsOffline,
    Shape,
)

log = logging.getLogger("loadtest.bench")
DEFAULT_ARTIFACT = Path("artifacts/all-MiniLM-L6-v2")
DEFAULT_NEEDS = (CALIBRATION_FILE,)  # the compact section serves int8 (export.calibrate)
SLO_P99_MS = 100.0
PAIRS = 4
QUICK_SCALE = 0.25  # --quick: every run this fraction of its length


def time_scale(args: argparse.Namespace) -> float:
    return QUICK_SCALE if args.quick else 1.0


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
    p.add_argument(
        "--studies",
        action="store_true",
        help="also run issue 8's one-off optimisation studies (server variants back to back, "
        "micro-batching and threads offline, the backend chain): ~5 min more on two cores",
    )
    p.add_argument(
        "--only",
        choices=sorted([*extra_models.EXTRA_MODELS, rerank.KEY, *sections.SECTIONS]),
        help="run only this section (a model beside MiniLM, the reranker and several models, or "
        "one of loadtest.bench.sections; 3-8 min each); it replaces that section in the "
        "results.json beside --doc and re-renders --doc from them, or prints the section alone "
        "when there are no results yet",
    )
    return p.parse_args(argv)


@dataclass
class Texts:
    batches: dict[str, list[list[str]]]
    shapes: list[Shape]
    singles_file: Path
    reference: np.ndarray  # fp32 PyTorch: every sentence, then every passage
    passage_tokens: list[int]  # real tokens of each passage the batches hold, as served

    @property
    def sentence_reference(self) -> np.ndarray:
        """The reference vectors of the sentences alone, in corpus order."""
        return self.reference[: next(s.texts for s in self.shapes if s.key == "short32")]


def texts(quick: bool, artifact: Path) -> Texts:
    """The corpus cut as W1-W3 send it (``served.CLOSED_LOOPS``), and its reference vectors."""
    from models import load_pretrained

    sentences, passages = corpus.sentences(), corpus.passages()
    singles_file = served.singles_file(work_dir(), 64 if quick else None)
    singles = singles_file.read_text(encoding="utf-8").splitlines()
    short, long = served.CLOSED_LOOPS["w2"].inputs, served.CLOSED_LOOPS["w3"].inputs
    batches = {
        "single": chunks(singles, 1, len(singles)),
        "short32": chunks(sentences, short, -(-len(sentences) // short)),
        "long8": chunks(passages, long, len(passages) // long),
    }
    tokens = flops.token_lengths(artifact, [p for batch in batches["long8"] for p in batch])
    shapes = [
        Shape(key="single", label="1 sentence", inputs_per_request=1, texts=len(singles)),
        Shape(key="short32", label=f"{short} sentences", inputs_per_request=short,
              texts=len(sentences)),
        Shape(key="long8", label=f"{long} passages (~{np.mean(tokens):.0f} tokens)",
              inputs_per_request=long, texts=len(passages)),
    ]  # fmt: skip
    log.info("reference: fp32 PyTorch over %d texts", len(sentences) + len(passages))
    reference = load_pretrained("all-MiniLM-L6-v2").encode(sentences + passages, batch_size=32)
    return Texts(batches, shapes, singles_file, reference, tokens)


@dataclass
class Served:
    configs: dict[str, LoadConfig]  # W1-W3
    runs: dict[str, RunResult]
    vectors: np.ndarray
    vs_offline: ServedVsOffline | None
    cpu: CpuBreakdown | None
    qos: QosResults | None


def served_backend(
    encoders: list[offline.Encoder], info: dict | None
) -> offline.BackendEncoder | None:
    """The offline encoder of the backend the server chose (its /info), if it was measured."""
    chosen = (info or {}).get("backend") or {}
    return next(
        (
            e
            for e in encoders
            if isinstance(e, offline.BackendEncoder)
            and (e.backend.name, e.backend.precision)
            == (chosen.get("name"), chosen.get("precision"))
        ),
        None,
    )


def serve_and_load(
    args: argparse.Namespace, t: Texts, encoders: list[offline.Encoder], assets: Path
) -> Served:
    scale = time_scale(args)
    with served.embedserve(args.artifact, args.threads, work_dir() / "server.log") as server:
        url = server.url
        vectors = served.served_vectors(url, t.batches["short32"] + t.batches["long8"])
        configs = served.workloads(url, assets, t.singles_file, scale)
        runs, cpu = served.run_all(configs, watch=("w2", server.pid))
        start_rps = max(1.0, round(runs["w1"].summary.throughput_rps / 2))
        sweep = served.sweep_config(url, assets, t.singles_file, start_rps, SLO_P99_MS, scale)
        runs["w4"] = run(sweep)
        vs_offline = paired_vs_offline(args, t, encoders, url, runs, scale)
        # Quality of service last, in this same server: the overload is sized by this server's
        # own W2, a fresh server would add a minute of start-up to make bench, and nothing else
        # is measured here after the flood, so whatever it leaves behind can disturb nothing.
        log.info("quality of service: bulk, a %d MiB input, overload", qos.HUGE_BYTES >> 20)
        capacity = runs["w2"].summary.throughput_rps
        qos_results = qos.run_qos(url, server.pid, capacity, assets, scale)
    return Served(configs, runs, vectors, vs_offline, cpu, qos_results)


def paired_vs_offline(
    args: argparse.Namespace,
    t: Texts,
    encoders: list[offline.Encoder],
    url: str,
    runs: dict[str, RunResult],
    scale: float,
) -> ServedVsOffline | None:
    """Issue 5's ratio: W2 against the backend the server itself chose, in back-to-back pairs."""
    same = served_backend(encoders, runs["w1"].summary.server_info)
    if same is None:
        log.warning("the served backend was not measured offline: no ratio")
        return None
    log.info("W2 against %s offline, in back-to-back pairs", same.name)
    seconds = 10 * scale
    streams = offline.stream_encoders(same, args.artifact, args.threads)
    batches = t.batches["short32"]

    def best_offline() -> float:  # the stricter reference: the faster way to run it
        return max(offline.one_pass(same, batches), offline.streams_pass(streams, batches))

    w2 = served.CLOSED_LOOPS["w2"]
    pairs = served.paired_closed_loop(url, w2, best_offline, PAIRS, seconds)
    return ServedVsOffline(
        backend=same.name,
        served_inputs_per_s=float(np.median([s for _, s in pairs])),
        offline_inputs_per_s=float(np.median([o for o, _ in pairs])),
        ratio=median_ratio(pairs),
        pairs=pairs,
        seconds_per_served_run=seconds,
        offline_streams=len(streams),
        inputs_per_request=w2.inputs,
        clients=w2.clients,
    )


def long_passage_flops(
    artifact: Path, t: Texts, rows: list[Row], peak: PeakResult
) -> LongPassageFlops:
    """Issue 8: useful FLOP/s of the passage rows, from the real tokens of the same passages."""
    lengths = t.passage_tokens
    config = flops.artifact_encoder_config(artifact)
    encoder = {k: getattr(config, k) for k in ("n_layers", "d_model", "n_heads", "d_ff")}
    mean = flops.mean_flops(config, lengths)
    result = long_flops(rows, "long8", lengths, mean, peak, encoder)
    for rate in result.rates:
        log.info("%s: %.1f GFLOP/s, %.0f%% of peak", rate.system, rate.gflops,
                 100 * rate.fraction_of_peak)  # fmt: skip
    return result


def only_section(args: argparse.Namespace, assets: Path) -> int:
    """``--only KEY``: that section, merged into the last full run's results if any."""
    import torch

    served.ensure_artifact(args.artifact, "all-MiniLM-L6-v2", DEFAULT_NEEDS)
    torch.set_num_threads(args.threads)
    saved = assets / "results.json"
    if saved.is_file():
        results = BenchResults.model_validate_json(saved.read_text())
    else:
        results = None
        log.info("no %s: the section alone follows", saved)
    if args.only in sections.SECTIONS:
        found_section = sections.measure(
            args.only, args.artifact, args.threads, time_scale(args), work_dir()
        )
        lines = sections.render({args.only: found_section}, machine().cores)
        ok = True
        if results is not None:
            results.sections[args.only] = found_section
    elif args.only == rerank.KEY:
        found, skipped = rerank.measure_or_skip(
            args.artifact, args.threads, time_scale(args), work_dir()
        )
        lines = report_rerank.section(found, skipped, machine().cores)
        ok = found is not None
        if results is not None:
            results.rerank, results.rerank_skipped = found, skipped
    else:
        models, skipped_models = extra_models.measure_all(
            [args.only], args.artifact, args.threads, time_scale(args), work_dir()
        )
        lines = report_extra.section(models, skipped_models, machine().cores, None)
        ok = bool(models)
        if results is not None:
            merge_extra_models(results, models, skipped_models)
    if results is None:
        sys.stdout.write("\n".join(lines) + "\n")
        return 0 if ok else 1
    saved.write_text(results.model_dump_json(indent=2) + "\n")
    args.doc.write_text(report.render(results), encoding="utf-8")
    log.info("merged into %s and re-rendered %s", saved, args.doc)
    return 0 if ok else 1


def merge_extra_models(
    results: BenchResults, found: list[ExtraModelResult], skipped: dict[str, str]
) -> None:
    """``found`` and ``skipped`` in place of those models' earlier results."""
    names = {m.model for m in found} | set(skipped)
    results.extra_models = [m for m in results.extra_models if m.model not in names] + found
    results.extra_models_skipped = {
        **{k: v for k, v in results.extra_models_skipped.items() if k not in names},
        **skipped,
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.only:
        return only_section(args, args.doc.parent / args.doc.stem)
    started, t0 = now(), time.perf_counter()
    assets = args.doc.parent / args.doc.stem  # docs/benchmarks/
    served.ensure_artifact(args.artifact, "all-MiniLM-L6-v2", DEFAULT_NEEDS)
    host = machine()

    import torch

    from models import get_model_path

    torch.set_num_threads(args.threads)
    t = texts(args.quick, args.artifact)

    log.info("bf16 matmul peak at %d threads", args.threads)
    peak_before = flops.bf16_matmul_peak(args.threads)

    log.info("offline: %d interleaved rounds", args.rounds)
    backends, skipped = offline.backend_encoders(args.artifact, args.threads)
    encoders = [offline.SentenceTransformersEncoder(str(get_model_path())), *backends]
    measured = offline.measure(encoders, t.batches, args.rounds)
    log.info("bf16 matmul peak again, after the offline rounds")
    peak = flops.best_of([peak_before, flops.bf16_matmul_peak(args.threads)])
    log.info("bf16 peak: %.3f TFLOP/s (%s %s)", peak.tflops, peak.method, peak.shape)
    acc: dict[str, Accuracy] = {
        e.name: accuracy(
            measured[(e.name, "short32")].vectors, measured[(e.name, "long8")].vectors, t.reference
        )
        for e in encoders
    }

    log.info("client overhead against a stub server")
    overhead = client_rows(served.client_overhead(time_scale(args)))

    log.info("served: starting embedserve")
    s = serve_and_load(args, t, encoders, assets)
    system = served_system(s.runs["w1"].summary.server_info)
    n_short = sum(len(b) for b in t.batches["short32"])
    acc[system] = accuracy(s.vectors[:n_short], s.vectors[n_short:], t.reference)
    rows = offline_rows(measured, t.shapes, acc) + served_rows(s.runs, system, acc[system])
    baseline = {r.shape: r.inputs_per_s for r in rows if r.vs_baseline == 1.0}
    for row in rows:
        row.vs_baseline = row.inputs_per_s / baseline[row.shape] if row.shape in baseline else None
    passage_flops = long_passage_flops(args.artifact, t, rows, peak)
    log.info("models beside MiniLM: %s", ", ".join(extra_models.EXTRA_MODELS))
    extra, extra_skipped = extra_models.measure_all(
        list(extra_models.EXTRA_MODELS), args.artifact, args.threads, time_scale(args), work_dir()
    )

    log.info("a reranker beside MiniLM, and several models in one service")
    reranked, rerank_skipped = rerank.measure_or_skip(
        args.artifact, args.threads, time_scale(args), work_dir()
    )

    measured_sections = {}
    for key in sections.SECTIONS:
        log.info("section %s", key)
        measured_sections[key] = sections.measure(
            key, args.artifact, args.threads, time_scale(args), work_dir()
        )

    found = None
    if args.studies:
        log.info("studies (issue 8): server variants back to back, then offline")
        found = studies.run_studies(
            args.artifact, args.threads, 1 if args.quick else args.rounds, time_scale(args),
            served_backend(encoders, s.runs["w1"].summary.server_info),
            t.batches["short32"], t.sentence_reference, t.singles_file, work_dir(),
            (rows, t.shapes, acc),
        )  # fmt: skip
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
        + (" --quick" if args.quick else "")
        + (" --studies" if args.studies else ""),
        duration_s=time.perf_counter() - t0,
        machine=host,
        settings=BenchSettings(
            rounds=args.rounds,
            threads=args.threads,
            quick=args.quick,
            slo_p99_ms=SLO_P99_MS,
            single_stride=served.SINGLE_STRIDE,
            clients={name: loop.clients for name, loop in served.CLOSED_LOOPS.items()},
            durations={k: f"{r.summary.config['duration_s']:g} s" for k, r in s.runs.items()},
            reproduce_w2=served.command(s.configs["w2"]),
            skipped_backends=skipped,
        ),
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
        long_flops=passage_flops,
        studies=found,
        qos=s.qos,
        extra_models=extra,
        extra_models_skipped=extra_skipped,
        rerank=reranked,
        rerank_skipped=rerank_skipped,
        sections=measured_sections,
    )
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "results.json").write_text(results.model_dump_json(indent=2) + "\n")
    args.doc.write_text(report.render(results), encoding="utf-8")
    log.info("wrote %s and %s in %.1f min", args.doc, assets, results.duration_s / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
