"""One served artifact: its tokenizer, backends, batcher, health probe and description.

A replica holds one per model it serves (``service.engine``); requests reach it only through a
task's pipeline (``service.tasks``), which checks them first. What it serves follows from the
artifact's task: an embedder embeds, a reranker (one label) reranks and predicts, a classifier
predicts. Blocking work runs on threads of
its own, not on the event loop: tokenizing on the model's tokenizer thread (a request of a few
short texts is tokenized in place, cheaper than the hop: ``INLINE_TOKENIZE_CHARS``), inference
on the batcher's workers. Inputs it has answered before come from its cache (``service.cache``)
without queueing; a request's repeated inputs run once.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from export.artifact import Artifact
from models.tokenizer import Token, Tokenizer, TruncationSide

from .backends import create_backends
from .backends.base import Output, warm_up
from .batching import DeadlineExceeded, QueueFull, TokenBudgetBatcher
from .cache import MIB, VectorCache
from .chunking import Chunker, Framing
from .compact import Compactor
from .errors import ApiError
from .metrics import Metrics
from .protocol import Limit, LimitValue
from .settings import BatchingConfig, ServiceSettings

if TYPE_CHECKING:
    from .tasks import Task

T = TypeVar("T")
X = TypeVar("X")
Out = TypeVar("Out")
# The pipeline tasks an artifact's task serves (TEI: a reranker answers /predict too).
TASKS_OF: dict[str, tuple[Task, ...]] = {
    "embedding": ("embed", "embed_tokens"),
    "rerank": ("rerank", "predict"),
    "classify": ("predict",),
}
# Texts per job on the tokenizer thread: a large request is tokenized a chunk at a time, so a
# small request that arrives meanwhile waits for one chunk (a few ms), not the whole request.
TOKENIZE_CHUNK = 32
# A request of at most this many characters is tokenized on the event loop: the hop to the
# tokenizer thread and back (two thread wake-ups) cost a served sentence far more than its
# tokenizing (19 us for 19 characters, ~110 us for 256; a 1228-character passage 680 us, too
# long to hold the loop). W1 served p50 and the tokenize stage: docs/benchmarks.md.
INLINE_TOKENIZE_CHARS = 256
# What text-embeddings-inference answers for a prompt_name the model lacks: its tokenizer
# raises TextEmbeddingsError::Validation (core/src/tokenization.rs, prepare_pre_prompt), which
# router/src/http/server.rs (impl From<&ErrorType> for StatusCode) maps to 422 Unprocessable
# Entity since TEI PR #818 "Fix HTTP error code for validation" (413 before it).
TEI_VALIDATION_STATUS = 422


@dataclass(frozen=True)
class Result(Generic[Out]):
    """A request's answer: its outputs in input order, and what it cost."""

    outputs: Out  # the backend output's row per input, then what a task's post makes of them
    token_count: int  # real tokens of its inputs
    queue_s: float
    inference_s: float
    cached: int = 0  # inputs answered without running them (``service.cache``)


def deadline_exceeded() -> ApiError:
    return ApiError(
        504, "the request's deadline passed before its inputs could run", code="deadline_exceeded"
    )


def _characters(texts: Sequence[object]) -> int:
    """Characters of texts and (query, document) pairs, counted up to the inline bound."""
    total = 0
    for item in texts:
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, tuple):
            total += sum(len(text) for text in item)
        if total > INLINE_TOKENIZE_CHARS:
            break
    return total


