"""Metrics created by ``init``, in this process or in a shared folder, and their exposition with
two replicas: every request counted exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from service import metrics

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
    "embedserve_cache_hits": "counter",
    "embedserve_cache_misses": "counter",
    "embedserve_cache_bytes": "gauge",
}


# A replica's start: a fresh process, no PROMETHEUS_MULTIPROC_DIR, metrics.init(folder), work.
REPLICA = """
import sys
from pathlib import Path
from service import metrics
recorded = metrics.init(Path(sys.argv[1]))
recorded.observe_request("/embed", "m", 200, 0.01)
recorded.stage("m", "embed").input_tokens.inc(int(sys.argv[2]))
recorded.drop_observer("m")("deadline", 1)
cache = recorded.cache("m")
cache.hits.inc(3)
cache.misses.inc(2)
cache.bytes.set(int(sys.argv[2]) * 1000)
"""


def test_init_twice_in_one_process_gives_two_separate_sets() -> None:
    first, second = metrics.init(None), metrics.init(None)  # no "Duplicated timeseries"
    first.observe_request("/embed", "m", 200, 0.01)
    first.observe_request("/health", "", 200, 0.01)
    assert {m._name for m in first.all()} == {m._name for m in second.all()} == set(NAMES)

    def answered(recorded: metrics.Metrics) -> dict[tuple[str, ...], float]:
        return {
            (s.labels["model"], s.labels["route"], s.labels["status"]): s.value
            for f in text_string_to_metric_families(recorded.exposition()[0].decode())
            for s in f.samples
            if s.name == "embedserve_requests_total"
        }

    assert answered(first) == {("m", "/embed", "200"): 1, ("", "/health", "200"): 1}
    assert answered(second) == {}


def replica(folder: Path, tokens: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    command = [sys.executable, "-c", REPLICA, str(folder), str(tokens)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def from_folder(folder: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    text = generate_latest(registry).decode()
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if (s.name.endswith("_total") and s.labels.get("reason", "deadline") == "deadline")
        or s.name == "embedserve_cache_bytes"
    }


def test_a_replica_writes_its_samples_to_the_folder_and_the_next_clears_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "not-yet-there"
    replica(folder, 7)
    assert list(folder.glob("counter_*.db")), "the replica made the folder and wrote to it"
    assert from_folder(folder) == {
        "embedserve_requests_total": 1,
        "embedserve_input_tokens_total": 7,
        "embedserve_dropped_inputs_total": 1,
        "embedserve_cache_hits_total": 3,
        "embedserve_cache_misses_total": 2,
        "embedserve_cache_bytes": 7000,  # a live-summed gauge: its file is the process's own
    }
    replica(folder, 5)  # a new replica drops what a process that is gone left behind
    assert from_folder(folder)["embedserve_input_tokens_total"] == 5
    assert from_folder(folder)["embedserve_cache_bytes"] == 5000


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
    """Requests by (route, status), whichever model answered."""
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for s in fams["embedserve_requests"].samples:
        if s.name == "embedserve_requests_total":
            counts[s.labels["route"], s.labels["status"]] += s.value
    return counts


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
