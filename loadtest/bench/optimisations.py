"""Issue 8: one before → after comparison per optimisation, built from measurements of this run.

Served optimisations (ingress, batch wait, streams, replicas) compare short W1 + W2
runs of server variants started back to back (``ServedVariant``); offline ones (length-sorted
micro-batches, threads per replica) compare encoders of the served backend in interleaved rounds;
backend and precision are read off the offline table. Nothing here measures: it arranges numbers.
"""

from __future__ import annotations

import numpy as np

from .collect import cosines
from .offline import Measurement
from .results import Accuracy, Metric, Optimisation, Row, ServedVariant, Shape

W1_P50 = "W1 p50 ms (1 sentence, sequential)"
W2_RATE = "W2 inputs/s (32 sentences per request, 4 clients, closed loop)"
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
