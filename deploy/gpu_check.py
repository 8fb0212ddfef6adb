"""``make gpu-check`` (``python -m deploy.gpu_check``): the whole GPU path on this machine.

Exports all-MiniLM-L6-v2 as an fp16 artifact with ``--device cuda``, serves it with the CUDA
execution provider, checks the served embeddings of the built-in corpus against the fp32 PyTorch
model, and runs a short load test. Prints a Markdown table for docs/benchmarks.md. Where there
is no CUDA GPU (or no ``onnxruntime-gpu``) it says so and exits 0: CI never needs a GPU.

Exit codes: 0 passed or skipped, 1 a step failed (the table says which).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MODEL = "all-MiniLM-L6-v2"
MIN_COSINE = 0.999  # fp16 against the fp32 reference; measured values are reported as they are
SERVER_START_TIMEOUT_S = 300.0


@dataclass
class Report:
    """The rows of the results table, in the order the steps ran."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, what: str, value: object) -> None:
        self.rows.append((what, str(value)))

    def fail(self, what: str, why: str) -> None:
        self.failed.append(what)
        self.add(what, f"FAILED: {why}")

    def markdown(self) -> str:
        lines = ["| check | result |", "|---|---|"]
        lines += [f"| {what} | {value} |" for what, value in self.rows]
        return "\n".join(lines) + "\n"


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def missing_cuda() -> str | None:
    """Why the GPU path cannot run here, or None when it can."""
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        return f"cannot import {exc.name}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return None


def timed(step: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = step()
    return value, time.perf_counter() - start


def export_fp16(folder: Path, report: Report) -> bool:
    cmd = [sys.executable, "-m", "export", "--model", MODEL, "--output", str(folder)]
    done, seconds = timed(
        lambda: subprocess.run(
            [*cmd, "--device", "cuda", "--fp16"], capture_output=True, text=True, check=False
        )
    )
    assert isinstance(done, subprocess.CompletedProcess)
    if done.returncode != 0:
        report.fail("export fp16 (--device cuda --fp16)", (done.stderr or done.stdout)[-300:])
        return False
    report.add("export fp16 (--device cuda --fp16)", f"ok in {seconds:.0f} s")
    manifest = json.loads((folder / "manifest.json").read_text())
    parity = manifest.get("validation", {}).get("parity", {})
    if parity:
        report.add("export parity (random inputs)", json.dumps(parity, sort_keys=True)[:200])
    return True


def start_server(artifact: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "service", "--artifact", str(artifact), "--device", "cuda",
        "--num-gpus", "1", "--num-replicas", "1", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log.open("wb") as sink:
        return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)


def wait_healthy(url: str, server: subprocess.Popen[bytes]) -> bool:
    import httpx

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/health", timeout=10).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def check_served(url: str, report: Report) -> None:
    """The backend that answers, and the served vectors against the fp32 PyTorch model."""
    import httpx
    import numpy as np

    from common.arrays import cosine_rows
    from common.texts import corpus
    from models import load_pretrained

    info = httpx.get(f"{url}/info", timeout=30).json()
    backend = info.get("backend", {})
    report.add("served by", f"{backend.get('name')} {backend.get('precision')} "
               f"providers={backend.get('providers')}")  # fmt: skip
    if "CUDAExecutionProvider" not in (backend.get("providers") or []):
        report.fail("CUDA execution provider", "the replica runs without it")
    texts = corpus()
    served = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(texts), 64):
            response = client.post("/v1/embeddings", json={"input": texts[start : start + 64]})
            response.raise_for_status()
            served += [d["embedding"] for d in response.json()["data"]]
    cos = cosine_rows(np.asarray(served, dtype=np.float32), load_pretrained(MODEL).encode(texts))
    what = f"parity vs fp32 PyTorch ({len(texts)} corpus texts)"
    summary = f"min cosine {cos.min():.6f}, mean {cos.mean():.6f}"
    if cos.min() < MIN_COSINE:
        report.fail(what, f"{summary} < {MIN_COSINE}")
    else:
        report.add(what, summary)


def load_test(url: str, folder: Path, report: Report) -> None:
    """``python -m loadtest`` in its own process, as an operator runs it."""
    what = "load test (closed, 4 clients, batch workload, 50 requests)"
    cmd = [
        sys.executable, "-m", "loadtest", "--url", url, "--mode", "closed", "--concurrency",
        "4", "--workload", "batch", "--requests", "50", "--quiet", "--out", str(folder),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    summary_file = folder / "summary.json"
    if done.returncode != 0 or not summary_file.is_file():
        report.fail(what, (done.stderr or done.stdout)[-300:])
        return
    summary = json.loads(summary_file.read_text())
    latency = summary.get("latency_ms", {})
    report.add(
        what,
        f"{summary.get('ok')}/{summary.get('requests')} ok, "
        f"{summary.get('throughput_rps', 0):.1f} req/s, "
        f"{summary.get('inputs_per_s', 0):.0f} inputs/s, "
        f"p50 {latency.get('p50', 0):.1f} ms, p99 {latency.get('p99', 0):.1f} ms",
    )
    if summary.get("errors"):
        report.fail("load test errors", summary.get("status_counts"))


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM: ``python -m service`` shuts Serve and Ray down itself."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run(keep: Path | None) -> Report:
    import torch

    from service.ingress import free_port

    report = Report()
    report.add("GPU", torch.cuda.get_device_name(0))
    import onnxruntime as ort

    report.add("versions", f"torch {torch.__version__}, onnxruntime {ort.__version__}")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
        artifact = (keep or work) / f"{MODEL}-fp16"
        if not export_fp16(artifact, report):
            return report
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = work / "server.log"
        server = start_server(artifact, port, log)
        try:
            healthy, seconds = timed(lambda: wait_healthy(url, server))
            if not healthy:
                report.fail("serve --device cuda", log.read_text(errors="replace")[-300:])
                return report
            report.add("serve --device cuda --num-gpus 1", f"healthy after {seconds:.0f} s")
            check_served(url, report)
            load_test(url, work / "load", report)
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.gpu_check", description=__doc__)
    parser.add_argument(
        "--keep", type=Path, help=f"leave the fp16 artifact in this folder ({MODEL}-fp16)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    reason = missing_cuda()
    if reason is not None:
        out(f"skipped: no CUDA GPU ({reason})")
        return 0
    report = run(args.keep)
    out(report.markdown())
    if report.failed:
        out(f"gpu-check FAILED: {', '.join(report.failed)}")
        return 1
    out("gpu-check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
