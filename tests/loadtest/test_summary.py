"""summary.json: what it contains, that it round-trips, and the server-side latency split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.config import LoadConfig
from loadtest.runner import Phase, Sample
from loadtest.server import parse_metrics, split
from loadtest.summary import Summary, now, summarize


def synthetic_phase() -> Phase:
    """100 OK requests of 2 inputs with latencies 1..100 ms, a 503, a timeout and a drop."""
    samples = [
        Sample(i, i * 0.1, i * 0.1, i * 0.1 + (i + 1) / 1000, 200, "ok", 2, 10) for i in range(100)
    ]
    samples += [
        Sample(100, 5.0, 5.0, 5.2, 503, "http_error", 2, None, "busy"),
        Sample(101, 6.0, 6.0, 9.0, 0, "timeout", 2, None, "no answer"),
        Sample(102, 7.0, 7.0, 7.0, 0, "dropped", 0, None, "cap"),
    ]
    return Phase(samples, 10.0, 10.3, max_in_flight=4, client_cpu_s=0.5, interrupted=False)


def test_summary_numbers() -> None:
    config = LoadConfig(url="http://127.0.0.1:9", mode="open", rate=10.3, duration_s=10)
    s = summarize(synthetic_phase(), config.public(), now(), {"model_id": "m"})
    assert (s.requests, s.ok, s.errors) == (103, 100, 3)
    assert s.status_counts == {"200": 100, "503": 1, "timeout": 1, "dropped": 1}
    assert s.throughput_rps == pytest.approx(10.0)
    assert s.inputs_per_s == pytest.approx(20.0)
    assert s.tokens_per_s == pytest.approx(100.0)
    assert s.latency_ms.p50 == pytest.approx(50.5)
    assert s.latency_ms.p99 == pytest.approx(99.01)
    assert s.latency_ms.max == pytest.approx(100.0)
    assert s.offered_rps == 10.3
    assert s.client.cores >= 1 and s.client.cpu_ms_per_request == pytest.approx(500 / 102)
    assert any(e.startswith("503: busy") for e in s.error_examples)


def test_tokens_fall_back_to_estimates_or_none() -> None:
    phase = synthetic_phase()
    for sample in phase.samples:
        sample.tokens = None
    config = LoadConfig(url="http://127.0.0.1:9").public()
    assert summarize(phase, config, now()).tokens_per_s is None
    estimated = summarize(phase, config, now(), tokens_of={i: 5 for i in range(100)})
    assert estimated.tokens_per_s == pytest.approx(50.0)


def test_schema_round_trip(tmp_path: Path) -> None:
    config = LoadConfig(url="http://127.0.0.1:9", workload="batch", requests=3)
    path = summarize(synthetic_phase(), config.public(), now()).write(tmp_path)
    data = json.loads(path.read_text())
    for key in (
        "throughput_rps",
        "inputs_per_s",
        "tokens_per_s",
        "latency_ms",
        "status_counts",
        "errors",
        "config",
        "server_info",
        "client",
        "latency_cdf_ms",
    ):
        assert key in data
    assert set(data["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max", "mean"}
    assert data["config"]["workload"] == "batch" and data["config"]["requests"] == 3
    assert data["client"]["cores"] >= 1
    again = Summary.model_validate_json(path.read_text())
    assert again == Summary.model_validate(data)


METRICS = """# TYPE embedserve_queue_duration_seconds histogram
embedserve_queue_duration_seconds_sum {q}
embedserve_queue_duration_seconds_count {n}
# TYPE embedserve_tokenize_duration_seconds histogram
embedserve_tokenize_duration_seconds_sum {t}
embedserve_tokenize_duration_seconds_count {n}
# TYPE embedserve_inference_duration_seconds histogram
embedserve_inference_duration_seconds_sum {i}
embedserve_inference_duration_seconds_count {n}
# TYPE embedserve_request_duration_seconds histogram
embedserve_request_duration_seconds_sum{{route="/embed",status="200"}} {r}
embedserve_request_duration_seconds_count{{route="/embed",status="200"}} {n}
embedserve_request_duration_seconds_sum{{route="/info",status="200"}} 1.0
embedserve_request_duration_seconds_count{{route="/info",status="200"}} 1
# TYPE embedserve_requests_total counter
embedserve_requests_total{{route="/embed",status="200"}} {n}
# TYPE embedserve_input_tokens_total counter
embedserve_input_tokens_total {tok}
"""


def test_server_split_is_the_difference_of_two_scrapes() -> None:
    before = parse_metrics(METRICS.format(q=1.0, t=0.5, i=2.0, r=4.0, n=10, tok=100))
    after = parse_metrics(METRICS.format(q=1.2, t=0.52, i=2.5, r=4.8, n=20, tok=300))
    assert before is not None and after is not None
    s = split(before, after, "/embed")
    assert s.requests == {"/embed 200": 10}
    assert s.queue_ms == pytest.approx(20.0)
    assert s.tokenize_ms == pytest.approx(2.0)
    assert s.inference_ms == pytest.approx(50.0)
    assert s.request_ms == pytest.approx(80.0)
    assert s.other_ms == pytest.approx(8.0)
    assert s.input_tokens == 200


def test_servers_without_embedserve_metrics_get_no_split() -> None:
    assert parse_metrics("# TYPE http_requests counter\nhttp_requests_total 3\n") is None
