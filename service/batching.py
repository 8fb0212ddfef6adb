"""Dynamic batching inside a replica: fair shares between requests, a token budget per step,
length-sorted micro-batches, a worker per inference stream, admission control and deadlines.

Each request's inputs wait in a queue of their own. An idle worker takes one *step* of work,
capped both by count and by padded tokens (inputs × longest, ``max_batch_tokens``), sorts it by
length and cuts it into micro-batches that minimise padding, which run one after the other on
its thread; each micro-batch's answers go back as soon as it ends. The step takes one input of
the oldest request (so a large request always progresses, whatever keeps arriving), then fills
up request by request in order of *virtual finish*: arrival + ``SLOWDOWN`` × the request's time
alone (its tokens at the replica's measured speed). A sentence that arrives while a bulk request
runs goes ahead of it unless the bulk request has already run ``SLOWDOWN`` times as long as it
would alone; similar requests go oldest first, as in a FIFO; and no request is overtaken for
ever. Inputs of different requests still share micro-batches. A newly arrived small request
therefore waits for about one step of a busy worker: one FIFO queue kept a sentence 18.4 s
behind a 1024-passage request. Fewest tokens left first (no ageing) let a 32-sentence request
wait 30 s behind slightly smaller ones in a 3× overload.

A replica has one worker per inference stream of its backend (``backends.resolve_streams``).
When several are idle, each takes an equal share of the queued tokens, so a burst keeps every
stream busy. A single input that finds every stream idle runs on ``whole`` instead, the model
compiled as one stream on all the threads: it cannot be shared, and all the threads answer it
soonest. Giving ``whole`` every batch that found the streams idle locked a busy replica into
running everything on it (W2 on two cores: 418-477 inputs/s against 525-547 on the streams, with
a tenth of the machine lost to its idle threads spinning).

Admission: a request is refused (``QueueFull``) when the work queued ahead of it would keep it
waiting more than ``max_queue_wait_s``, from the tokens per second the replica has been running.
Under fair shares what is ahead of a request of ``n`` tokens is at most ``n`` tokens of every
other request, so a sentence is admitted beside a bulk request that a second bulk request would
wait behind. Inputs still queued when their request's deadline passes, or when its caller goes,
are dropped before inference (``on_drop``); the request fails with ``DeadlineExceeded``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from common.arrays import pad

from .backends.base import Backend, Output
from .settings import BatchingConfig

DropReason = Literal["client_gone", "deadline"]
# Decay per micro-batch of the running sums behind the drain rate: about the last ten count.
RATE_DECAY = 0.9
# Micro-batches of fewer real tokens are mostly per-call overhead and say little of how fast a
# queue drains: a one-token health probe measured 333 tokens/s on a replica that runs 10k.
RATE_MIN_TOKENS = 256
# How many times its time alone a request may take before smaller ones stop overtaking it.
SLOWDOWN = 4.0


class QueueFull(Exception):
    """Admission refused: the work queued ahead would keep the request waiting too long."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the work queued ahead drains in about {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """The request's deadline passed while some of its inputs were still queued."""


@dataclass(slots=True)
class Item:
    """One input waiting for inference."""

    ids: np.ndarray  # (T,) int64 token ids
    request: Request
    index: int  # its place in the request
    output: Output  # the backend output it wants


@dataclass(slots=True, eq=False)
class Request:
    """The inputs of one ``submit``: those not yet taken by a worker wait in ``items``; the
    request is answered together once the last of them has run."""

    done: asyncio.Future[list[ItemResult]]
    pending: int  # inputs not yet answered
    probe: bool = False  # a health probe: runs like any request, kept out of the metrics
    items: deque[Item] = field(default_factory=deque)
    token_count: int = 0  # real tokens of all its inputs
    queued_tokens: int = 0  # real tokens in ``items``
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
class ItemResult:
    vector: np.ndarray  # its row of the output: (D,) pooled, or (T, D) per token
    started: float  # when its micro-batch started running
    finished: float


@dataclass(frozen=True, slots=True)
class MicroBatchStats:
    worker: str  # the stream's number, or "whole"
    inputs: int
    padded_tokens: int
    real_tokens: int
    started: float  # time.perf_counter() when it began
    seconds: float


