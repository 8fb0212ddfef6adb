"""Dynamic batching inside a replica: a token budget, length-sorted micro-batches, a worker per
inference stream.

Every input of every request joins one queue, so a large request cannot hold a batch to itself
and small requests are never stuck behind it. An idle worker takes inputs from the head of the
queue as one batch, capped both by count and by padded tokens (inputs × longest); the batch is
sorted by length and cut into micro-batches that minimise padding, which run one after the
other on the worker's thread. So a worker that frees up takes everything queued meanwhile, up to
the budget (the policy of text-embeddings-inference), and an idle one starts at once, or once
the oldest input has waited ``batch_wait_timeout_s``.

A replica has one worker per inference stream of its backend (``backends.resolve_streams``).
When several are idle, each takes an equal share of the queued tokens, so a burst keeps every
stream busy. A single input that finds every stream idle runs on ``whole`` instead, the model
compiled as one stream on all the threads: it cannot be shared, and all the threads answer it
soonest. Giving ``whole`` every batch that found the streams idle locked a busy replica into
running everything on it (W2 on two cores: 418-477 inputs/s against 525-547 on the streams, with
a tenth of the machine lost to its idle threads spinning).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .backends.base import Backend
from .settings import BatchingConfig


@dataclass(slots=True, eq=False)
class Request:
    """The inputs of one ``submit``, answered together once the last of them has run."""

    done: asyncio.Future[list[ItemResult]]
    pending: int
    submitted: float = field(default_factory=time.perf_counter)
    results: list[ItemResult | None] = field(init=False)

    def __post_init__(self) -> None:
        self.results = [None] * self.pending

    def deliver(self, index: int, result: ItemResult) -> None:
        self.results[index] = result
        self.pending -= 1
        if self.pending == 0 and not self.done.done():
            self.done.set_result(self.results)  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


@dataclass(slots=True)
class Item:
    """One input waiting for inference."""

    ids: np.ndarray  # (T,) int64 token ids
    tokens: bool  # per-token output wanted (/embed_all) instead of the pooled vector
    request: Request
    index: int  # its place in the request


@dataclass(slots=True)
class ItemResult:
    vector: np.ndarray  # (D,) pooled, or (T, D) per token
    started: float  # when its micro-batch started running
    finished: float


@dataclass(frozen=True, slots=True)
class MicroBatchStats:
    worker: str  # the stream's number, or "whole"
    inputs: int
    padded_tokens: int
    real_tokens: int
    seconds: float


def batch_cost(inputs: int, longest: int, slot_tokens: int) -> int:
    """Size of a batch in token units, to compare with ``max_batch_tokens``.

    ``inputs × max(longest, slot_tokens)``, where ``slot_tokens`` is ``max_batch_tokens /
    max_batch_size``, stays within the budget only when padded tokens do and the count stays
    within ``max_batch_size``: one number enforces both limits.
    """
    return inputs * max(longest, slot_tokens)


def plan_micro_batches(lengths: list[int], overhead_tokens: int) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into ``[start, end)`` runs minimising padded tokens + overhead.

    Exact dynamic programme over the sorted order: ``best[j]`` is the cheapest way to run the
    first ``j`` inputs, the last run being ``[i, j)`` padded to ``lengths[j - 1]``.
    """
    n = len(lengths)
    best = [0] + [math.inf] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[j - 1]
        for i in range(j - 1, -1, -1):
            cost = best[i] + (j - i) * width + overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs = []
    j = n
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    return runs[::-1]


