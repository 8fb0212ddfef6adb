"""Finished batches on disk, so a killed run resumes without redoing them, and their assembly
into the output.

Layout: ``OUT.parts/job.json`` (what must match to resume) and ``part-00000012.npy`` (batch 12's
``(rows, D)`` float32 vectors). A part is written to a temporary name, flushed to disk and
``os.replace``-d into place, so a part that exists is whole, whatever killed the writer
(SIGKILL included; fsync covers a power cut too). The output is written the same way, then the
folder is removed; a run killed between the two finds every part done and assembles again.
A lock (``flock`` on ``lock``, released by the kernel however the holder dies) refuses a second
run writing the same parts at once.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .sources import InputError, require_pyarrow

JOB_FILE = "job.json"
LOCK_FILE = "lock"  # never replaced (job.json is), so its lock holds for the whole run
PART = re.compile(r"part-(\d{8})\.npy")
ROW_GROUP_ROWS = 65536  # parquet rows per row group: parts are small, readers like big groups


class ResumeRefused(InputError):
    """The parts folder belongs to another job (other input, batches or request)."""


@dataclass(frozen=True)
class Job:
    """What a finished batch's vectors depend on. A resumed run must agree on all of it, or
    its output would mix two jobs' vectors without a sign of it."""

    input_size: int
    input_sha256: str
    source: str  # the .jsonl field or .parquet column read ("" for .txt)
    texts: int
    batch_size: int
    model: str | None
    dimensions: int | None
    encoding: str

    @property
    def batches(self) -> int:
        return -(-self.texts // self.batch_size)

    def rows(self, batch: int) -> int:
        return min(self.batch_size, self.texts - batch * self.batch_size)

    def differences(self, other: Job) -> list[str]:
        """What differs, worded for the user ("batch_size: 64 there, 32 now")."""
        out = []
        for key, there in asdict(other).items():
            now = getattr(self, key)
            if now != there:
                what = "the input's content" if key == "input_sha256" else key
                out.append(f"{what}: {there!r} there, {now!r} now")
        return out


def _write_atomic(path: Path, write: Any) -> None:
    """``write(file)`` into a temporary sibling, flushed to disk, then renamed over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class PartStore:
    """The parts folder of one output."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock: IO[bytes] | None = None

    def part(self, batch: int) -> Path:
        return self.folder / f"part-{batch:08d}.npy"

    def open(self, job: Job, restart: bool) -> set[int]:
        """Take the folder for ``job``; the batches already finished there. A folder of another
        job with finished batches is refused (``restart`` discards it instead); one with none
        is simply taken over."""
        self.folder.mkdir(parents=True, exist_ok=True)
        job_file = self.folder / JOB_FILE
        self._lock = (self.folder / LOCK_FILE).open("ab")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise InputError(f"{self.folder}: another bulk run is writing these parts") from None
        for stale in self.folder.glob(".*.tmp"):  # a killed writer's unfinished file
            stale.unlink()
        done = self.finished(job)
        previous = self._read_job()
        if previous is not None and previous != job and done and not restart:
            raise ResumeRefused(
                f"{self.folder} holds {len(done)} finished batches of another job "
                f"({'; '.join(job.differences(previous))}). Run with the same input and "
                "settings to resume, or pass --restart to discard them."
            )
        if previous != job or restart:
            for batch in done:
                self.part(batch).unlink()
            done = set()
        _write_atomic(job_file, lambda f: f.write(json.dumps(asdict(job), indent=1).encode()))
        return done

    def _read_job(self) -> Job | None:
        try:
            return Job(**json.loads((self.folder / JOB_FILE).read_text()))
        except (OSError, ValueError, TypeError):  # none yet, or from another version
            return None

    def finished(self, job: Job) -> set[int]:
        names = (PART.fullmatch(p.name) for p in self.folder.iterdir())
        return {int(m.group(1)) for m in names if m is not None and int(m.group(1)) < job.batches}

    def write(self, batch: int, vectors: np.ndarray) -> None:
        _write_atomic(self.part(batch), lambda f: np.save(f, vectors, allow_pickle=False))

    def load(self, job: Job, batch: int) -> np.ndarray:
        try:
            vectors = np.load(self.part(batch), allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(
                f"{self.part(batch)}: unreadable ({err}); delete it and run again"
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != job.rows(batch):
            raise InputError(f"{self.part(batch)}: shape {vectors.shape}, expected "
                             f"{job.rows(batch)} rows; delete it and run again")  # fmt: skip
        return vectors

    def assemble(self, job: Job, output: Path) -> tuple[int, int]:
        """Every part, in batch order, into ``output`` (``.npy`` or ``.parquet`` by suffix),
        atomically; the output's shape."""
        dim = self.load(job, 0).shape[1]

        def parts() -> Iterator[np.ndarray]:
            for batch in range(job.batches):
                vectors = self.load(job, batch)
                if vectors.shape[1] != dim:
                    raise InputError(
                        f"{self.part(batch)}: {vectors.shape[1]} dimensions, batch 0 has "
                        f"{dim}; was the server changed mid-run?"
                    )
                yield vectors

        if output.suffix.lower() == ".parquet":
            _write_atomic(output, lambda f: _write_parquet(f, parts()))
        else:
            _write_atomic(output, lambda f: _write_npy(f, parts(), (job.texts, dim)))
        return job.texts, dim

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _write_npy(f: IO[bytes], parts: Iterator[np.ndarray], shape: tuple[int, int]) -> None:
    """The ``.npy`` header for ``shape`` float32, then each part's bytes: one part in memory
    at a time, however large the output."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)
    for vectors in parts:
        f.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())


def _write_parquet(f: IO[bytes], parts: Iterator[np.ndarray]) -> None:
    """Columns ``index`` (int64, the input row) and ``embedding`` (list<float32>), in row
    groups of about ``ROW_GROUP_ROWS``."""
    pa = require_pyarrow("writing parquet")
    parquet = importlib.import_module("pyarrow.parquet")
    schema = pa.schema([("index", pa.int64()), ("embedding", pa.list_(pa.float32()))])
    pending: list[np.ndarray] = []
    start = 0

    def flush(writer: Any) -> None:
        nonlocal start
        block = np.concatenate(pending)
        pending.clear()
        rows, dim = block.shape
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * dim)
        embedding = pa.ListArray.from_arrays(offsets, pa.array(block.reshape(-1)))
        index = pa.array(np.arange(start, start + rows, dtype=np.int64))
        writer.write_table(pa.Table.from_arrays([index, embedding], schema=schema))
        start += rows

    with parquet.ParquetWriter(f, schema) as writer:
        for vectors in parts:
            pending.append(vectors.astype(np.float32, copy=False))
            if sum(len(p) for p in pending) >= ROW_GROUP_ROWS:
                flush(writer)
        if pending:
            flush(writer)
