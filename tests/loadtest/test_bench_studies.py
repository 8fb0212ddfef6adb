"""Issue 8's optimisation studies (``--studies``): the naive batching path and its padding
share, the server variants' numbers, the before → after tables and their report section."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.bench.offline import BackendEncoder, Measurement
from loadtest.bench.report import render
from loadtest.bench.results import (
    Accuracy,
    BenchResults,
    Metric,
    Optimisation,
    Row,
    ServedVariant,
    Shape,
    Studies,
)
from loadtest.bench.studies import (
    W1_P50,
    W2_RATE,
    ArrivalOrderEncoder,
    backend_chain,
    in_order,
    offline_pair,
    padding_share,
    served_optimisations,
    served_variant,
)
from loadtest.config import LoadConfig
from loadtest.summary import now, summarize

from .test_bench import TEXTS, SumBackend, WordTokenizer, _results
from .test_summary import synthetic_phase


def test_arrival_order_path_is_one_call_with_the_same_vectors() -> None:
    sorted_backend, naive_backend = SumBackend(), SumBackend()
    replica = BackendEncoder(sorted_backend, WordTokenizer(), pad_id=0, overhead_tokens=1)
    naive = ArrivalOrderEncoder(naive_backend, WordTokenizer(), 0, 1, ", arrival order")
    assert naive.name == "embedserve sum fp32 (offline, arrival order)"
    assert naive.calls([8, 3, 4, 3]) == [[0, 1, 2, 3]]
    assert replica.calls([8, 3, 4, 3]) == [[1, 3], [2], [0]]  # sorted, cut by length
    assert np.allclose(naive.encode(TEXTS), replica.encode(TEXTS))  # padding never leaks
    assert naive_backend.calls == [(4, 8)] and len(sorted_backend.calls) == 3


def test_padding_share_counts_each_call_padded_to_its_longest() -> None:
    encoder = BackendEncoder(SumBackend(), WordTokenizer(), pad_id=0, overhead_tokens=0)
    naive = ArrivalOrderEncoder(SumBackend(), WordTokenizer(), pad_id=0, overhead_tokens=0)
    # One call: 4 × 8 computed, 18 real.
    assert padding_share(naive, [TEXTS]) == pytest.approx(1 - 18 / 32)
    assert padding_share(encoder, [TEXTS]) == 0.0  # one call per distinct length
    # A large per-call overhead keeps everything in one (sorted) call: the same padding.
    merged = BackendEncoder(SumBackend(), WordTokenizer(), pad_id=0, overhead_tokens=1000)
    assert padding_share(merged, [TEXTS, TEXTS]) == pytest.approx(1 - 18 / 32)


def variant(key: str, w1: float, w2: float, flags: list[str], **info: object) -> ServedVariant:
    return ServedVariant(
        key=key,
        flags=flags,
        ingress=str(info.get("ingress", "haproxy")),
        batch_wait_timeout_s=float(info.get("wait", 0.0)),  # type: ignore[arg-type]
        w1_p50_ms=w1,
        w1_p99_ms=2 * w1,
        w2_inputs_per_s=w2,
        w2_p50_ms=300,
        errors=0,
        seconds={"w1": 10.0, "w2": 12.0},
        min_cosine=0.99994,
        streams=int(info.get("streams", 2)),  # type: ignore[call-overload]
    )


VARIANTS = [
    variant("proxy", 20, 300, ["--ingress", "proxy"], ingress="proxy"),
    variant("streams", 9, 350, ["--streams", "1"], streams=1),
    variant("default", 10, 400, []),
    variant("replicas", 11, 390, ["--num-replicas", "2", "--num-cpus", "1"], streams=1),
    variant("wait", 12.5, 380, ["--batch-wait-timeout-s", "0.002"], wait=0.002),
]


def test_served_variant_reads_the_summaries_and_info() -> None:
    config = LoadConfig(url="http://127.0.0.1:9", duration_s=10).public()
    info = {"ingress": "proxy", "batching": {"batch_wait_timeout_s": 0.002}}
    w1 = summarize(synthetic_phase(), config, now(), info)
    v = served_variant("proxy", ["--ingress", "proxy"], w1, w1, 0.9999)
    assert (v.ingress, v.batch_wait_timeout_s) == ("proxy", 0.002)
    assert v.w1_p50_ms == pytest.approx(50.5) and v.w2_inputs_per_s == pytest.approx(20.0)
    assert v.errors == 6 and v.min_cosine == 0.9999 and v.seconds["w1"] == 10.0


def test_served_optimisations_compare_each_variant_with_the_defaults() -> None:
    ingress, wait, streams, replicas = served_optimisations(VARIANTS)
    assert (ingress.key, wait.key, streams.key) == ("ingress", "batch_wait", "streams")
    assert replicas.key == "replicas" and replicas.stages[0] == "`--num-replicas 2 --num-cpus 1`"
    assert streams.stages == ["`--streams 1`", "2 streams (default)"]
    assert next(m for m in streams.metrics if m.name == W2_RATE).overall == pytest.approx(400 / 350)
    w1, w2 = (next(m for m in ingress.metrics if m.name == n) for n in (W1_P50, W2_RATE))
    assert w1.values == [20, 10] and w1.overall == pytest.approx(0.5)
    assert w2.overall == pytest.approx(400 / 300)
    assert next(m for m in wait.metrics if m.name == W1_P50).overall == pytest.approx(0.8)
    assert wait.stages == ["`--batch-wait-timeout-s 0.002`", "0 s (default)"]
    cosine = next(m for m in wait.metrics if m.format == "cosine")
    assert cosine.overall is None and cosine.step(1) is None
    # The method names every server in the order run, with what its /info said.
    assert (
        "`--ingress proxy` (/info: ingress proxy, batch wait 0 s, streams 2); `--streams 1`"
        in ingress.method
    )
    assert wait.method == "The same servers and runs as in the HTTP ingress comparison above."
    alone = served_optimisations(VARIANTS[2:])[0]  # no proxy variant: the method in full
    assert alone.key == "batch_wait" and alone.method.startswith("Each variant in a fresh")
    assert served_optimisations(VARIANTS[:1]) == []  # nothing to compare with


def measurement(name: str, round_s: list[float], vectors: np.ndarray) -> Measurement:
    return Measurement(name, "short32", 64, round_s, [1.0], vectors)


def test_offline_pair_reports_best_and_median_rounds_and_accuracy() -> None:
    reference = np.eye(3, dtype=np.float32)
    before = measurement("a", [2.0, 4.0, 3.0], np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1.0]]))
    wrapped = np.concatenate([np.eye(3), np.eye(3)[:1]])  # batches wrap around the corpus
    after = measurement("b", [1.0, 2.0, 1.5], wrapped)
    extra = Metric(name="padding", values=[0.4, 0.1], format="percent")
    o = offline_pair("micro_batches", "t", ("x", "y"), before, after, reference, "M.", (extra,))
    values = {m.name: m for m in o.metrics}
    assert values["inputs/s (best round)"].values == [32, 64]
    assert values["inputs/s (median round)"].overall == pytest.approx(2.0)
    assert values["padding"].overall == pytest.approx(0.25)
    assert values["min cosine"].values == pytest.approx([np.sqrt(0.5), 1.0])
    assert o.method == "M. 3 interleaved rounds over the same batches."
    one = offline_pair(
        "x", "t", ("x", "y"), before, measurement("c", [1.0], wrapped), reference, "M."
    )
    assert one.method == "M. 1 round over the same batches."


def row(system: str, shape: str, value: float) -> Row:
    return Row(
        key=f"offline.{system}.{shape}",
        section="offline",
        system=system,
        shape=shape,
        load="offline",
        inputs_per_s=value,
        requests_per_s=value,
        p50_ms=1,
        p99_ms=2,
    )


def test_backend_chain_steps_through_the_offline_rows() -> None:
    shapes = [
        Shape(key="single", label="1 sentence", inputs_per_request=1, texts=111),
        Shape(key="short32", label="32 sentences", inputs_per_request=32, texts=666),
    ]
    systems = {
        "sentence-transformers fp32": (100, 200),
        "embedserve torch fp32 (offline)": (1, 1),  # not on the chain
        "embedserve onnxruntime fp32 (offline)": (200, 300),
        "embedserve openvino bf16 (offline)": (300, 600),  # openvino fp32 not measured
    }
    rows = [
        row(system, shape, value)
        for system, values in systems.items()
        for shape, value in zip(("single", "short32"), values, strict=True)
    ]
    acc = {s: Accuracy(texts=1, min_cosine=0.9999, mean_cosine=1) for s in systems}
    chain = backend_chain(rows, shapes, acc)
    assert chain is not None
    assert chain.stages == ["sentence-transformers fp32", "onnxruntime fp32", "openvino bf16"]
    single = chain.metrics[0]
    assert single.name == "1 sentence: inputs/s" and single.values == [100, 200, 300]
    assert single.step(1) == pytest.approx(2.0) and single.step(2) == pytest.approx(1.5)
    assert single.overall == pytest.approx(3.0)
    assert chain.metrics[-1].format == "cosine"
    assert backend_chain(rows[:2], shapes, acc) is None  # one system: nothing to compare


def test_optimisations_are_ordered_as_issue_8_lists_them() -> None:
    items = [Optimisation(key=k, title=k, stages=["a", "b"], metrics=[], method="")
             for k in ("threads", "backend", "ingress", "other", "micro_batches")]  # fmt: skip
    assert [o.key for o in in_order(items)] == [
        "ingress", "micro_batches", "backend", "threads", "other"
    ]  # fmt: skip


def test_report_renders_each_optimisation_and_the_ingress() -> None:
    results = _results()
    results.server_info = {
        "model_id": "m",
        "backend": {"name": "openvino", "precision": "bf16", "intra_op_threads": 2},
        "batching": {"batch_wait_timeout_s": 0.0},
        "ingress": "haproxy",
    }
    chain = Optimisation(
        key="backend",
        title="Backend",
        stages=["st", "ort", "ov"],
        metrics=[Metric(name="1 sentence: inputs/s", values=[100, 250, 300])],
        method="From the table.",
    )
    optimisations = [*served_optimisations(VARIANTS), chain]
    results.studies = Studies(served_variants=VARIANTS, optimisations=optimisations, seconds=300)
    optimisations[0].metrics.append(Metric(name="padding", values=[0.35, 0.05], format="percent"))
    text = render(results)
    assert "HTTP ingress: HAProxy; batching: batch_wait_timeout_s 0.0" in text
    assert "## Optimisations: before → after (issue 8)" in text
    assert "### HTTP ingress: Ray's Python proxy → HAProxy" in text
    assert (
        "| | before: `--ingress proxy` (Ray's ProxyActor) | after: HAProxy (default) "
        "| after ÷ before |" in text
    )
    assert f"| {W1_P50} | 20.0 | 10.0 | 0.50× |" in text
    assert f"| {W2_RATE} | 300.0 | 400.0 | 1.33× |" in text
    assert "| min cosine | 0.999940 | 0.999940 | – |" in text
    assert "| padding | 35.0% | 5.0% | 0.14× |" in text
    assert "| | st | ort | ov | after ÷ before |" in text
    assert "| 1 sentence: inputs/s | 100.0 | 250.0 (2.50×) | 300.0 (1.20×) | 3.00× |" in text
    assert text.index("### HTTP ingress") < text.index("### Batch wait") < text.index("### Back")
    again = BenchResults.model_validate_json(results.model_dump_json())
    assert render(again) == text


def test_report_without_studies_says_how_to_run_them() -> None:
    text = render(_results())
    assert "Optimisations" not in text
    assert "`.venv/bin/python -m loadtest.bench --studies` runs them" in text
