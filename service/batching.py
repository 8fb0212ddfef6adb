"""Dynamic batching inside a replica: a token budget, length-sorted micro-batches, one worker.

Each input of each request is one item of Ray Serve's ``@serve.batch`` queue, so a large request
cannot hold a batch to itself and small requests are never stuck behind it. A gathered batch is
capped both by count and by padded tokens (inputs × longest); it is then sorted by length and cut
into micro-batches that minimise padding, which run one after the other on the inference thread.

Ray gathers the next batch while the previous one runs, after a fixed wait: on a busy replica that
makes many small batches queue up behind the worker. So gathered batches are parked, and whenever
a worker frees up it takes everything parked, up to the token budget, as one batch (the policy
of text-embeddings-inference): an idle worker starts at once, a busy one gets full batches.
A replica has one worker per inference stream of its backend (``backends.resolve_streams``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ray import serve

from .backends.base import Backend
from .settings import BatchingConfig


def _not_ray_batch_size_warning(record: logging.LogRecord) -> bool:
    """Ray compares ``max_batch_size`` with ``max_ongoing_requests`` as if both counted requests;
    ours counts tokens (``batch_cost``), so that warning would always fire, and always wrongly."""
    return "will never achieve the configured `max_batch_size`" not in record.getMessage()


logging.getLogger("ray.serve").addFilter(_not_ray_batch_size_warning)


@dataclass(slots=True)
class Item:
    """One input waiting for inference."""

    ids: np.ndarray  # (T,) int64 token ids
    tokens: bool  # per-token output wanted (/embed_all) instead of the pooled vector
    slot_tokens: int  # budget / max_batch_size when queued: makes the count cap a token cap
    submitted: float


@dataclass(slots=True)
class ItemResult:
    vector: np.ndarray  # (D,) pooled, or (T, D) per token
    started: float  # when its micro-batch started running
    finished: float


@dataclass(slots=True)
class Parked:
    """A batch Ray gathered, waiting for the worker."""

    items: list[Item]
    done: asyncio.Future[list[ItemResult]]


@dataclass(frozen=True, slots=True)
class MicroBatchStats:
    inputs: int
    padded_tokens: int
    real_tokens: int
    seconds: float


def batch_cost(items: list[Item]) -> int:
    """Size of a gathered batch in token units, to compare with ``max_batch_tokens``.

    ``n × max(longest, slot_tokens)`` stays within the budget only when padded tokens do and
    ``n`` stays within ``max_batch_size``: one number enforces both limits.
    """
    longest = max(len(item.ids) for item in items)
    return len(items) * max(longest, items[0].slot_tokens)


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

    backend: Backend
    thread: ThreadPoolExecutor
    running_since: float | None = None  # start of the micro-batch it runs now


def _worker(backend: Backend, name: str) -> Worker:
    return Worker(
        backend, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inference-{name}")
    )


class TokenBudgetBatcher:
    """Owns the backends, a thread each; ``submit`` one input, await its vector."""

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
        # All the threads in one stream: runs a batch alone while every stream is idle.
        self.whole = None if whole is None else _worker(whole, "whole")
        self._idle = list(self.workers)
        self._whole_running = False
        self._parked: deque[Parked] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self.configure(config)

    def configure(self, config: BatchingConfig) -> None:
        """Apply new limits; batches already gathered keep theirs."""
        self.config = config
        self._slot_tokens = math.ceil(config.max_batch_tokens / config.max_batch_size)
        self._gather.set_max_batch_size(config.max_batch_tokens)
        self._gather.set_batch_wait_timeout_s(config.batch_wait_timeout_s)

    @property
    def running_since(self) -> float | None:
        """Start of the oldest micro-batch running now; None when every worker is idle."""
        workers = [*self.workers, *([self.whole] if self.whole else [])]
        return min((w.running_since for w in workers if w.running_since is not None), default=None)

    def has_room(self, n_inputs: int) -> bool:
        return self.queued_inputs + n_inputs <= self.config.max_queued_inputs

    async def submit(self, ids: np.ndarray, tokens: bool = False) -> ItemResult:
        item = Item(ids, tokens, self._slot_tokens, time.perf_counter())
        self.queued_inputs += 1
        try:
            return await self._gather(item)
        finally:
            self.queued_inputs -= 1

    # Every gathered batch goes straight on to be parked: Ray's per-batch semaphore must not
    # hold any back, so its bound is set beyond the most inputs a replica ever queues.
    @serve.batch(
        max_batch_size=16384,
        batch_wait_timeout_s=0.0,
        batch_size_fn=batch_cost,
        max_concurrent_batches=1 << 30,
    )
    async def _gather(self, items: list[Item]) -> list[ItemResult]:
        parked = Parked(items, asyncio.get_running_loop().create_future())
        self._parked.append(parked)
        self._dispatch()
        return await parked.done

    def _dispatch(self) -> None:
        """Hand parked batches to idle workers, each taking all that fits the token budget.

        A batch that finds every stream idle and nothing behind it runs on ``whole`` instead,
        and the streams wait for it: all the threads on one batch answer it soonest.
        """
        while self._parked and self._idle and not self._whole_running:
            taken = [p for p in self._take() if not p.done.done()]  # done: caller gone
            if not taken:
                continue
            alone = len(self._idle) == len(self.workers) and not self._parked
            if self.whole is not None and alone:
                self._whole_running = True
                worker = self.whole
            else:
                worker = self._idle.pop()
            task = asyncio.create_task(self._work(worker, taken))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _work(self, worker: Worker, taken: list[Parked]) -> None:
        items = [item for parked in taken for item in parked.items]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(worker.thread, self._run, worker, items)
        except Exception as exc:  # the callers get the error; the worker goes on
            for parked in taken:
                if not parked.done.done():
                    parked.done.set_exception(exc)
        else:
            start = 0
            for parked in taken:
                end = start + len(parked.items)
                if not parked.done.done():
                    parked.done.set_result(results[start:end])
                start = end
        finally:
            if worker is self.whole:
                self._whole_running = False
            else:
                self._idle.append(worker)
            self._dispatch()

    def _take(self) -> list[Parked]:
        """The oldest parked batch and as many following ones as fit ``max_batch_tokens``."""
        taken = [self._parked.popleft()]
        items = list(taken[0].items)
        while self._parked:
            merged = items + self._parked[0].items
            if batch_cost(merged) > self.config.max_batch_tokens:
                break
            items = merged
            taken.append(self._parked.popleft())
        return taken

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
                            len(members), ids.size, int(sum(lengths[start:end])), done - began
                        )
                    )
        return results  # type: ignore[return-value]