# One micro-batch's inputs, the backend's output for them, and its stats.
MicroBatch = tuple[list[Item], np.ndarray, MicroBatchStats]


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
        backends: Sequence[Backend],
        config: BatchingConfig,
        pad_id: int,
        on_micro_batch: Callable[[MicroBatchStats], None] | None = None,
        whole: Backend | None = None,
        on_drop: Callable[[DropReason, int], None] | None = None,
    ) -> None:
        self.pad_id = pad_id
        self.on_micro_batch = on_micro_batch
        self.on_drop = on_drop
        self.queued_inputs = 0  # submitted and not yet answered
        self.workers = [_worker(backend, str(k)) for k, backend in enumerate(backends)]
        # All the threads in one stream: runs a single input alone while every stream is idle.
        self.whole = None if whole is None else _worker(whole, "whole")
        self._every_worker = (*self.workers, *([self.whole] if self.whole else []))
        self._idle = list(self.workers)
        self._whole_running = False
        self._waiting: dict[Request, None] = {}  # requests with queued inputs, oldest first
        self._ran_tokens = self._ran_seconds = 0.0  # decayed sums over recent micro-batches
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.configure(config)

    def close(self) -> None:
        """Stop the workers' threads once what they run ends; queued work is not run."""
        for worker in self._every_worker:
            worker.thread.shutdown(wait=True, cancel_futures=True)

    def configure(self, config: BatchingConfig) -> None:
        """Apply new limits, from the next step on."""
        self.config = config
        self._slot_tokens = math.ceil(config.max_batch_tokens / config.max_batch_size)

    @property
    def running_since(self) -> float | None:
        """Start of the oldest micro-batch running now; None when every worker is idle."""
        since = (w.running_since for w in self._every_worker if w.running_since is not None)
        return min(since, default=None)

    def stuck(self, stall_s: float) -> bool:
        """Whether a micro-batch has been running for longer than ``stall_s``: a backend that
        never returns (a hung library call, a dead device) leaves its worker busy for ever."""
        since = self.running_since
        return since is not None and time.perf_counter() - since > stall_s

    def tokens_per_s(self) -> float | None:
        """Real tokens per second the replica has been running lately, from micro-batches of
        ``RATE_MIN_TOKENS`` or more; None before any."""
        if self._ran_seconds <= 0:
            return None
        return len(self.workers) * self._ran_tokens / self._ran_seconds

    def expected_wait_s(self, token_count: int) -> float | None:
        """Seconds of queued work ahead of a new request of ``token_count`` tokens, under fair
        shares: at most ``token_count`` of every queued request (the module docstring)."""
        rate = self.tokens_per_s()
        if rate is None:
            return None
        return sum(min(r.queued_tokens, token_count) for r in self._waiting) / rate

    def _waiting_tokens(self) -> int:
        """Real tokens of every queued input."""
        return sum(r.queued_tokens for r in self._waiting)

    def admit(self, token_count: int) -> None:
        """Raise ``QueueFull`` when a request of ``token_count`` tokens should not join the
        queue."""
        config = self.config
        queued = self._waiting_tokens()
        if queued and queued + token_count > config.max_queued_tokens:
            rate = self.tokens_per_s()
            raise QueueFull(queued / rate if rate else 1.0)
        wait = self.expected_wait_s(token_count)
        if wait is not None and wait > config.max_queue_wait_s:
            raise QueueFull(wait - config.max_queue_wait_s)

    async def submit(
        self,
        sequences: list[np.ndarray],
        output: Output = "sentence_embedding",
        deadline: float | None = None,
        probe: bool = False,
    ) -> list[ItemResult]:
        """Queue one request's inputs for the backend's ``output``; their results come back in
        the same order.

        ``deadline`` (``time.perf_counter()`` seconds): inputs still queued then are dropped and
        ``DeadlineExceeded`` raised. Raises ``QueueFull`` without queueing anything (``admit``).
        """
        if not sequences:
            return []
        loop = asyncio.get_running_loop()
        if deadline is not None and deadline <= time.perf_counter():
            self._count_drop("deadline", len(sequences))
            raise DeadlineExceeded
        token_count = sum(len(ids) for ids in sequences)
        self.admit(token_count)
        request = Request(loop.create_future(), len(sequences), probe)
        request.items.extend(Item(ids, request, k, output) for k, ids in enumerate(sequences))
        request.token_count = request.queued_tokens = token_count
        self._waiting[request] = None
        self.queued_inputs += len(sequences)
        expiry = None
        if deadline is not None:
            expiry = loop.call_later(deadline - time.perf_counter(), self._expire, request)
        try:
            self._dispatch()
            return await request.done
        except asyncio.CancelledError:  # the caller is gone
            self._unqueue(request, "client_gone")
            raise
        finally:
            self.queued_inputs -= len(sequences)
            if expiry is not None:
                expiry.cancel()

    def _expire(self, request: Request) -> None:
        if not request.done.done():
            self._unqueue(request, "deadline")
            request.fail(DeadlineExceeded())

    def _unqueue(self, request: Request, reason: DropReason | None) -> None:
        """Take the request's queued inputs out of the queue, counted as dropped for ``reason``."""
        if request not in self._waiting:
            return
        del self._waiting[request]
        if reason is not None:
            self._count_drop(reason, len(request.items))
        request.items.clear()
        request.queued_tokens = 0

    def _count_drop(self, reason: DropReason, inputs: int) -> None:
        if self.on_drop is not None and inputs:
            self.on_drop(reason, inputs)

    def _dispatch(self) -> None:
        """Hand queued inputs to idle workers (the policy is in the module docstring)."""
        while self._waiting and self._idle and not self._whole_running:
            wait = self._wait_left()
            if wait > 0:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
                return
            idle = len(self._idle)
            items = self._take(math.ceil(self._waiting_tokens() / idle))
            alone = len(items) == 1 and not self._waiting
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
            sum(len(r.items) for r in self._waiting) >= config.max_batch_size
            or self._waiting_tokens() >= config.max_batch_tokens
        )
        if config.batch_wait_timeout_s <= 0 or full:
            return 0.0
        oldest = next(iter(self._waiting))
        return oldest.submitted + config.batch_wait_timeout_s - time.perf_counter()

    def _take(self, share_tokens: int) -> list[Item]:
        """One step: about ``share_tokens`` real tokens, never past ``max_batch_tokens``
        (``batch_cost``), at least one input; the oldest request's first, then by virtual
        finish (the module docstring)."""
        taken: list[Item] = []
        longest = real = 0
        oldest = next(iter(self._waiting))
        for request, most in ((oldest, 1), *((r, None) for r in self._by_virtual_finish())):
            while request.items and real < share_tokens and len(taken) != most:
                n = len(request.items[0].ids)
                cost = batch_cost(len(taken) + 1, max(longest, n), self._slot_tokens)
                if taken and cost > self.config.max_batch_tokens:
                    break
                taken.append(request.items.popleft())
                request.queued_tokens -= n
                real, longest = real + n, max(longest, n)
            if not request.items:
                self._waiting.pop(request, None)
        return taken

    def _by_virtual_finish(self) -> list[Request]:
        """Waiting requests by arrival + ``SLOWDOWN`` × time alone; by arrival before the
        replica has measured its speed."""
        rate = self.tokens_per_s()
        if rate is None:
            return list(self._waiting)
        per_token_s = SLOWDOWN / rate
        return sorted(self._waiting, key=lambda r: r.submitted + r.token_count * per_token_s)

    async def _work(self, worker: Worker, items: list[Item]) -> None:
        loop = asyncio.get_running_loop()

        def publish(ran: MicroBatch) -> None:
            loop.call_soon_threadsafe(self._ran, ran)

        last = None
        try:
            last = await loop.run_in_executor(worker.thread, self._run, worker, items, publish)
        except Exception as exc:  # the callers get the error; the worker goes on
            for item in items:
                self._unqueue(item.request, None)
                item.request.fail(exc)
        finally:
            if worker is self.whole:
                self._whole_running = False
            else:
                self._idle.append(worker)
        if last is not None:  # answered once the worker is free: its callers find it idle
            self._ran(last)
        self._dispatch()

    def _ran(self, ran: MicroBatch) -> None:
        """On the event loop, as each micro-batch ends: answers, the drain rate, metrics."""
        members, out, stats = ran
        finished = stats.started + stats.seconds
        per_token = out.ndim == 3  # (B, T, D): each input gets its real tokens' rows
        for row, item in enumerate(members):
            vector = out[row, : len(item.ids)] if per_token else out[row]
            item.request.deliver(item.index, ItemResult(vector, stats.started, finished))
        if stats.real_tokens >= RATE_MIN_TOKENS:
            self._ran_tokens = RATE_DECAY * self._ran_tokens + stats.real_tokens
            self._ran_seconds = RATE_DECAY * self._ran_seconds + stats.seconds
        if self.on_micro_batch is not None and not all(m.request.probe for m in members):
            self.on_micro_batch(stats)

    def _run(
        self, worker: Worker, items: list[Item], publish: Callable[[MicroBatch], None]
    ) -> MicroBatch:
        """On the worker's thread: sort, cut, run; publish each micro-batch's outputs as the
        next one starts, and return the last (``_work`` answers it)."""
        done: MicroBatch | None = None
        for output in dict.fromkeys(item.output for item in items):  # a backend call per output
            group = sorted(
                (item for item in items if item.output == output), key=lambda item: len(item.ids)
            )
            lengths = [len(item.ids) for item in group]
            for start, end in plan_micro_batches(lengths, self.config.micro_batch_overhead_tokens):
                if done is not None:
                    publish(done)
                members = group[start:end]
                ids, mask = pad([item.ids for item in members], self.pad_id)
                began = worker.running_since = time.perf_counter()
                try:
                    out = worker.backend.run_output(output, ids, mask)
                finally:
                    worker.running_since = None
                stats = MicroBatchStats(
                    worker.name,
                    len(members),
                    ids.size,
                    sum(lengths[start:end]),
                    began,
                    time.perf_counter() - began,
                )
                done = (members, out, stats)
        assert done is not None, "a step holds at least one input"
        return done