def pad(sequences: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad 1-D id arrays into ``(B, T)`` ids and mask."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


@dataclass(eq=False)
class Worker:
    """One inference stream: a backend and the one thread allowed to call it."""

    name: str
    backend: Backend
    thread: ThreadPoolExecutor
    running_since: float | None = None  # start of the micro-batch it runs now


def _worker(backend: Backend, name: str) -> Worker:
    return Worker(
        name, backend, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inference-{name}")
    )


class TokenBudgetBatcher:
    """Owns the backends, a thread each; ``submit`` a request's inputs, await their vectors."""

    def __init__(
        self,
        backends: list[Backend],
        config: BatchingConfig,
        pad_id: int,
        on_micro_batch: Callable[[MicroBatchStats], None] | None = None,
        whole: Backend | None = None,
    ) -> None:
        self.pad_id = pad_id
        self.on_micro_batch = on_micro_batch
        self.queued_inputs = 0
        self.workers = [_worker(backend, str(k)) for k, backend in enumerate(backends)]
        # All the threads in one stream: runs a single input alone while every stream is idle.
        self.whole = None if whole is None else _worker(whole, "whole")
        self._idle = list(self.workers)
        self._whole_running = False
        self._queue: deque[Item] = deque()
        self._queued_tokens = 0  # real tokens in ``_queue``
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.configure(config)

    def configure(self, config: BatchingConfig) -> None:
        """Apply new limits, from the next batch on."""
        self.config = config
        self._slot_tokens = math.ceil(config.max_batch_tokens / config.max_batch_size)

    @property
    def running_since(self) -> float | None:
        """Start of the oldest micro-batch running now; None when every worker is idle."""
        workers = [*self.workers, *([self.whole] if self.whole else [])]
        return min((w.running_since for w in workers if w.running_since is not None), default=None)

    def has_room(self, n_inputs: int) -> bool:
        return self.queued_inputs + n_inputs <= self.config.max_queued_inputs

    async def submit(self, sequences: list[np.ndarray], tokens: bool = False) -> list[ItemResult]:
        """Queue one request's inputs; their results come back in the same order."""
        request = Request(asyncio.get_running_loop().create_future(), len(sequences))
        self._queue.extend(Item(ids, tokens, request, k) for k, ids in enumerate(sequences))
        self._queued_tokens += sum(len(ids) for ids in sequences)
        self.queued_inputs += len(sequences)
        try:
            self._dispatch()
            return await request.done
        finally:
            self.queued_inputs -= len(sequences)

    def _dispatch(self) -> None:
        """Hand queued inputs to idle workers (the policy is in the module docstring)."""
        while self._queue and self._idle and not self._whole_running:
            wait = self._wait_left()
            if wait > 0:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
                return
            idle = len(self._idle)
            items = self._take(math.ceil(self._queued_tokens / idle))
            if not items:  # their callers were gone
                continue
            alone = len(items) == 1 and not self._queue
            if self.whole is not None and idle == len(self.workers) and alone:
                self._whole_running = True
                worker = self.whole
            else:
                worker = self._idle.pop()
            task = asyncio.create_task(self._work(worker, items))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _wait_left(self) -> float:
        """Seconds idle workers still wait for more inputs: none once the oldest has waited
        ``batch_wait_timeout_s`` or a full batch is queued."""
        config = self.config
        full = (
            len(self._queue) >= config.max_batch_size
            or self._queued_tokens >= config.max_batch_tokens
        )
        if config.batch_wait_timeout_s <= 0 or full:
            return 0.0
        return self._queue[0].request.submitted + config.batch_wait_timeout_s - time.perf_counter()

    def _take(self, share_tokens: int) -> list[Item]:
        """Inputs from the head of the queue: about ``share_tokens`` real tokens, never past
        ``max_batch_tokens`` (``batch_cost``), at least one."""
        taken: list[Item] = []
        real = longest = 0
        while self._queue and real < share_tokens:
            item = self._queue[0]
            n = len(item.ids)
            cost = batch_cost(len(taken) + 1, max(longest, n), self._slot_tokens)
            if taken and cost > self.config.max_batch_tokens:
                break
            self._queue.popleft()
            self._queued_tokens -= n
            if item.request.done.done():  # its caller is gone, or another input failed
                continue
            taken.append(item)
            real, longest = real + n, max(longest, n)
        return taken

    async def _work(self, worker: Worker, items: list[Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(worker.thread, self._run, worker, items)
        except Exception as exc:  # the callers get the error; the worker goes on
            for item in items:
                item.request.fail(exc)
        else:
            for item, result in zip(items, results, strict=True):
                item.request.deliver(item.index, result)
        finally:
            if worker is self.whole:
                self._whole_running = False
            else:
                self._idle.append(worker)
            self._dispatch()

    def _run(self, worker: Worker, items: list[Item]) -> list[ItemResult]:
        """On the worker's thread: sort, cut, run, and hand results back in input order."""
        results: list[ItemResult | None] = [None] * len(items)
        for want_tokens in (False, True):
            group = [i for i, item in enumerate(items) if item.tokens == want_tokens]
            group.sort(key=lambda i: len(items[i].ids))
            lengths = [len(items[i].ids) for i in group]
            for start, end in plan_micro_batches(lengths, self.config.micro_batch_overhead_tokens):
                members = group[start:end]
                ids, mask = pad([items[i].ids for i in members], self.pad_id)
                began = worker.running_since = time.perf_counter()
                run = worker.backend.run_tokens if want_tokens else worker.backend.run
                try:
                    out = run(ids, mask)
                finally:
                    worker.running_since = None
                done = time.perf_counter()
                for row, i in enumerate(members):
                    vector = out[row, : lengths[start + row]] if want_tokens else out[row]
                    results[i] = ItemResult(vector, began, done)
                if self.on_micro_batch is not None:
                    self.on_micro_batch(
                        MicroBatchStats(
                            worker.name,
                            len(members),
                            ids.size,
                            int(sum(lengths[start:end])),
                            done - began,
                        )
                    )
        return results  # type: ignore[return-value]
