"""``python -m loadtest.bench``: run every measurement, then write docs/benchmarks.md.

Phases: the fp32 PyTorch reference vectors; offline rounds (sentence-transformers and every
embedserve CPU backend); the load generator against a stub; embedserve served (W1-W4, then W2
paired with its own backend offline, then quality of service under load, ``qos``); issue 8's
optimisations, before → after (server variants back to back, then the served backend offline);
finally results.json, the plots and the Markdown.
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

from common import texts as corpus  # noqa: E402

from .. import plots as lt_plots  # noqa: E402
from ..driver import RunResult, run  # noqa: E402
from ..summary import now  # noqa: E402
from ..workload import chunks  # noqa: E402
from . import figures, flops, offline, optimisations, qos, report, served  # noqa: E402
from .collect import (  # noqa: E402
    accuracy,
    client_rows,
    cosines,
    long_flops,
    offline_rows,
    served_rows,
    served_system,
    served_variant,
)
from .cpu import CpuBreakdown  # noqa: E402
from .machine import machine  # noqa: E402
from .results import (  # noqa: E402
    Accuracy,
    BenchResults,
    LongPassageFlops,
    Optimisation,
    PeakResult,
    QosResults,
    Row,
    ServedVariant,
    ServedVsOffline,
    Shape,
)

log = logging.getLogger("loadtest.bench")
DEFAULT_ARTIFACT = Path("artifacts/all-MiniLM-L6-v2")
SLO_P99_MS = 100.0
SINGLE_STRIDE = 6  # single-sentence rows cost one call per text: every sixth sentence
PAIRS = 4
# Issue 8's served variants, run back to back in this order (the defaults in the middle, next to
# both): short W1 and W2 each, seconds before --quick's scale.
VARIANTS = (
    ("proxy", ("--ingress", "proxy")),
    ("streams", ("--streams", "1")),
    ("default", ()),
    ("replicas", ("--num-replicas", "2", "--num-cpus", "1")),
    ("wait", ("--batch-wait-timeout-s", "0.002")),
)
VARIANT_SECONDS = {"w1": 8.0, "w2": 12.0}
VARIANT_WARMUP_S = 2.0


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

    @property
    def sentence_reference(self) -> np.ndarray:
        """The reference vectors of the sentences alone, in corpus order."""
        return self.reference[: len(self.reference) - sum(len(b) for b in self.batches["long8"])]


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
    scale = 0.25 if args.quick else 1.0
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
        log.info("quality of service: bulk, a 5 MB input, overload")
        capacity = runs["w2"].summary.throughput_rps
        qos_results = qos.run_qos(url, server.pid, capacity, assets, scale)
    return Served(runs, vectors, vs_offline, cpu, qos_results)


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

    pairs = served.paired_w2(url, best_offline, PAIRS, seconds)
    return ServedVsOffline(
        backend=same.name,
        served_inputs_per_s=float(np.median([s for _, s in pairs])),
        offline_inputs_per_s=float(np.median([o for o, _ in pairs])),
        ratio=float(np.median([s / o for o, s in pairs])),
        pairs=pairs,
        seconds_per_served_run=seconds,
        offline_streams=len(streams),
    )


def served_variants(args: argparse.Namespace, t: Texts) -> list[ServedVariant]:
    """Issue 8's served pairs: each of ``VARIANTS`` in a fresh server, warmed up with one pass of
    every sentence (whose vectors give its min cosine), then short W1 and W2."""
    scale = 0.25 if args.quick else 1.0
    out = []
    for key, flags in VARIANTS:
        log.info("served variant %s: %s", key, " ".join(flags) or "defaults")
        log_file = work_dir() / f"server-{key}.log"
        with served.embedserve(args.artifact, args.threads, log_file, flags) as server:
            vectors = served.served_vectors(server.url, t.batches["short32"])
            configs = served.workloads(
                server.url, None, t.singles_file, scale, VARIANT_SECONDS, VARIANT_WARMUP_S
            )
            runs, _ = served.run_all(configs)
        cos = float(cosines(vectors, t.sentence_reference).min())
        v = served_variant(key, list(flags), runs["w1"].summary, runs["w2"].summary, cos)
        log.info("%s: W1 p50 %.1f ms, W2 %.1f inputs/s", key, v.w1_p50_ms or 0, v.w2_inputs_per_s)
        out.append(v)
    return out


def offline_optimisations(
    args: argparse.Namespace, t: Texts, same: offline.BackendEncoder
) -> list[Optimisation]:
    """(c) length-sorted micro-batches and (e) threads per replica, on the served backend and the
    32-sentence batches, in interleaved rounds."""
    batches = t.batches["short32"]
    arrival = same.variant(", one call in arrival order", sort_by_length=False)
    encoders: list[offline.Encoder] = [same, arrival]
    one_thread = None
    if args.threads > 1:
        built, _ = offline.backend_encoders(
            args.artifact, 1, ((same.backend.name, same.backend.precision),), ", 1 thread"
        )
        one_thread = built[0] if built else None
        encoders += [one_thread] if one_thread else []
    rounds = 1 if args.quick else args.rounds
    log.info("offline optimisations on %s: %d rounds", same.name, rounds)
    measured = offline.measure(encoders, {"short32": batches}, rounds)
    sentences = t.sentence_reference
    backend = f"{same.backend.name} {same.backend.precision}"
    padding = optimisations.padding_metric(
        offline.padding_share(arrival, batches), offline.padding_share(same, batches)
    )
    out = [
        optimisations.offline_pair(
            "micro_batches",
            "Length-sorted micro-batches",
            ("each batch padded as it came, one call", "sorted + `plan_micro_batches`"),
            measured[(arrival.name, "short32")],
            measured[(same.name, "short32")],
            sentences,
            f"Offline, the served backend ({backend}, {args.threads} threads) on the "
            f"32-sentence batches ({len(batches)}): each batch padded to its longest sentence in "
            "arrival order and run in one backend call, against the replica's path (sort by "
            "length, cut with `plan_micro_batches`, one call per micro-batch). Padding share: "
            "1 − real tokens ÷ Σ per call (inputs × longest), from the artifact's tokenizer.",
            (padding,),
        )
    ]
    if one_thread is not None:
        out.append(
            optimisations.offline_pair(
                "threads",
                "Threads per replica: 1 → all cores",
                ("1 intra-op thread (`make serve` before)", f"{args.threads} (all cores)"),
                measured[(one_thread.name, "short32")],
                measured[(same.name, "short32")],
                sentences,
                f"Offline, the served backend ({backend}) built by `create_backend` with a CPU "
                f"budget of 1 and of {args.threads}, on the 32-sentence batches "
                f"({len(batches)}, the replica's path).",
            )
        )
    return out


def long_passage_flops(
    artifact: Path, t: Texts, rows: list[Row], peak: PeakResult
) -> LongPassageFlops:
    """Issue 8: useful FLOP/s of the 8-passage rows, from the real tokens of the same passages."""
    passages = [text for batch in t.batches["long8"] for text in batch]
    lengths = flops.token_lengths(artifact, passages)
    config = flops.artifact_encoder_config(artifact)
    encoder = {k: getattr(config, k) for k in ("n_layers", "d_model", "n_heads", "d_ff")}
    mean = flops.mean_flops(config, lengths)
    result = long_flops(rows, "long8", lengths, mean, peak, encoder)
    for rate in result.rates:
        log.info("%s: %.1f GFLOP/s, %.0f%% of peak", rate.system, rate.gflops,
                 100 * rate.fraction_of_peak)  # fmt: skip
    return result


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
    passage_flops = long_passage_flops(args.artifact, t, rows, peak)

    log.info("optimisations (issue 8): server variants back to back")
    t_opt = time.perf_counter()
    variants = served_variants(args, t)
    same = served_backend(encoders, s.runs["w1"].summary.server_info)
    offline_opts = offline_optimisations(args, t, same) if same is not None else []
    chain = optimisations.backend_chain(rows, t.shapes, acc)
    optimised = optimisations.in_order(
        [*optimisations.served_optimisations(variants), *offline_opts, *([chain] if chain else [])]
    )
    opt_s = time.perf_counter() - t_opt
    log.info("optimisations took %.0f s", opt_s)
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
            "optimisations_s": round(opt_s),
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
        long_flops=passage_flops,
        served_variants=variants,
        optimisations=optimised,
        qos=s.qos,
    )
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "results.json").write_text(results.model_dump_json(indent=2) + "\n")
    args.doc.write_text(report.render(results), encoding="utf-8")
    log.info("wrote %s and %s in %.1f min", args.doc, assets, results.duration_s / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
