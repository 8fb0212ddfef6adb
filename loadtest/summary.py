"""``summary.json``: the typed result of a run, and the per-request CSV beside it.

One schema for single runs and sweeps, so ``compare`` and the benchmark report read any of them.
Latency percentiles are over successful requests; every failure is counted in ``errors`` and
``status_counts`` (HTTP codes as strings, and ``timeout``/``connection_error``/``dropped``/
``bad_response`` for requests that got no usable answer).
"""

from __future__ import annotations

import csv
import os
import platform
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .runner import Phase, Sample, latencies_ms
from .server import ServerSplit
from .stats import LatencyStats, latency_cdf, latency_stats

SCHEMA_VERSION = 1


class ClientInfo(BaseModel):
    """The machine the load came from, and what generating it cost."""

    cores: int
    cpu_model: str
    python: str
    platform: str
    cpu_s: float  # process CPU time of the client during the measured phase
    cpu_ms_per_request: float | None
    max_in_flight: int


class SweepStep(BaseModel):
    offered_rps: float
    throughput_rps: float
    inputs_per_s: float
    latency_ms: LatencyStats
    errors: int
    held: bool
    reason: str  # why it held or broke


class SweepResult(BaseModel):
    slo_p99_ms: float
    max_rate_rps: float | None  # highest offered rate that held; None if the first step broke
    steps: list[SweepStep]


class Summary(BaseModel):
    schema_version: int = SCHEMA_VERSION
    started_at: str
    duration_s: float
    requests: int
    ok: int
    errors: int
    offered_rps: float | None
    throughput_rps: float
    inputs_per_s: float
    tokens_per_s: float | None
    latency_ms: LatencyStats
    latency_cdf_ms: list[tuple[float, float]]
    status_counts: dict[str, int]
    error_examples: list[str]
    interrupted: bool
    config: dict[str, Any]
    server_info: dict[str, Any] | None
    server: ServerSplit | None
    client: ClientInfo
    sweep: SweepResult | None = None

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "summary.json"
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def status_key(sample: Sample) -> str:
    return str(sample.status) if sample.status else sample.outcome


def summarize(
    phase: Phase,
    config: dict[str, Any],
    started_at: datetime,
    server_info: dict[str, Any] | None = None,
    server: ServerSplit | None = None,
    tokens_of: dict[int, int] | None = None,
) -> Summary:
    """Summary of a phase. ``tokens_of`` (payload index → tokens) fills in tokens the server
    did not report; without either, ``tokens_per_s`` is ``None``."""
    samples = phase.samples
    ok = [s for s in samples if s.outcome == "ok"]
    elapsed = max(phase.elapsed_s, 1e-9)
    tokens: int | None = 0
    for s in ok:
        n = s.tokens if s.tokens is not None else (tokens_of or {}).get(s.index)
        if n is None:
            tokens = None
            break
        tokens += n  # type: ignore[operator]
    lat = latencies_ms(samples)
    errors = [s for s in samples if s.outcome != "ok"]
    examples = list(dict.fromkeys(f"{status_key(s)}: {s.error}" for s in errors))[:5]
    sent = len([s for s in samples if s.outcome != "dropped"])
    return Summary(
        started_at=started_at.isoformat(timespec="seconds"),
        duration_s=round(phase.elapsed_s, 4),
        requests=len(samples),
        ok=len(ok),
        errors=len(errors),
        offered_rps=phase.offered_rps,
        throughput_rps=len(ok) / elapsed,
        inputs_per_s=sum(s.inputs for s in ok) / elapsed,
        tokens_per_s=None if tokens is None or not ok else tokens / elapsed,
        latency_ms=latency_stats(lat),
        latency_cdf_ms=latency_cdf(lat),
        status_counts=dict(Counter(status_key(s) for s in samples)),
        error_examples=examples,
        interrupted=phase.interrupted,
        config=config,
        server_info=server_info,
        server=server,
        client=ClientInfo(
            cores=os.cpu_count() or 1,
            cpu_model=cpu_model(),
            python=sys.version.split()[0],
            platform=platform.platform(),
            cpu_s=round(phase.client_cpu_s, 4),
            cpu_ms_per_request=1000 * phase.client_cpu_s / sent if sent else None,
            max_in_flight=phase.max_in_flight,
        ),
    )


def now() -> datetime:
    return datetime.now(UTC)


def write_samples(samples: list[Sample], path: Path) -> None:
    """Every request of the measured phase, for re-analysis (times in s from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "index",
                "scheduled_s",
                "sent_s",
                "done_s",
                "latency_ms",
                "status",
                "outcome",
                "inputs",
                "tokens",
            ]
        )
        for s in samples:
            out.writerow(
                [
                    s.index,
                    f"{s.scheduled:.6f}",
                    f"{s.sent:.6f}",
                    f"{s.done:.6f}",
                    f"{s.latency_ms:.3f}",
                    s.status,
                    s.outcome,
                    s.inputs,
                    "" if s.tokens is None else s.tokens,
                ]
            )
