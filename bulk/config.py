"""What one bulk run is: a typed, frozen description built once by the CLI (defaults here,
overridden by flags and, for the key only, the environment) and passed everywhere else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Encoding = Literal["base64", "float"]
ENCODINGS: tuple[Encoding, ...] = ("base64", "float")
INPUT_SUFFIXES = (".txt", ".jsonl", ".ndjson", ".parquet")
OUTPUT_SUFFIXES = (".npy", ".parquet")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When a batch is sent again, and how long the client waits first.

    Every request is idempotent (a batch is re-sent whole and its answer replaces nothing), so a
    429, a 5xx, a timeout or a dropped connection is retried; the wait is the server's own
    ``Retry-After`` where it gives one (429 and 503 carry it on our service), else exponential
    backoff with jitter so that clients that failed together do not come back together.
    """

    max_retries: int = 10  # per batch; 429s count too, so a server that never recovers ends it
    backoff_base_s: float = 0.5  # first backoff; doubles per retry of the same batch
    backoff_max_s: float = 30.0
    # A Retry-After is obeyed up to this: a misconfigured server asking for an hour fails the run
    # (after max_retries) instead of stalling it silently.
    retry_after_max_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.backoff_base_s <= self.backoff_max_s:
            raise ValueError("backoff needs 0 < backoff_base_s <= backoff_max_s")


@dataclass(frozen=True, kw_only=True)
class BulkConfig:
    """One bulk run: which file, which server, how to send, where the vectors go."""

    input: Path
    output: Path
    # The server's base URL (``http://host:8000``), OpenAI's base URL (``.../v1``) or the full
    # ``.../v1/embeddings`` endpoint: all three name the same route.
    url: str = "http://127.0.0.1:8000"
    model: str | None = None  # omitted from the body when None: the server's default model
    dimensions: int | None = None
    # base64: float32 little-endian bytes, a third of the JSON floats' size and exact; "float"
    # for servers that do not implement it.
    encoding: Encoding = "base64"
    field: str = "text"  # the texts' key in a .jsonl record
    column: str = "text"  # the texts' column in a .parquet input
    # 64: our service's max_batch_size, so one request is one server batch; also the unit of
    # progress and of resumption (batch k is always texts [k*64, (k+1)*64)).
    batch_size: int = 64
    concurrency: int = 4  # requests in flight: W2's clients, enough to keep a replica busy
    timeout_s: float = 300.0  # per request: our service's default request deadline
    retry: RetryPolicy = RetryPolicy()
    api_key: str | None = dataclasses.field(default=None, repr=False)
    restart: bool = False  # discard a previous run's finished batches instead of resuming
    progress_every_s: float = 5.0  # progress lines when stderr is not a terminal

    def __post_init__(self) -> None:
        if self.input.suffix.lower() not in INPUT_SUFFIXES:
            raise ValueError(
                f"{self.input}: unsupported input type {self.input.suffix!r}; "
                f"use one of {', '.join(INPUT_SUFFIXES)}"
            )
        if self.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(
                f"{self.output}: the output must end in {' or '.join(OUTPUT_SUFFIXES)} "
                "(the suffix picks the format)"
            )
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        if self.dimensions is not None and self.dimensions < 1:
            raise ValueError(f"dimensions must be at least 1, got {self.dimensions}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @property
    def endpoint(self) -> str:
        """The embeddings route's URL, whichever of the three forms ``url`` has."""
        base = self.url.rstrip("/")
        if base.endswith("/embeddings"):
            return base
        return f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"

    @property
    def parts(self) -> Path:
        """Where finished batches wait to be assembled: beside the output, on its filesystem,
        so that ``os.replace`` into it is atomic."""
        return self.output.with_name(self.output.name + ".parts")
