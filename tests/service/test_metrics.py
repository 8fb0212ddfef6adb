"""Prometheus exposition with two replicas: every request counted exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

NAMES = {
    "embedserve_request_duration_seconds": "histogram",
    "embedserve_queue_duration_seconds": "histogram",
    "embedserve_tokenize_duration_seconds": "histogram",
    "embedserve_inference_duration_seconds": "histogram",
    "embedserve_batch_size": "histogram",
    "embedserve_batch_tokens": "histogram",
    "embedserve_padding_ratio": "histogram",
    "embedserve_request_inputs": "histogram",
    "embedserve_requests": "counter",
    "embedserve_input_tokens": "counter",
    "embedserve_dropped_inputs": "counter",
    "embedserve_queue_depth": "gauge",
}


@pytest.fixture(scope="module")
def client(deploy: Callable[..., str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deploy(num_replicas=2), timeout=60) as c:
        yield c


def families(client: httpx.Client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def requests_by(fams: dict) -> dict[tuple[str, str], float]:
    return {
        (s.labels["route"], s.labels["status"]): s.value
        for s in fams["embedserve_requests"].samples
        if s.name == "embedserve_requests_total"
    }


def test_counts_are_exact_across_two_replicas(client: httpx.Client) -> None:
    pids = set()
    for i in range(30):
        assert client.post("/v1/embeddings", json={"input": [f"request {i}", "x"]}).is_success
        pids.add(client.get("/info").json()["process"])
    for _ in range(7):
        assert client.post("/embed", json={"inputs": ""}).status_code == 400
    assert len(pids) == 2, "both replicas should have answered"
    for _ in range(4):  # whichever replica answers the scrape, the totals are the same
        counts = requests_by(families(client))
        assert counts[("/v1/embeddings", "200")] == 30
        assert counts[("/embed", "400")] == 7
        assert counts[("/info", "200")] == 30


def test_every_metric_is_exposed_with_its_type(client: httpx.Client) -> None:
    client.post("/v1/embeddings", json={"input": ["metrics", "exposition"]})
    fams = families(client)
    for name, kind in NAMES.items():
        assert name in fams, name
        assert fams[name].type == kind, name
    durations = fams["embedserve_request_duration_seconds"]
    assert any(s.labels.get("route") == "/v1/embeddings" for s in durations.samples)
    buckets = {s.labels["le"] for s in durations.samples if s.name.endswith("_bucket")}
    assert {"0.005", "0.1", "1.0", "+Inf"} <= buckets
    tokens = fams["embedserve_input_tokens"].samples[0].value
    assert tokens > 0
