"""The served side: start embedserve as operators do, drive W1-W4 through the load generator,
fetch served vectors for accuracy, and measure the load generator itself against a stub.

The server runs as ``python -m service --num-cpus 2`` (plus a variant's flags, e.g.
``--ingress proxy``) in its own process group with a private Prometheus folder, so another
embedserve on this shared machine cannot leak into its metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import LoadConfig
from ..driver import RunResult, run
from ..stub import free_port
from .cpu import CpuBreakdown, breakdown, descendants, snapshot

READY_LINE = "embedserve is serving"


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # the launcher; Ray's processes are its descendants


@contextmanager
def embedserve(
    artifact: Path,
    cpus: int,
    log_file: Path,
    flags: Sequence[str] = (),
    ready_timeout_s: float = 300,
    settings_env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """A running ``python -m service`` (defaults, or with ``flags``, and ``EMBEDSERVE_*``
    settings in ``settings_env``) on a free 127.0.0.1 port; its URL. Stopped on exit."""
    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="embedserve-bench-metrics-")
    env = {**os.environ, **(settings_env or {}), "EMBEDSERVE_METRICS_DIR": metrics_dir}
    cmd = [
        sys.executable,
        "-m",
        "service",
        "--artifact",
        str(artifact),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num-cpus",
        str(cpus),
        *flags,
    ]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True
        )
        try:
            deadline = time.monotonic() + ready_timeout_s
            assert proc.stdout is not None
            while True:
                line = proc.stdout.readline()
                if READY_LINE in line:
                    break
                if not line and proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"embedserve did not start; see {log_file}")
            yield Server(f"http://127.0.0.1:{port}", proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout is not None:  # else a ResourceWarning (an error under pytest)
                proc.stdout.close()


@contextmanager
def stub_server() -> Iterator[str]:
    """The no-work stub in its own process (so its CPU is not counted as the client's)."""
    port = free_port()
    cmd = [sys.executable, "-m", "loadtest.stub", "--port", str(port), "--dim", "384"]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=1)
            except urllib.error.HTTPError:
                break  # it answers (404): up
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def served_vectors(url: str, batches: list[list[str]]) -> np.ndarray:
    """Embeddings of the batches from ``/v1/embeddings``, concatenated in order."""
    out = []
    for batch in batches:
        request = urllib.request.Request(
            f"{url}/v1/embeddings",
            data=json.dumps({"input": batch}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            data = json.loads(response.read())
        out.append(np.array([d["embedding"] for d in data["data"]], dtype=np.float32))
    return np.concatenate(out)


def workloads(
    url: str,
    out: Path | None,
    single_texts: Path,
    scale: float,
    seconds: dict[str, float] | None = None,
    warmup_s: float | None = None,
) -> dict[str, LoadConfig]:
    """W1-W3 (closed loops), or only those ``seconds`` names, run that long; ``scale`` shortens
    every duration (``--quick``). Warm-up: a tenth of the run unless ``warmup_s`` is given. With
    ``out=None`` the runs write no files."""
    specs = {  # name: (label, shape, clients, seconds)
        "w1": ("W1 single sentence, sequential", {"texts": single_texts}, 1, 20),
        "w2": ("W2 32 sentences/request", {"workload": "batch", "batch_size": 32}, 4, 30),
        "w3": ("W3 8 passages/request", {"workload": "long", "batch_size": 8}, 2, 30),
    }
    durations = seconds or {key: spec[3] for key, spec in specs.items()}
    return {
        key: LoadConfig(url=url, name=label, **shape, concurrency=clients,
                        duration_s=durations[key] * scale,
                        warmup_s=(durations[key] / 10 if warmup_s is None else warmup_s) * scale,
                        out=None if out is None else out / key, write_samples=False)
        for key, (label, shape, clients, _) in specs.items() if key in durations
    }  # fmt: skip


def sweep_config(
    url: str, out: Path, single_texts: Path, start_rps: float, slo_p99_ms: float, scale: float
) -> LoadConfig:
    """W4: Poisson arrivals of single sentences, ×1.5 per 10 s step, then two bisections."""
    return LoadConfig(url=url, name="W4 single sentences", texts=single_texts, sweep=True,
                      rate=start_rps, sweep_factor=1.5, sweep_max_steps=10, sweep_refine=2,
                      slo_p99_ms=slo_p99_ms, duration_s=10 * scale, warmup_s=2 * scale,
                      out=out / "w4", write_samples=False)  # fmt: skip


def run_all(
    configs: dict[str, LoadConfig], watch: tuple[str, int] | None = None
) -> tuple[dict[str, RunResult], CpuBreakdown | None]:
    """Run each config; for ``watch = (name, server pid)``, account the cores during that run."""
    results, cpu = {}, None
    for name, config in configs.items():
        if watch is None or name != watch[0]:
            results[name] = run(config)
            continue
        pids = descendants(watch[1])
        before, start = snapshot(pids), time.monotonic()
        results[name] = run(config)
        cpu = breakdown(before, snapshot(pids), time.monotonic() - start)
    return results, cpu


def paired_w2(
    url: str, offline_pass: Callable[[], float], pairs: int, seconds: float
) -> list[tuple[float, float]]:
    """(offline, served) inputs/s, measured back to back ``pairs`` times, order alternating.

    On a shared machine the load of others drifts by the minute; a ratio of two measurements
    taken seconds apart is far steadier than one of measurements taken minutes apart.
    """
    config = LoadConfig(
        url=url,
        workload="batch",
        batch_size=32,
        concurrency=4,
        duration_s=seconds,
        warmup_s=1,
        progress=False,
        write_samples=False,
    )
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            offline = offline_pass()
            served = run(config).summary.inputs_per_s
        else:
            served = run(config).summary.inputs_per_s
            offline = offline_pass()
        out.append((offline, served))
    return out


def client_overhead(scale: float) -> dict[str, RunResult]:
    """The load generator alone: single sentences and 32-sentence requests to the stub."""
    with stub_server() as url:
        configs = {
            "short": LoadConfig(
                url=url,
                workload="short",
                concurrency=4,
                duration_s=5 * scale,
                warmup_s=1,
                write_samples=False,
            ),
            "short32": LoadConfig(
                url=url,
                workload="batch",
                batch_size=32,
                concurrency=4,
                duration_s=5 * scale,
                warmup_s=1,
                write_samples=False,
            ),
        }
        return run_all(configs)[0]
