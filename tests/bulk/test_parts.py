"""Resumption: a 5,000-line file embedded in one run, and again in a run killed (SIGKILL) about
halfway and resumed, gives identical vectors; a parts folder of another job is refused.

Both 5,000-line runs use ``--concurrency 1``: a vector's last bits depend on the batch it ran
in on the server (``service.cache``'s docstring: ONNX Runtime fp32 differs by up to 2.4e-7
between batch layouts), so bit identity needs the same server batches. With one request in
flight and fixed batch boundaries (batch k is always lines [k*64, (k+1)*64)), every request is
one server batch of the same 64 texts, in the one-shot run as in the resumed one.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bulk.parts import PART, Job, PartStore
from bulk.sources import InputError

from .conftest import BATCH, LINES, ROOT, Proxy, bulk, bulk_command, numbered_texts, write_lines

BATCHES = -(-LINES // BATCH)  # 79
POLL_S = 0.02


def finished_parts(folder: Path) -> int:
    return sum(1 for p in folder.glob("part-*.npy") if PART.fullmatch(p.name))


def test_one_shot_rows_are_the_servers_answers(one_shot: np.ndarray, service_url: str) -> None:
    """In input order: the last batch's rows are what the server answers for those lines."""
    import httpx

    texts = numbered_texts(LINES)[(BATCHES - 1) * BATCH :]
    body = {"input": texts, "encoding_format": "float"}
    answer = httpx.post(f"{service_url}/v1/embeddings", json=body, timeout=60).json()
    expected = np.array([d["embedding"] for d in answer["data"]], dtype=np.float32)
    assert one_shot.shape == (LINES, 384) and one_shot.dtype == np.float32
    np.testing.assert_array_equal(one_shot[-len(texts) :], expected)


def test_a_killed_run_resumes_to_identical_vectors(
    service_url: str, lines_file: Path, one_shot: np.ndarray
) -> None:
    out = lines_file.with_name("resumed.npy")
    parts = out.with_name("resumed.npy.parts")
    args = (lines_file, "--output", out, "--url", service_url, "--concurrency", 1)
    proc = subprocess.Popen(bulk_command(*args), cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        while not parts.is_dir() or finished_parts(parts) < BATCHES // 2:
            assert proc.poll() is None, "the run ended before it could be killed halfway"
            time.sleep(POLL_S)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    finished = finished_parts(parts)
    assert BATCHES // 2 <= finished < BATCHES

    done = bulk(*args)
    assert done.returncode == 0, done.stderr
    # Only the unfinished batches were sent again.
    assert f"{finished} resumed, {BATCHES - finished} sent" in done.stderr
    assert not parts.exists()
    np.testing.assert_array_equal(np.load(out), one_shot)


def test_another_jobs_parts_are_refused(service_url: str, tmp_path: Path) -> None:
    """A run stopped by the server (a 400 on its third request) leaves two batches; the input
    changed, or the batch size, refuses to resume them, naming what differs; ``--restart``
    discards them."""
    texts = numbered_texts(40)
    source = write_lines(tmp_path / "texts.txt", texts)
    out = tmp_path / "vectors.npy"
    parts = tmp_path / "vectors.npy.parts"
    refuse = (400, {"content-type": "application/json"},
              b'{"error": {"message": "input[3] is refused by the test proxy"}}')  # fmt: skip
    with Proxy(service_url, lambda n: refuse if n == 3 else None) as proxy:
        args = ("--output", out, "--url", proxy.url, "--batch-size", 8, "--concurrency", 1)
        stopped = bulk(source, *args)
    assert stopped.returncode == 1
    assert (
        "HTTP 400" in stopped.stderr and "input[3] is refused by the test proxy" in stopped.stderr
    )
    assert finished_parts(parts) == 2

    write_lines(source, [*texts[:10], "a changed line", *texts[11:]])
    changed = bulk(source, "--output", out, "--url", service_url, "--batch-size", 8)
    assert changed.returncode == 2
    assert "holds 2 finished batches of another job" in changed.stderr
    assert "the input's content" in changed.stderr
    resized = bulk(source, "--output", out, "--url", service_url, "--batch-size", 4)
    assert resized.returncode == 2 and re.search(r"batch_size: 8 there, 4 now", resized.stderr)
    assert finished_parts(parts) == 2  # refusing touched nothing

    restarted = bulk(source, "--output", out, "--url", service_url, "--batch-size", 8, "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert "0 resumed, 5 sent" in restarted.stderr
    assert np.load(out).shape == (40, 384)


def test_a_second_run_on_the_same_parts_is_refused(tmp_path: Path) -> None:
    """The lock is the kernel's (flock): held while a run lives, gone however it dies."""
    job = Job(input_size=3, input_sha256="0" * 64, source="", texts=130, batch_size=64,
              model=None, dimensions=None, encoding="base64")  # fmt: skip
    first, second = PartStore(tmp_path / "v.npy.parts"), PartStore(tmp_path / "v.npy.parts")
    assert first.open(job, restart=False) == set()
    first.write(1, np.zeros((64, 4), dtype=np.float32))
    with pytest.raises(InputError, match="another bulk run is writing these parts"):
        second.open(job, restart=False)
    first.close()
    assert second.open(job, restart=False) == {1}
    second.close()
