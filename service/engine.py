"""Everything a replica does between HTTP and the backend: tokenize, check, batch, time.

Kept free of HTTP so the routes stay thin; blocking work (tokenizing, inference) runs on worker
threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from export.artifact import Artifact, load_artifact
from models.tokenizer import Token, Tokenizer, TruncationSide

from . import metrics
from .backends import create_backends
from .backends.base import warm_up
from .batching import DeadlineExceeded, QueueFull, TokenBudgetBatcher
from .errors import ApiError
from .settings import BatchingConfig, ServiceSettings

T = TypeVar("T")
# Texts per job on the tokenizer thread: a large request is tokenized a chunk at a time, so a
# small request that arrives meanwhile waits for one chunk (a few ms), not the whole request.
TOKENIZE_CHUNK = 32
# Without truncation, an over-long input is counted up to this many times the model's limit, so
# its 413 says how long it is without tokenizing megabytes.
COUNT_LIMIT_FACTOR = 4


@dataclass(frozen=True)
class Embedded:
    vectors: list[np.ndarray]  # per input: (D,) pooled or (T, D) per token
    tokens: int  # real tokens embedded
    queue_s: float
    inference_s: float


class Embedder:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.artifact: Artifact = load_artifact(settings.artifact)
        config = self.artifact.config
        self.model_name = settings.model_name or config.model_name
        self.dimension = config.dimension
        self.max_length = config.max_seq_length
        self.vocab_size = config.vocab_size
        # An artifact without a tokenizer (a random-config model) serves token ids only.
        path = self.artifact.tokenizer_path
        self.tokenizer = Tokenizer(path, self.max_length) if path is not None else None
        self.backends = create_backends(settings, self.artifact)
        for backend in [*self.backends.streams, self.backends.whole]:
            if backend is not None:
                warm_up(backend, self.max_length, config.pad_token_id)
        self.batcher = TokenBudgetBatcher(
            self.backends.streams,
            settings.batching,
            config.pad_token_id,
            metrics.observe_micro_batch,
            whole=self.backends.whole,
            on_drop=metrics.observe_dropped,
        )
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")

    def reconfigure(self, batching: BatchingConfig) -> None:
        if batching.max_batch_tokens < self.max_length:
            raise ValueError(
                f"max_batch_tokens ({batching.max_batch_tokens}) must hold one input of the "
                f"model's max length ({self.max_length})"
            )
        self.batcher.configure(batching)

    async def tokenize(
        self, texts: list[str], truncate: bool, side: TruncationSide
    ) -> list[np.ndarray]:
        """Token ids per text; over-long texts are cut, or refused (413) with truncate=False."""
        tokenizer = self._require_tokenizer()
        limit = self.max_length if truncate else self.max_length * COUNT_LIMIT_FACTOR + 1
        work = partial(tokenizer.tokenize, side=side, limit=limit)
        ids = await self._on_tokenizer_thread(work, texts)
        if not truncate:
            self._reject_long(ids)
        return [np.asarray(seq, dtype=np.int64) for seq in ids]

    async def tokens(self, texts: list[str], add_special_tokens: bool) -> list[list[Token]]:
        tokenizer = self._require_tokenizer()
        work = partial(tokenizer.tokens, add_special_tokens=add_special_tokens)
        return await self._on_tokenizer_thread(work, texts)

    async def _on_tokenizer_thread(
        self, work: Callable[[list[str]], list[T]], texts: list[str]
    ) -> list[T]:
        """``work(texts)`` on the tokenizer thread, ``TOKENIZE_CHUNK`` texts a job."""
        loop = asyncio.get_running_loop()
        out: list[T] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            chunk = texts[start : start + TOKENIZE_CHUNK]
            out += await loop.run_in_executor(self._tokenizer_thread, work, chunk)
        return out

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ApiError(
                400, "this model was exported without a tokenizer: send token ids", "input"
            )
        return self.tokenizer

    def token_ids(
        self, sequences: list[list[int]], truncate: bool, side: TruncationSide
    ) -> list[np.ndarray]:
        """Client-supplied ids: checked against the vocabulary, cut or rejected when too long."""
        arrays = []
        for index, seq in enumerate(sequences):
            if not seq:
                raise ApiError(
                    400, f"input[{index}] is an empty token list", "input", "empty_input"
                )
            try:
                array = np.asarray(seq, dtype=np.int64)
                known = array.min() >= 0 and array.max() < self.vocab_size
            except OverflowError:  # JSON allows ids past int64
                known = False
            if not known:
                raise ApiError(
                    400,
                    f"input[{index}] has token ids outside the vocabulary 0..{self.vocab_size - 1}",
                    "input",
                    "invalid_token_id",
                )
            arrays.append(array)
        if not truncate:
            self._reject_long(arrays)
            return arrays
        n = self.max_length
        return [a[:n] if side == "right" else a[-n:] for a in arrays]

    def _reject_long(self, sequences: list) -> None:
        counted = self.max_length * COUNT_LIMIT_FACTOR
        for index, seq in enumerate(sequences):
            if len(seq) > self.max_length:
                size = f"more than {counted}" if len(seq) > counted else str(len(seq))
                raise ApiError(
                    413,
                    f"input[{index}] has {size} tokens; the model takes at most "
                    f"{self.max_length} (send truncate=true to cut it)",
                    "input",
                    "input_too_long",
                )

    async def embed(
        self, sequences: list[np.ndarray], per_token: bool = False, deadline: float | None = None
    ) -> Embedded:
        """Run every input through the shared batcher and gather the answers in order.

        ``deadline`` is a ``time.perf_counter()`` time: past it, queued inputs are dropped (504).
        """
        start = time.perf_counter()
        metrics.QUEUE_DEPTH.inc(len(sequences))
        try:
            results = await self.batcher.submit(sequences, per_token, deadline)
        except QueueFull as full:
            raise ApiError(
                429,
                "the server is busy: too much work queued, retry after the Retry-After seconds",
                code="queue_full",
                headers={"Retry-After": str(max(1, math.ceil(full.retry_after_s)))},
            ) from None
        except DeadlineExceeded:
            raise ApiError(
                504,
                "the request's deadline passed before its inputs could run",
                code="deadline_exceeded",
            ) from None
        finally:
            metrics.QUEUE_DEPTH.dec(len(sequences))
        first = min(r.started for r in results)
        return Embedded(
            vectors=[r.vector for r in results],
            tokens=int(sum(len(s) for s in sequences)),
            queue_s=max(0.0, first - start),
            inference_s=max(r.finished for r in results) - first,
        )

    async def healthy(self, timeout_s: float = 10.0, stall_s: float = 60.0) -> bool:
        """True when the model answers: a one-token probe when idle, progress when busy.

        A busy replica is not probed through its own queue: under load the probe would wait
        behind real work, fail, and get a healthy replica restarted. A micro-batch running for
        longer than ``stall_s`` means the backend is stuck.
        """
        if self.batcher.running_since is not None or self.batcher.queued_inputs > 0:
            return not self.batcher.stuck(stall_s)
        probe = np.asarray([self.artifact.config.pad_token_id + 1], dtype=np.int64)
        try:
            submitted = self.batcher.submit([probe], probe=True)
            [result] = await asyncio.wait_for(submitted, timeout_s)
        except Exception:
            return False
        return bool(np.isfinite(result.vector).all())

    def info(self) -> dict[str, object]:
        return {
            "model_id": self.model_name,
            "process": os.getpid(),
            "dimension": self.dimension,
            "max_input_length": self.max_length,
            "pooling": self.artifact.config.pooling,
            "normalized_by_default": True,
            "backend": {
                "name": self.backends.choice.backend,
                "precision": self.backends.choice.precision,
                "reason": self.backends.choice.reason,
                "streams": len(self.backends.streams),
                "whole_for_lone_inputs": self.backends.whole is not None,
                **self.backends.streams[0].describe(),
            },
            "batching": self.batcher.config.model_dump(),
            "limits": {
                "max_inputs": self.settings.max_inputs,
                "max_body_bytes": self.settings.max_body_bytes,
                "max_ongoing_requests": self.settings.max_ongoing_requests,
                "max_queued_requests": self.settings.max_queued_requests,
                "truncate_by_default": self.settings.truncate,
            },
        }
