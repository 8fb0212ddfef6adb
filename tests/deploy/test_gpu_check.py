"""``make gpu-check`` where there is no GPU: it says so and succeeds, so CI never needs one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.gpu_check import Report, missing_cuda

REPO = Path(__file__).resolve().parents[2]


def test_skips_cleanly_without_a_cuda_gpu() -> None:
    if missing_cuda() is None:
        pytest.skip("a CUDA GPU is here: run `make gpu-check` for the real thing")
    done = subprocess.run(
        [sys.executable, "-m", "deploy.gpu_check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped: no CUDA GPU ("), done.stdout


def test_report_is_a_markdown_table_that_names_failures() -> None:
    report = Report()
    report.add("GPU", "NVIDIA H100")
    report.fail("parity", "min cosine 0.98")
    assert report.markdown().splitlines() == [
        "| check | result |",
        "|---|---|",
        "| GPU | NVIDIA H100 |",
        "| parity | FAILED: min cosine 0.98 |",
    ]
    assert report.failed == ["parity"]