class ServedModel:
    def __init__(
        self,
        settings: ServiceSettings,
        artifact: Artifact,
        metrics: Metrics,
        name: str | None = None,
    ) -> None:
        config = artifact.config
        self.settings = settings
        self.artifact = artifact
        self.name = name or settings.model_name or config.model_name
        self.aliases = frozenset({self.name, config.model_name})  # what a request may call it
        self.task = config.task  # embedding, rerank or classify
        self.tasks = TASKS_OF[config.task]
        self.labels = config.labels  # a classifier's, in id order; none for an embedder
        # The graph output every task of this model reads, and warm-up and health probes run.
        self.output: Output = "sentence_embedding" if self.task == "embedding" else "logits"
        self.dimension = config.dimension  # a classifier's: its number of labels
        self.max_length = config.max_seq_length
        self.vocab_size = config.vocab_size
        self.max_inputs = settings.max_inputs
        self.prompts = config.prompts
        self.default_prompt_name = config.default_prompt_name
        # A real token for warm-up and health probes: the one after padding (any id would do,
        # but not one past the vocabulary, whichever id a family pads with).
        self.probe_id = (config.pad_token_id + 1) % config.vocab_size
        # An artifact without a tokenizer (a random-config model) serves token ids only.
        path = artifact.tokenizer_path
        self.tokenizer = (
            Tokenizer(path, self.max_length, config.pad_token_id) if path is not None else None
        )
        self.backends = create_backends(settings, artifact)
        for backend in [*self.backends.streams, self.backends.whole]:
            if backend is not None:
                warm_up(backend, self.max_length, self.probe_id, self.output)
        self.batcher = TokenBudgetBatcher(
            self.backends.streams,
            settings.batching,
            config.pad_token_id,
            metrics.micro_batch_observer(self.name),
            whole=self.backends.whole,
            on_drop=metrics.drop_observer(self.name),
        )
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        cache_bytes = int(settings.cache_mb * MIB)
        self.cache = VectorCache(cache_bytes, metrics.cache(self.name)) if cache_bytes > 0 else None
        self.chunker = Chunker(self.max_length, settings.chunk_overlap, settings.max_windows)
        self._frames: dict[str, Framing] = {}
        self.chunker.check(self.framing(""))  # the unprompted frame, kept for requests
        self.compactor = Compactor.from_artifact(artifact)

    @property
    def limits(self) -> dict[Limit, LimitValue]:
        """The bounds its requests are checked against, for the API document."""
        return {
            "vocabulary": self.vocab_size - 1,
            "dimension": self.dimension,
            "inputs": self.max_inputs,
            "prompts": sorted(self.prompts),
        }

    def close(self) -> None:
        """Stop its threads. A replica's end with its process; a test's process builds many."""
        self._tokenizer_thread.shutdown(wait=True, cancel_futures=True)
        self.batcher.close()

    def reconfigure(self, batching: BatchingConfig) -> None:
        if batching.max_batch_tokens < self.max_length:
            raise ValueError(
                f"max_batch_tokens ({batching.max_batch_tokens}) must hold one input of the "
                f"model's max length ({self.max_length})"
            )
        self.batcher.configure(batching)

    def prompt(self, name: str | None) -> str:
        """The text put before each input (sentence-transformers' ``prompt + text``): the
        prompt called ``name``, else the default prompt, else none. An unknown name is the
        client's mistake: 400 here, 422 on the TEI routes (``TEI_VALIDATION_STATUS``)."""
        if name is None:
            default = self.default_prompt_name
            return "" if default is None else self.prompts[default]
        if name not in self.prompts:
            known = ", ".join(repr(n) for n in sorted(self.prompts))
            has = f"its prompts are {known}" if known else "it has no prompts"
            raise ApiError(
                400, f"model {self.name!r} has no prompt {name!r}: {has}", "prompt_name",
                "unknown_prompt", tei_status=TEI_VALIDATION_STATUS,
            )  # fmt: skip
        return self.prompts[name]

    def framing(self, prompt: str) -> Framing:
        """The special tokens around an input and ``prompt``'s own ids (``service.chunking``);
        none for a model without a tokenizer (its clients' ids are windowed as they are)."""
        if prompt not in self._frames:
            framing = Framing.around(self.tokenizer)
            if self.tokenizer is not None and prompt:
                ids = self.tokenizer.tokenize([prompt])[0]
                text = ids[len(framing.lead) : len(ids) - len(framing.trail)]
                framing = Framing(framing.lead, np.asarray(text, np.int64), framing.trail)
            self._frames[prompt] = framing
        return self._frames[prompt]

    async def tokenize(self, texts: list[str], side: TruncationSide, limit: int) -> list[list[int]]:
        """Token ids per text, cut to at most ``limit``."""
        work = partial(self.require_tokenizer().tokenize, side=side, limit=limit)
        return await self._on_tokenizer_thread(work, texts)

    async def tokenize_pairs(
        self, pairs: list[tuple[str, str]], side: TruncationSide, limit: int
    ) -> list[list[int]]:
        """Token ids per (query, document) pair in the tokenizer's pair template, cut to at
        most ``limit`` the way transformers cuts pairs (the longer side first)."""
        work = partial(self.require_tokenizer().tokenize_pairs, side=side, limit=limit)
        return await self._on_tokenizer_thread(work, pairs)

    async def token_details(self, texts: list[str], add_special_tokens: bool) -> list[list[Token]]:
        """Each text's tokens with their text and character offsets."""
        work = partial(self.require_tokenizer().tokens, add_special_tokens=add_special_tokens)
        return await self._on_tokenizer_thread(work, texts)

    async def _on_tokenizer_thread(
        self, work: Callable[[list[X]], list[T]], texts: Sequence[X]
    ) -> list[T]:
        """``work(texts)`` on the tokenizer thread, ``TOKENIZE_CHUNK`` texts (or pairs) a job;
        inline for a request short enough (``INLINE_TOKENIZE_CHARS``)."""
        if _characters(texts) <= INLINE_TOKENIZE_CHARS:
            return work(list(texts))
        loop = asyncio.get_running_loop()
        out: list[T] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            chunk = list(texts[start : start + TOKENIZE_CHUNK])
            out += await loop.run_in_executor(self._tokenizer_thread, work, chunk)
        return out

    def require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ApiError(
                400, "this model was exported without a tokenizer: send token ids", "input"
            )
        return self.tokenizer

    async def run(
        self, sequences: list[np.ndarray], output: Output, deadline: float | None = None
    ) -> Result[list[np.ndarray]]:
        """Every input's ``output``, in order: from the cache where it holds them, the distinct
        rest (each once) through the shared batcher, then kept.

        ``deadline`` is a ``time.perf_counter()`` time: past it, queued inputs are dropped (504).
        """
        cache = self.cache
        if cache is None:
            return await self._compute(sequences, output, deadline)
        if deadline is not None and time.perf_counter() >= deadline:
            raise deadline_exceeded()  # as a miss would be: dropped from the queue
        lookup = cache.lookup(output, sequences)
        todo = lookup.first_indices()
        token_count = int(sum(len(s) for s in sequences))
        if not todo:  # every input answered from memory: nothing queued, nothing ran
            outputs = cache.store(lookup, [])
            return Result(outputs, token_count, 0.0, 0.0, cached=len(sequences))
        ran = await self._compute([sequences[i] for i in todo], output, deadline)
        outputs = cache.store(lookup, ran.outputs)
        cached = len(sequences) - len(todo)
        return Result(outputs, token_count, ran.queue_s, ran.inference_s, cached=cached)

    async def _compute(
        self, sequences: list[np.ndarray], output: Output, deadline: float | None
    ) -> Result[list[np.ndarray]]:
        """Every input's ``output`` through the shared batcher, gathered in order."""
        start = time.perf_counter()
        try:
            results = await self.batcher.submit(sequences, output, deadline)
        except QueueFull as full:
            raise ApiError(
                429,
                "the server is busy: too much work queued, retry after the Retry-After seconds",
                code="queue_full",
                headers={"Retry-After": str(max(1, math.ceil(full.retry_after_s)))},
            ) from None
        except DeadlineExceeded:
            raise deadline_exceeded() from None
        first = min(r.started for r in results)
        return Result(
            outputs=[r.vector for r in results],
            token_count=int(sum(len(s) for s in sequences)),
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
        probe = np.asarray([self.probe_id], dtype=np.int64)
        try:
            submitted = self.batcher.submit([probe], self.output, probe=True)
            [result] = await asyncio.wait_for(submitted, timeout_s)
        except Exception:
            return False
        return bool(np.isfinite(result.vector).all())

    def info(self) -> dict[str, object]:
        settings = self.settings
        return {
            "model_id": self.name,
            "task": self.task,
            "labels": self.labels,
            "process": os.getpid(),
            "dimension": self.dimension,
            "max_input_length": self.max_length,
            "pooling": self.artifact.config.pooling,
            "normalized_by_default": self.task == "embedding",
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "backend": {
                "name": self.backends.choice.backend,
                "precision": self.backends.choice.precision,
                "reason": self.backends.choice.reason,
                "streams": len(self.backends.streams),
                "whole_for_lone_inputs": self.backends.whole is not None,
                **self.backends.streams[0].describe(),
            },
            "batching": self.batcher.config.model_dump(),
            # This replica's cache of this model (service.cache); null: cache_mb 0.
            "cache": None if self.cache is None else self.cache.describe(),
            # Compact vectors (service.compact): the embedding types it answers.
            "compact": self.compactor.describe(),
            "limits": {
                "max_inputs": settings.max_inputs,
                "max_body_bytes": settings.max_body_bytes,
                "max_ongoing_requests": settings.max_ongoing_requests,
                "max_queued_requests": settings.max_queued_requests,
                "truncate_by_default": settings.truncate,
                "chunk_overlap": settings.chunk_overlap,
                "max_windows": settings.max_windows,
            },
        }

    def card(self) -> dict[str, object]:
        """The model as an entry of OpenAI's model list."""
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "embedserve"}
