"""``python -m service`` as a user runs it: starts, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ..helpers import free_port


def test_launcher_serves_and_shuts_down_on_sigterm(minilm_artifact: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "embedserve.yaml"
    config.write_text(f"port: {port}\nbatching:\n  max_batch_size: 16\n")
    cmd = [
        sys.executable,
        "-m",
        "service",
        "--config",
        str(config),
        "--artifact",
        str(minilm_artifact),
    ]
    env = {**os.environ, "EMBEDSERVE_APP_NAME": "launcher-test"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("the service did not become healthy in time")
        info = httpx.get(f"{url}/info", timeout=10).json()
        assert info["batching"]["max_batch_size"] == 16  # the config file was read
        response = httpx.post(f"{url}/v1/embeddings", json={"input": "hello"}, timeout=30)
        assert response.status_code == 200
        assert len(response.json()["data"][0]["embedding"]) == 384
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, output
    assert f"serving {minilm_artifact} on http://127.0.0.1:{port}" in output
