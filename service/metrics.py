"""Prometheus metrics of the service, defined once with explicit buckets.

Replicas are separate processes. With ``PROMETHEUS_MULTIPROC_DIR`` set (the launcher sets it for
every replica of a node) each process writes its samples to that folder and ``/metrics`` on any
replica exposes the sum, so counts are exact whichever replica answers the scrape.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .batching import DropReason, MicroBatchStats

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # Metrics below open their sample files at import; a replica on a fresh node makes the folder.
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

# Seconds: from sub-millisecond tokenization to multi-second overloaded requests.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048)
TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
RATIO_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, 1.0)

REQUEST_DURATION = Histogram(
    "embedserve_request_duration_seconds",
    "Time from request received to response ready.",
    ["route", "status"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DURATION = Histogram(
    "embedserve_queue_duration_seconds",
    "Time a request's inputs waited before their first micro-batch ran.",
    buckets=LATENCY_BUCKETS,
)
TOKENIZE_DURATION = Histogram(
    "embedserve_tokenize_duration_seconds",
    "Time spent tokenizing a request.",
    buckets=LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "embedserve_inference_duration_seconds",
    "Time from a request's first micro-batch start to its last micro-batch end.",
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "embedserve_batch_size", "Inputs per executed micro-batch.", buckets=COUNT_BUCKETS
)
BATCH_TOKENS = Histogram(
    "embedserve_batch_tokens",
    "Padded tokens (inputs × longest) per executed micro-batch.",
    buckets=TOKEN_BUCKETS,
)
PADDING_RATIO = Histogram(
    "embedserve_padding_ratio",
    "Share of a micro-batch's computed tokens that were padding.",
    buckets=RATIO_BUCKETS,
)
REQUEST_INPUTS = Histogram(
    "embedserve_request_inputs", "Inputs per request.", buckets=COUNT_BUCKETS
)
REQUESTS = Counter("embedserve_requests_total", "Requests answered.", ["route", "status"])
INPUT_TOKENS = Counter("embedserve_input_tokens_total", "Real tokens of all inputs embedded.")
DROPPED_INPUTS = Counter(
    "embedserve_dropped_inputs_total",
    "Queued inputs dropped before inference: their client went away, or their deadline passed.",
    ["reason"],
)
for _reason in get_args(DropReason):  # exposed at 0 before the first drop
    DROPPED_INPUTS.labels(_reason)
QUEUE_DEPTH = Gauge(
    "embedserve_queue_depth",
    "Inputs waiting in or running through the batcher.",
    multiprocess_mode="livesum",
)


def observe_micro_batch(stats: MicroBatchStats) -> None:
    BATCH_SIZE.observe(stats.inputs)
    BATCH_TOKENS.observe(stats.padded_tokens)
    PADDING_RATIO.observe(1.0 - stats.real_tokens / stats.padded_tokens)


def observe_dropped(reason: DropReason, inputs: int) -> None:
    DROPPED_INPUTS.labels(reason).inc(inputs)


def observe_request(route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, str(status)).inc()
    REQUEST_DURATION.labels(route, str(status)).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text format of every replica's samples (or this process's, without a shared folder)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def clear_dead_processes() -> None:
    """Drop samples left in the shared folder by processes that are gone (an earlier run)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    for path in Path(folder).glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_process_dead() -> None:
    """Drop this process's live gauges from the shared folder when a replica stops."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())
