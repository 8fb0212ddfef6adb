"""The load generator against embedserve itself: both dialects, the server split, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtest.config import LoadConfig
from loadtest.driver import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url(deploy: Callable[..., str]) -> str:
    # The workloads cycle through fixed texts: without the cache each one runs, as in the bench.
    return deploy(cache_mb=0)


def test_openai_style_with_the_server_split(url: str) -> None:
    config = LoadConfig(
        url=url,
        workload="batch",
        batch_size=8,
        concurrency=2,
        requests=12,
        warmup_s=0.5,
        progress=False,
    )
    summary = run(config).summary
    assert summary.ok == 12 and summary.errors == 0
    assert summary.status_counts == {"200": 12}
    assert summary.inputs_per_s == pytest.approx(8 * summary.throughput_rps)
    assert summary.tokens_per_s and summary.tokens_per_s > summary.inputs_per_s  # x-total-tokens
    assert summary.server_info is not None and summary.server_info["dimension"] == 384
    server = summary.server
    assert server is not None
    assert server.requests == {"/v1/embeddings 200": 12}  # the measured phase only
    assert server.queue_ms is not None and server.inference_ms is not None
    assert server.request_ms is not None and server.request_ms <= summary.latency_ms.max
    expected_tokens = summary.tokens_per_s * summary.duration_s
    assert server.input_tokens == pytest.approx(expected_tokens, rel=1e-3)


def test_tei_style_against_embed(url: str) -> None:
    config = LoadConfig(url=url, api="tei", mode="open", rate=20, requests=15, progress=False)
    summary = run(config).summary
    assert summary.ok == 15 and summary.config["endpoint"] == f"{url}/embed"
    assert summary.server is not None and summary.server.requests == {"/embed 200": 15}
    assert summary.tokens_per_s and summary.tokens_per_s > 0


def test_cli_writes_the_summary_and_plots(url: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "loadtest",
        "--url",
        url,
        "--workload",
        "long",
        "--batch-size",
        "2",
        "--requests",
        "4",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "throughput" in done.stdout and "server ms/request" in done.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] == 4 and summary["config"]["workload"] == "long"
    for name in ("latency_over_time.png", "latency_cdf.png", "requests.csv"):
        assert (tmp_path / name).stat().st_size > 0
