"""Issue 8's one-off optimisation studies, before → after, behind ``--studies``.

Served optimisations (ingress, batch wait, streams, replicas) compare short W1 + W2 runs of
server variants started back to back (``VARIANTS``); offline ones (length-sorted micro-batches,
threads per replica) compare encoders of the served backend in interleaved rounds; backend and
precision are read off the offline table. They answered design questions once (docs/
benchmarks.md keeps the numbers); ``make bench`` leaves them out, ``python -m loadtest.bench
--studies`` runs them again (~5 min more on two cores).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..summary import Summary
from . import offline, served
from .collect import cosines
from .offline import BackendEncoder, Measurement
from .results import Accuracy, Metric, Optimisation, Row, ServedVariant, Shape, Studies

log = logging.getLogger(__name__)

# The served variants, run back to back in this order (the defaults in the middle, next to
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
_W2 = served.CLOSED_LOOPS["w2"]


W1_P50 = "W1 p50 ms (1 sentence, sequential)"
W2_RATE = f"W2 inputs/s ({_W2.inputs} sentences per request, {_W2.clients} clients, closed loop)"
# The report's order: (a) to (e) of issue 8.
ORDER = ("ingress", "batch_wait", "streams", "replicas", "micro_batches", "backend", "threads")
# The backend-and-precision path, each step one change: library, runtime, precision.
BACKEND_CHAIN = (
    "sentence-transformers fp32",
    "embedserve onnxruntime fp32 (offline)",
    "embedserve openvino fp32 (offline)",
    "embedserve openvino bf16 (offline)",
)


def in_order(items: list[Optimisation]) -> list[Optimisation]:
    return sorted(items, key=lambda o: ORDER.index(o.key) if o.key in ORDER else len(ORDER))


def variant_setup(v: ServedVariant) -> str:
    flags = " ".join(v.flags)
    wait = "?" if v.batch_wait_timeout_s is None else f"{v.batch_wait_timeout_s:g} s"
    return (
        f"{f'`{flags}`' if flags else 'the defaults'} "
        f"(/info: ingress {v.ingress or '?'}, batch wait {wait}, streams {v.streams or '?'})"
    )


def served_method(variants: list[ServedVariant]) -> str:
    """How the served pairs were measured: the same for every served optimisation."""
    if not variants:
        return ""
    v = variants[0]
    errors = sum(x.errors for x in variants)
    return (
        "Each variant in a fresh `python -m service` (same `--num-cpus`), warmed up alike with "
        "one pass of every sentence in 32-sentence requests (their vectors give the min cosine), "
        f"then W1 for {v.seconds.get('w1', 0):.0f} s and W2 for {v.seconds.get('w2', 0):.0f} s; "
        "the variants ran back to back, in this order: "
        + "; ".join(variant_setup(x) for x in variants)
        + f". Errors over all these runs: {errors}."
    )


def served_pair(
    key: str,
    title: str,
    stages: tuple[str, str],
    before: ServedVariant,
    after: ServedVariant,
    method: str,
) -> Optimisation:
    """W1 p50 and W2 inputs/s of two server variants measured back to back."""
    return Optimisation(
        key=key,
        title=title,
        stages=list(stages),
        metrics=[
            Metric(name=W1_P50, values=[before.w1_p50_ms, after.w1_p50_ms]),
            Metric(name="W1 p99 ms", values=[before.w1_p99_ms, after.w1_p99_ms]),
            Metric(name=W2_RATE, values=[before.w2_inputs_per_s, after.w2_inputs_per_s]),
            Metric(
                name="min cosine",
                values=[before.min_cosine, after.min_cosine],
                format="cosine",
                ratio=False,
            ),
        ],
        method=method,
    )


def served_optimisations(variants: list[ServedVariant]) -> list[Optimisation]:
    """Ingress, batch wait, streams and replicas: each server variant against the defaults."""
    by_key = {v.key: v for v in variants}
    after = by_key.get("default")
    if after is None:
        return []
    out: list[Optimisation] = []

    def method() -> str:  # in full once, then a pointer to it
        if not out:
            return served_method(variants)
        return f"The same servers and runs as in the {out[0].title.split(':')[0]} comparison above."

    def add(variant: str, key: str, title: str, stages: tuple[str, str]) -> None:
        if variant in by_key:
            out.append(served_pair(key, title, stages, by_key[variant], after, method()))

    add(
        "proxy",
        "ingress",
        "HTTP ingress: Ray's Python proxy → HAProxy",
        ("`--ingress proxy` (Ray's ProxyActor)", "HAProxy (default)"),
    )
    wait = by_key["wait"].batch_wait_timeout_s if "wait" in by_key else None
    default = after.batch_wait_timeout_s
    add(
        "wait",
        "batch_wait",
        "Batch wait: a fixed wait to fill → none (a freed worker takes what queued)",
        (f"`--batch-wait-timeout-s {wait:g}`", f"{default:g} s (default)")
        if wait is not None and default is not None
        else ("fixed wait", "no wait (default)"),
    )
    add(
        "streams",
        "streams",
        "Inference streams: one of all the threads → two of half each",
        ("`--streams 1`", f"{after.streams or '?'} streams (default)"),
    )
    add(
        "replicas",
        "replicas",
        "Replicas vs streams on the same cores: two replicas of 1 CPU → one of two streams",
        ("`--num-replicas 2 --num-cpus 1`", "one replica, all cores (default)"),
    )
    return out


def offline_pair(
    key: str,
    title: str,
    stages: tuple[str, str],
    before: Measurement,
    after: Measurement,
    reference: np.ndarray,
    method: str,
    extra: tuple[Metric, ...] = (),
) -> Optimisation:
    """Two encoders on the same batches in interleaved rounds: best and median round, accuracy
    (each encoder's first-round vectors against the reference), and any ``extra`` metrics."""

    def min_cos(m: Measurement) -> float | None:
        return None if m.vectors is None else float(cosines(m.vectors, reference).min())

    return Optimisation(
        key=key,
        title=title,
        stages=list(stages),
        metrics=[
            Metric(name="inputs/s (best round)", values=[before.inputs_per_s, after.inputs_per_s]),
            Metric(
                name="inputs/s (median round)",
                values=[before.median_inputs_per_s, after.median_inputs_per_s],
            ),
            *extra,
            Metric(
                name="min cosine",
                values=[min_cos(before), min_cos(after)],
                format="cosine",
                ratio=False,
            ),
        ],
        method=f"{method} {_rounds(len(after.round_s))} over the same batches.",
    )


def _rounds(n: int) -> str:
    return "1 round" if n == 1 else f"{n} interleaved rounds"


def padding_metric(before: float, after: float) -> Metric:
    return Metric(name="padding share of computed tokens", values=[before, after], format="percent")


def backend_chain(
    rows: list[Row], shapes: list[Shape], acc: dict[str, Accuracy]
) -> Optimisation | None:
    """(d) From the offline table: each step of ``BACKEND_CHAIN`` that was measured."""
    offline = {(r.system, r.shape): r for r in rows if r.section == "offline"}
    systems = [s for s in BACKEND_CHAIN if any((s, x.key) in offline for x in shapes)]
    if len(systems) < 2:
        return None
    metrics = [
        Metric(
            name=f"{shape.label}: inputs/s",
            values=[
                offline[(s, shape.key)].inputs_per_s if (s, shape.key) in offline else None
                for s in systems
            ],
        )
        for shape in shapes
    ]
    metrics.append(
        Metric(
            name="min cosine",
            values=[acc[s].min_cosine if s in acc else None for s in systems],
            format="cosine",
            ratio=False,
        )
    )
    return Optimisation(
        key="backend",
        title="Backend and precision: sentence-transformers → ONNX Runtime → OpenVINO → bf16",
        stages=[s.removeprefix("embedserve ").removesuffix(" (offline)") for s in systems],
        metrics=metrics,
        method="From the offline rows of the results table above (best interleaved round, same "
        "threads, same batches); each step changes one thing, and its ratio to the step before "
        "is in parentheses; the last column is the whole path, last ÷ first.",
    )


class ArrivalOrderEncoder(BackendEncoder):
    """The naive path the replica's micro-batching replaced: each batch padded as it came, in
    one backend call."""

    def calls(self, lengths: Sequence[int]) -> list[list[int]]:
        return [list(range(len(lengths)))]


def padding_share(encoder: BackendEncoder, batches: list[list[str]]) -> float:
    """Share of the tokens the backend computes (each call: inputs × longest) that are padding,
    over all ``batches``, as ``encoder`` would cut them into calls."""
    real = computed = 0
    for batch in batches:
        lengths = [len(ids) for ids in encoder.tokenizer.tokenize(batch)]
        for members in encoder.calls(lengths):
            computed += len(members) * max(lengths[i] for i in members)
            real += sum(lengths[i] for i in members)
    return 1 - real / computed if computed else 0.0


def served_variant(
    key: str, flags: list[str], w1: Summary, w2: Summary, min_cosine: float | None
) -> ServedVariant:
    """A server variant's short W1 and W2, with its configuration as its /info reported it."""
    info = w2.server_info or {}
    batching = info.get("batching") or {}
    return ServedVariant(
        key=key,
        flags=flags,
        ingress=info.get("ingress"),
        batch_wait_timeout_s=batching.get("batch_wait_timeout_s"),
        streams=(info.get("backend") or {}).get("streams"),
        w1_p50_ms=w1.latency_ms.p50,
        w1_p99_ms=w1.latency_ms.p99,
        w2_inputs_per_s=w2.inputs_per_s,
        w2_p50_ms=w2.latency_ms.p50,
        errors=w1.errors + w2.errors,
        seconds={"w1": w1.duration_s, "w2": w2.duration_s},
        min_cosine=min_cosine,
    )


def served_variants(
    artifact: Path, threads: int, scale: float, sentences: list[list[str]],
    reference: np.ndarray, singles: Path, work: Path,
) -> list[ServedVariant]:  # fmt: skip
    """Each of ``VARIANTS`` in a fresh server, warmed up with one pass of every sentence (in
    W2's requests, whose vectors give its min cosine), then short W1 and W2."""
    out = []
    for key, flags in VARIANTS:
        log.info("served variant %s: %s", key, " ".join(flags) or "defaults")
        with served.embedserve(artifact, threads, work / f"server-{key}.log", flags) as server:
            vectors = served.served_vectors(server.url, sentences)
            configs = served.workloads(
                server.url, None, singles, scale, VARIANT_SECONDS, VARIANT_WARMUP_S
            )
            runs, _ = served.run_all(configs)
        cos = float(cosines(vectors, reference).min())
        v = served_variant(key, list(flags), runs["w1"].summary, runs["w2"].summary, cos)
        log.info("%s: W1 p50 %.1f ms, W2 %.1f inputs/s", key, v.w1_p50_ms or 0, v.w2_inputs_per_s)
        out.append(v)
    return out


def offline_optimisations(
    artifact: Path, threads: int, rounds: int, same: BackendEncoder,
    batches: list[list[str]], reference: np.ndarray,
) -> list[Optimisation]:  # fmt: skip
    """(c) length-sorted micro-batches and (e) threads per replica, on the served backend and
    W2's batches, in interleaved rounds."""
    arrival = ArrivalOrderEncoder(
        same.backend, same.tokenizer, same.pad_id, same.overhead_tokens,
        ", one call in arrival order",
    )  # fmt: skip
    encoders: list[offline.Encoder] = [same, arrival]
    one_thread = None
    if threads > 1:
        built, _ = offline.backend_encoders(
            artifact, 1, [(same.backend.name, same.backend.precision)], ", 1 thread"
        )
        one_thread = built[0] if built else None
        encoders += [one_thread] if one_thread else []
    log.info("offline optimisations on %s: %d rounds", same.name, rounds)
    measured = offline.measure(encoders, {"short32": batches}, rounds)
    backend = f"{same.backend.name} {same.backend.precision}"
    request = f"{_W2.inputs}-sentence batches ({len(batches)})"
    padding = padding_metric(padding_share(arrival, batches), padding_share(same, batches))
    out = [
        offline_pair(
            "micro_batches",
            "Length-sorted micro-batches",
            ("each batch padded as it came, one call", "sorted + `plan_micro_batches`"),
            measured[(arrival.name, "short32")],
            measured[(same.name, "short32")],
            reference,
            f"Offline, the served backend ({backend}, {threads} threads) on the {request}: "
            "each batch padded to its longest sentence in arrival order and run in one backend "
            "call, against the replica's path (sort by length, cut with `plan_micro_batches`, "
            "one call per micro-batch). Padding share: 1 − real tokens ÷ Σ per call (inputs × "
            "longest), from the artifact's tokenizer.",
            (padding,),
        )
    ]
    if one_thread is not None:
        out.append(
            offline_pair(
                "threads",
                "Threads per replica: 1 → all cores",
                ("1 intra-op thread (`make serve` before)", f"{threads} (all cores)"),
                measured[(one_thread.name, "short32")],
                measured[(same.name, "short32")],
                reference,
                f"Offline, the served backend ({backend}) built by `create_backend` with a CPU "
                f"budget of 1 and of {threads}, on the {request}, the replica's path.",
            )
        )
    return out


def run_studies(
    artifact: Path, threads: int, rounds: int, scale: float, same: BackendEncoder | None,
    sentences: list[list[str]], reference: np.ndarray, singles: Path, work: Path,
    table: tuple[list[Row], list[Shape], dict[str, Accuracy]],
) -> Studies:  # fmt: skip
    """Every study: the server variants back to back, then the served backend offline
    (``same``, when it was measured), then the backend chain off the results ``table``."""
    start = time.perf_counter()
    variants = served_variants(artifact, threads, scale, sentences, reference, singles, work)
    offline_opts = (
        offline_optimisations(artifact, threads, rounds, same, sentences, reference)
        if same is not None
        else []
    )
    chain = backend_chain(*table)
    found = [*served_optimisations(variants), *offline_opts, *([chain] if chain else [])]
    seconds = time.perf_counter() - start
    log.info("studies took %.0f s", seconds)
    return Studies(served_variants=variants, optimisations=in_order(found), seconds=seconds)
