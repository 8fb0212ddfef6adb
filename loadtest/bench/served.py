"""The served side: start embedserve as operators do, drive W1-W4 through the load generator,
fetch served vectors for accuracy, and measure the load generator itself against a stub.

The server runs as ``python -m service --num-cpus 2`` (plus a variant's flags, e.g.
``--ingress proxy``) in its own process group with a private Prometheus folder, so another
embedserve on this shared machine cannot leak into its metrics.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import numpy as np

from common import texts as corpus
from service.ingress import free_port

from ..config import Api, LoadConfig, Workload
from ..driver import RunResult, run
from ..server import fetch_info
from .cpu import CpuBreakdown, breakdown, descendants, snapshot

log = logging.getLogger(__name__)
READY_LINE = "embedserve is serving"
CACHE_OFF = {"EMBEDSERVE_CACHE_MB": "0"}  # every bench service but the cache section's
STUB_DIM = 384  # the stub answers vectors of all-MiniLM-L6-v2's size: the client parses as much
T = TypeVar("T")


@dataclass(frozen=True)
class ClosedLoop:
    """A served workload: ``clients`` back to back, each request ``inputs`` texts of ``shape``
    (``file``: the single-sentence texts file, one per request; ``pairs``: a query and
    ``inputs`` documents, ``api="rerank"``)."""

    workload: Workload
    shape: str  # Shape.key: the offline rows it is set against
    inputs: int
    clients: int
    seconds: float
    api: Api = "openai"

    def label(self, name: str) -> str:
        what = {"file": "single sentence", "batch": "sentences", "long": "passages"}
        per = "" if self.inputs == 1 else f"{self.inputs} "
        suffix = "/request" if self.inputs > 1 else ", sequential" if self.clients == 1 else ""
        return f"{name.upper()} {per}{what.get(self.workload, self.workload)}{suffix}"


# W1-W3: what the results table's served rows ran; the report quotes these numbers.
CLOSED_LOOPS = {
    "w1": ClosedLoop(workload="file", shape="single", inputs=1, clients=1, seconds=20),
    "w2": ClosedLoop(workload="batch", shape="short32", inputs=32, clients=4, seconds=30),
    "w3": ClosedLoop(workload="long", shape="long8", inputs=8, clients=2, seconds=30),
}


SINGLE_STRIDE = 6  # W1's texts: one sentence in six (single-sentence rows cost a call per text)


def singles_file(folder: Path, limit: int | None = None) -> Path:
    """W1's texts (one sentence in ``SINGLE_STRIDE``, the first ``limit``), one per line."""
    path = folder / "single_sentences.txt"
    singles = corpus.sentences()[::SINGLE_STRIDE][:limit]
    path.write_text("\n".join(singles) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # the launcher; Ray's processes are its descendants


def ensure_artifact(artifact: Path, model: str, needs: Sequence[str] = ()) -> None:
    """Export ``model`` (a known name or a folder) to ``artifact`` unless an export is there
    with the files ``needs`` names: kept across runs, as operators keep theirs, and replaced
    when an older export lacks what the bench serves (``calibration.npy``, say)."""
    missing = [name for name in ("manifest.json", *needs) if not (artifact / name).is_file()]
    if not missing:
        return
    log.info("exporting %s to %s (missing: %s)", model, artifact, ", ".join(missing))
    cmd = [sys.executable, "-m", "export", "--model", model, "--output", str(artifact)]
    subprocess.run(cmd, check=True)


@contextmanager
def embedserve(
    artifact: Path | Sequence[Path],
    cpus: int,
    log_file: Path,
    flags: Sequence[str] = (),
    ready_timeout_s: float = 300,
    settings_env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """A running ``python -m service`` (defaults, or with ``flags``, and ``EMBEDSERVE_*``
    settings in ``settings_env``) on a free 127.0.0.1 port; its URL. Stopped on exit.
    Several artifacts: one service serving each model, the first the default. The
    repeated-input cache is off unless ``settings_env`` sets ``EMBEDSERVE_CACHE_MB``: the
    workloads cycle through a fixed set of texts, and the bench measures computing them."""
    artifacts = [artifact] if isinstance(artifact, Path) else list(artifact)
    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="embedserve-bench-metrics-")
    env = {**os.environ, **CACHE_OFF, **(settings_env or {}), "EMBEDSERVE_METRICS_DIR": metrics_dir}
    cmd = [
        sys.executable,
        "-m",
        "service",
        *[arg for a in artifacts for arg in ("--artifact", str(a))],
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
def embedserves(
    starts: Sequence[Callable[[], AbstractContextManager[Server]]],
) -> Iterator[list[Server]]:
    """Several servers (each an :func:`embedserve` call) started at once, since a start-up is
    mostly waiting on Ray; all stopped on exit, as are those started when another fails."""
    with ExitStack() as stack:
        with ThreadPoolExecutor(len(starts)) as pool:
            futures = [pool.submit(stack.enter_context, start()) for start in starts]
        yield [f.result() for f in futures]


@contextmanager
def stub_server() -> Iterator[str]:
    """The no-work stub in its own process (so its CPU is not counted as the client's)."""
    port = free_port()
    cmd = [sys.executable, "-m", "loadtest.stub", "--port", str(port), "--dim", str(STUB_DIM)]
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


def post_embeddings(url: str, body: dict[str, object]) -> bytes:
    """The raw answer of ``POST /v1/embeddings`` with ``body``: the bench's one client call
    outside the load generator (accuracy, sizes, usage), so every section reads it alike."""
    request = urllib.request.Request(
        f"{url}/v1/embeddings",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return bytes(response.read())


def served_vectors(url: str, batches: list[list[str]]) -> np.ndarray:
    """Embeddings of the batches from ``/v1/embeddings``, concatenated in order."""
    out = []
    for batch in batches:
        data = json.loads(post_embeddings(url, {"input": batch}))
        out.append(np.array([d["embedding"] for d in data["data"]], dtype=np.float32))
    return np.concatenate(out)


def exact_vectors(
    url: str, texts: list[str], batch: int, dtype: str = "<f4", **fields: object
) -> np.ndarray:
    """``(n, D)`` vectors of ``texts`` sent ``batch`` at a time, in order, exact (base64 bytes
    of ``dtype``: little-endian float32, or int8/uint8 for a compact ``embedding_type``); other
    body ``fields`` as given."""
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), batch):
        body = {"input": texts[start : start + batch], "encoding_format": "base64", **fields}
        data = json.loads(post_embeddings(url, body))["data"]
        rows += [np.frombuffer(base64.b64decode(d["embedding"]), dtype=dtype) for d in data]
    return np.stack(rows)


def server_info(url: str) -> dict | None:
    """The server's ``/info`` (its model, backend and batching), or None if it has none: the
    load generator's own :func:`loadtest.server.fetch_info`, from outside an event loop."""

    async def fetch() -> dict | None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            return await fetch_info(session, url)

    return asyncio.run(fetch())


def workloads(
    url: str,
    out: Path | None,
    single_texts: Path,
    scale: float,
    seconds: Mapping[str, float] | None = None,
    warmup_s: float | None = None,
) -> dict[str, LoadConfig]:
    """W1-W3 (``CLOSED_LOOPS``), or only those ``seconds`` names, run that long; ``scale``
    shortens every duration (``--quick``). Warm-up: a tenth of the run unless ``warmup_s`` is
    given. With ``out=None`` the runs write no files."""
    durations = seconds or {key: loop.seconds for key, loop in CLOSED_LOOPS.items()}
    return {
        key: LoadConfig(
            url=url,
            name=loop.label(key),
            workload=loop.workload,
            texts=single_texts if loop.workload == "file" else None,
            batch_size=None if loop.workload == "file" else loop.inputs,
            concurrency=loop.clients,
            duration_s=durations[key] * scale,
            warmup_s=(durations[key] / 10 if warmup_s is None else warmup_s) * scale,
            out=None if out is None else out / key,
            write_samples=False,
        )
        for key, loop in CLOSED_LOOPS.items()
        if key in durations
    }


def command(config: LoadConfig) -> str:
    """The ``python -m loadtest`` line that runs ``config`` again by hand (default port)."""
    return (
        f"python -m loadtest --url http://127.0.0.1:8000 --workload {config.workload} "
        f"--batch-size {config.inputs_per_request} --mode {config.mode} "
        f"--concurrency {config.concurrency} --duration {config.duration_s:g} "
        f"--warmup {config.warmup_s:g}"
    )


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
    results: dict[str, RunResult] = {}
    cpu: CpuBreakdown | None = None
    for name, config in configs.items():
        if watch is None or name != watch[0]:
            results[name] = run(config)
            continue
        pids = descendants(watch[1])
        before, start = snapshot(pids), time.monotonic()
        results[name] = run(config)
        cpu = breakdown(before, snapshot(pids), time.monotonic() - start)
    return results, cpu


def alternate(first: Callable[[], T], second: Callable[[], T], pairs: int) -> list[tuple[T, T]]:
    """(first, second) measured back to back ``pairs`` times, which goes first alternating.

    On a shared machine the load of others drifts by the minute; a ratio of two measurements
    taken seconds apart is far steadier than one of measurements taken minutes apart, and
    alternating the order keeps a steady drift from favouring either side.
    """
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        out.append((a, b))
    return out


def loop_config(
    url: str, loop: ClosedLoop, seconds: float, texts: Path | None = None, model: str | None = None
) -> LoadConfig:
    """``loop`` (its workload, inputs, clients and API) for ``seconds`` after a 1 s warm-up,
    quietly; ``texts`` for a ``file`` workload, ``model`` for a service of several."""
    return LoadConfig(
        url=url,
        api=loop.api,
        model=model,
        workload=loop.workload,
        texts=texts,
        batch_size=None if loop.workload == "file" else loop.inputs,
        concurrency=loop.clients,
        duration_s=seconds,
        warmup_s=1,
        progress=False,
        write_samples=False,
    )


def paired_closed_loop(
    url: str,
    loop: ClosedLoop,
    offline_pass: Callable[[], float],
    pairs: int,
    seconds: float,
    model: str | None = None,
) -> list[tuple[float, float]]:
    """(offline, served) inputs/s, measured back to back ``pairs`` times (:func:`alternate`);
    served is ``loop`` run for ``seconds`` (against ``model`` where the service has several)."""
    config = loop_config(url, loop, seconds, model=model)
    return alternate(offline_pass, lambda: run(config).summary.inputs_per_s, pairs)


def client_overhead(scale: float) -> dict[str, RunResult]:
    """The load generator alone against the stub, with W2's clients: single sentences and W2's
    requests; keyed by what one request holds."""
    w2 = CLOSED_LOOPS["w2"]
    shapes: dict[str, tuple[Workload, int]] = {
        "1 sentence": ("short", 1),
        f"{w2.inputs} sentences ({STUB_DIM}-d answers)": (w2.workload, w2.inputs),
    }
    with stub_server() as url:
        configs = {
            key: LoadConfig(
                url=url,
                workload=workload,
                batch_size=inputs,
                concurrency=w2.clients,
                duration_s=5 * scale,
                warmup_s=1,
                write_samples=False,
            )
            for key, (workload, inputs) in shapes.items()
        }
        return run_all(configs)[0]
