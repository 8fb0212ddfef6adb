"""Where the numbers came from: CPU, cores, instruction sets, library versions, commit, load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..summary import cpu_model
from .results import Machine

PACKAGES = (
    "torch",
    "onnxruntime",
    "ray",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "numpy",
    "aiohttp",
)


def _flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine() -> Machine:
    flags = _flags()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    status = _git("status", "--porcelain")
    return Machine(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 1,
        avx512_bf16="avx512_bf16" in flags,
        amx="amx_tile" in flags,
        python=sys.version.split()[0],
        platform=platform.platform(),
        versions=versions,
        git_commit=_git("rev-parse", "--short", "HEAD"),
        git_dirty=None if status is None else bool(status),
        load_avg_start=os.getloadavg(),
    )
