"""Prometheus metrics of the service, defined once with explicit buckets, created by ``init``.

Replicas are separate processes. A replica calls ``init(folder)`` with the folder its node's
replicas share: each process writes its samples there and ``/metrics`` on any replica exposes
the sum, so counts are exact whichever replica answers the scrape. An in-process app (tests)
calls ``init(None)`` and gets metrics of its own, in a registry of its own, as often as it likes.

Nothing happens at import: prometheus_client picks its value class from
``PROMETHEUS_MULTIPROC_DIR`` when *it* is imported, and each metric child opens its sample file
when created, so ``init`` sets the variable, makes the folder and switches the value class
before it creates a metric.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
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
    values,
)
from prometheus_client.metrics import MetricWrapperBase

from .batching import DropReason, MicroBatchStats

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from sub-millisecond tokenization to multi-second overloaded requests.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048)
TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
RATIO_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, 1.0)
STAGE = ["model", "task"]  # labels of a pipeline's metrics
REQUEST = ["model", "route", "status"]  # a request's labels; model "" where it reached none


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """One (model, task) pipeline's children, labelled once so a request pays no lookup."""

    tokenize: Histogram
    queue: Histogram
    inference: Histogram
    request_inputs: Histogram
    input_tokens: Counter
    queue_depth: Gauge  # the model's: its tasks share one batcher


@dataclass(frozen=True, slots=True)
class CacheMetrics:
    """One model's repeated-input cache (``service.cache``): inputs found (or repeated within a
    request) and inputs computed, and the bytes it holds."""

    hits: Counter
    misses: Counter
    bytes: Gauge


@dataclass(frozen=True)
class Metrics:
    """Every metric of a replica (``all``), and the few ways the service records them."""

    folder: Path | None  # the shared multiprocess folder, or None
    registry: CollectorRegistry | None  # where the metrics are without a folder
    request_duration: Histogram
    queue_duration: Histogram
    tokenize_duration: Histogram
    inference_duration: Histogram
    batch_size: Histogram
    batch_tokens: Histogram
    padding_ratio: Histogram
    request_inputs: Histogram
    requests: Counter
    input_tokens: Counter
    dropped_inputs: Counter
    queue_depth: Gauge
    cache_hits: Counter
    cache_misses: Counter
    cache_bytes: Gauge

    def all(self) -> tuple[MetricWrapperBase, ...]:
        """Every metric object, for whoever needs their names (the dashboard's test)."""
        return tuple(
            value
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), MetricWrapperBase)
        )

    def stage(self, model: str, task: str) -> StageMetrics:
        return StageMetrics(
            self.tokenize_duration.labels(model, task),
            self.queue_duration.labels(model, task),
            self.inference_duration.labels(model, task),
            self.request_inputs.labels(model, task),
            self.input_tokens.labels(model, task),
            self.queue_depth.labels(model),
        )

    def cache(self, model: str) -> CacheMetrics:
        return CacheMetrics(
            self.cache_hits.labels(model),
            self.cache_misses.labels(model),
            self.cache_bytes.labels(model),
        )

    def micro_batch_observer(self, model: str) -> Callable[[MicroBatchStats], None]:
        return partial(
            _observe_micro_batch,
            self.batch_size.labels(model),
            self.batch_tokens.labels(model),
            self.padding_ratio.labels(model),
        )

    def drop_observer(self, model: str) -> Callable[[DropReason, int], None]:
        children = {
            reason: self.dropped_inputs.labels(model, reason) for reason in get_args(DropReason)
        }
        return lambda reason, inputs: children[reason].inc(inputs)  # all exposed at 0 from now

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        """One answered request; ``model`` is the one it reached, served or refused ("" where
        none: /health, /info, a body that could not be parsed)."""
        self.requests.labels(model, route, str(status)).inc()
        self.request_duration.labels(model, route, str(status)).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every replica's samples (or this process's, without a folder)."""
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(self.folder))
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def mark_process_dead(self) -> None:
        """Drop this process's live gauges from the shared folder when a replica stops."""
        if self.folder is not None:
            multiprocess.mark_process_dead(os.getpid(), path=str(self.folder))


def _observe_micro_batch(
    size: Histogram, padded: Histogram, padding: Histogram, stats: MicroBatchStats
) -> None:
    size.observe(stats.inputs)
    padded.observe(stats.padded_tokens)
    padding.observe(1.0 - stats.real_tokens / stats.padded_tokens)


def init(folder: Path | None) -> Metrics:
    """Create the metrics: written to ``folder`` for every replica of the node to expose, or,
    with None, kept in a registry of their own (call it again for a fresh set)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        clear_dead_processes(folder)
        os.environ[MULTIPROC_ENV] = str(folder)  # where each sample file opens (values.py)
    shared = folder is not None
    if values.ValueClass._multiprocess != shared:  # chosen at prometheus_client's import
        values.ValueClass = values.MultiProcessValue() if shared else values.MutexValue
    # Multiprocess samples are collected from the folder, never from a registry.
    into = None if shared else CollectorRegistry()
    return Metrics(
        folder,
        into,
        Histogram(
            "embedserve_request_duration_seconds",
            "Time from request received to response ready.",
            REQUEST,
            buckets=LATENCY_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_queue_duration_seconds",
            "Time a request's inputs waited before their first micro-batch ran.",
            STAGE,
            buckets=LATENCY_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_tokenize_duration_seconds",
            "Time spent tokenizing a request.",
            STAGE,
            buckets=LATENCY_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_inference_duration_seconds",
            "Time from a request's first micro-batch start to its last micro-batch end.",
            STAGE,
            buckets=LATENCY_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_batch_size",
            "Inputs per executed micro-batch.",
            ["model"],
            buckets=COUNT_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_batch_tokens",
            "Padded tokens (inputs × longest) per executed micro-batch.",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_padding_ratio",
            "Share of a micro-batch's computed tokens that were padding.",
            ["model"],
            buckets=RATIO_BUCKETS,
            registry=into,
        ),
        Histogram(
            "embedserve_request_inputs",
            "Inputs per request.",
            STAGE,
            buckets=COUNT_BUCKETS,
            registry=into,
        ),
        Counter("embedserve_requests_total", "Requests answered.", REQUEST, registry=into),
        Counter(
            "embedserve_input_tokens_total",
            "Real tokens of all inputs embedded.",
            STAGE,
            registry=into,
        ),
        Counter(
            "embedserve_dropped_inputs_total",
            "Queued inputs dropped before inference: their client went away, or their deadline "
            "passed.",
            ["model", "reason"],
            registry=into,
        ),
        Gauge(
            "embedserve_queue_depth",
            "Inputs waiting in or running through the batcher.",
            ["model"],
            multiprocess_mode="livesum",
            registry=into,
        ),
        Counter(
            "embedserve_cache_hits",
            "Inputs answered without running them: found in the replica's cache, or repeating "
            "an earlier input of the same request.",
            ["model"],
            registry=into,
        ),
        Counter(
            "embedserve_cache_misses",
            "Distinct inputs of a request not in the replica's cache: computed, then kept.",
            ["model"],
            registry=into,
        ),
        Gauge(
            "embedserve_cache_bytes",
            "Bytes the repeated-input cache holds (vectors, token ids and per-entry overhead); "
            "summed over the node's live replicas.",
            ["model"],
            multiprocess_mode="livesum",
            registry=into,
        ),
    )


def clear_dead_processes(folder: Path) -> None:
    """Drop samples left in the shared folder by processes that are gone (an earlier run)."""
    for path in folder.glob("*.db"):
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
