"""The batcher without Ray: the cost of a batch, the micro-batch cut, and how queued inputs
are dealt to the inference streams of real OpenVINO backends."""

import asyncio
import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.arrays import pad
from export.artifact import load_artifact
from service.backends import Backend, Backends, create_backends
from service.backends.base import Output
from service.batching import (
    DeadlineExceeded,
    DropReason,
    ItemResult,
    MicroBatchStats,
    QueueFull,
    TokenBudgetBatcher,
    batch_cost,
    plan_micro_batches,
)
from service.settings import BatchingConfig, ServiceSettings


def test_batch_cost_enforces_count_and_tokens() -> None:
    # max_batch_tokens 1024, max_batch_size 8 -> slot of 128 tokens.
    assert batch_cost(8, 10, 128) == 1024  # eight short inputs: the count cap binds
    assert batch_cost(9, 10, 128) > 1024
    assert batch_cost(3, 256, 128) == 768  # padded tokens bind
    assert batch_cost(5, 256, 128) > 1024


def _brute_force(lengths: list[int], overhead: int) -> int:
    n = len(lengths)
    best = None
    for k in range(n):
        for cuts in itertools.combinations(range(1, n), k):
            bounds = [0, *cuts, n]
            cost = sum((b - a) * lengths[b - 1] + overhead for a, b in itertools.pairwise(bounds))
            best = cost if best is None else min(best, cost)
    return best


def _cost(runs: list[tuple[int, int]], lengths: list[int], overhead: int) -> int:
    return sum((b - a) * lengths[b - 1] + overhead for a, b in runs)


@pytest.mark.parametrize("seed", range(20))
def test_micro_batches_minimise_padding_plus_overhead(seed: int) -> None:
    rng = random.Random(seed)
    lengths = sorted(rng.randint(3, 256) for _ in range(rng.randint(1, 9)))
    overhead = rng.choice([0, 16, 48, 200])
    runs = plan_micro_batches(lengths, overhead)
    assert runs[0][0] == 0 and runs[-1][1] == len(lengths)
    assert all(a < b for a, b in runs)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(runs))  # contiguous cover
    assert _cost(runs, lengths, overhead) == _brute_force(lengths, overhead)


def test_equal_lengths_stay_one_batch_and_outliers_split() -> None:
    assert plan_micro_batches([12] * 32, 48) == [(0, 32)]
    assert plan_micro_batches([10] * 31 + [250], 48) == [(0, 31), (31, 32)]


@pytest.fixture(scope="module")
def backends(minilm_artifact: Path) -> Backends:
    """What a two-CPU replica runs on this machine: two fp32 streams and ``whole``."""
    settings = ServiceSettings(
        artifact=minilm_artifact, backend="openvino", precision="fp32", num_cpus=2
    )
    return create_backends(settings, load_artifact(minilm_artifact))


@pytest.fixture(scope="module")
def ids(minilm, corpus) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.int64) for s in minilm.tokenizer.tokenize(corpus[:64])]


@pytest.fixture(scope="module")
def alone(backends: Backends, ids: list[np.ndarray]) -> np.ndarray:
    """Each input's vector when it runs by itself."""
    return np.stack([backends.streams[0].run(*pad([x], 0))[0] for x in ids])


def _batcher(
    streams: list[Backend],
    whole: Backend | None,
    seen: list[MicroBatchStats],
    dropped: list[tuple[DropReason, int]] | None = None,
    **limits: Any,
) -> TokenBudgetBatcher:
    on_drop = None if dropped is None else lambda reason, n: dropped.append((reason, n))
    return TokenBudgetBatcher(streams, BatchingConfig(**limits), 0, seen.append, whole, on_drop)


def _vectors(results: list[ItemResult]) -> np.ndarray:
    return np.stack([r.vector for r in results])


def test_a_lone_input_gets_every_thread_and_more_are_shared_by_the_streams(
    backends: Backends, ids: list[np.ndarray], alone: np.ndarray
) -> None:
    seen: list[MicroBatchStats] = []
    batcher = _batcher(backends.streams, backends.whole, seen)

    long = np.asarray([101, *([2023] * 200), 102], dtype=np.int64)

    async def scenario() -> tuple[list[ItemResult], list[ItemResult]]:
        one = await batcher.submit(ids[:1])
        sixteen = await batcher.submit(ids[:16])
        await batcher.submit([long, ids[0]])  # the long one is half the tokens, not alone
        return one, sixteen

    one, sixteen = asyncio.run(scenario())
    assert [s.worker for s in seen if s.worker == "whole"] == ["whole"]
    assert seen[0].worker == "whole" and seen[0].inputs == 1
    assert {s.worker for s in seen[1:]} == {"0", "1"}  # both streams, each with a share
    assert sorted((s.worker, s.inputs) for s in seen[-2:]) == [("0", 1), ("1", 1)]
    assert np.abs(_vectors(one) - alone[:1]).max() <= 1e-5
    assert np.abs(_vectors(sixteen) - alone[:16]).max() <= 1e-5


def test_a_busy_replica_keeps_both_streams_working(
    backends: Backends, ids: list[np.ndarray], alone: np.ndarray
) -> None:
    """Four clients in a closed loop (W2's shape): their batches go to the streams, never to
    ``whole``, which would leave one stream's share of the machine to spinning threads."""
    seen: list[MicroBatchStats] = []
    batcher = _batcher(backends.streams, backends.whole, seen)
    rng = random.Random(2)

    async def client() -> None:
        for _ in range(6):
            picked = rng.sample(range(len(ids)), 8)
            results = await batcher.submit([ids[i] for i in picked])
            assert np.abs(_vectors(results) - alone[picked]).max() <= 1e-5

    async def scenario() -> None:
        await asyncio.gather(*(client() for _ in range(4)))

    asyncio.run(scenario())
    assert sum(s.inputs for s in seen) == 4 * 6 * 8
    assert {s.worker for s in seen} == {"0", "1"}


def test_a_step_runs_each_named_output_for_the_inputs_that_want_it(
    backends: Backends, ids: list[np.ndarray], alone: np.ndarray
) -> None:
    """Pooled and per-token requests queued together share a step, a backend call per output;
    each per-token input gets its real tokens' rows only."""
    seen: list[MicroBatchStats] = []
    batcher = _batcher(backends.streams[:1], None, seen, batch_wait_timeout_s=0.2)

    async def scenario() -> tuple[list[ItemResult], list[ItemResult]]:
        pooled = batcher.submit(ids[:3])
        tokens = batcher.submit(ids[3:6], "token_embeddings")
        return await asyncio.gather(pooled, tokens)

    pooled, tokens = asyncio.run(scenario())
    assert np.abs(_vectors(pooled) - alone[:3]).max() <= 1e-5
    for result, x in zip(tokens, ids[3:6], strict=True):
        expected = backends.streams[0].run_output("token_embeddings", *pad([x], 0))[0]  # (T, D)
        assert result.vector.shape == (len(x), 384)
        assert np.abs(result.vector - expected).max() <= 1e-4
    assert len({r.started for r in [*pooled, *tokens]}) == 2  # one step, two backend calls


@pytest.mark.parametrize("wait_s", [0.0, 0.3])
def test_an_idle_worker_waits_for_company_only_when_told(
    backends: Backends, ids: list[np.ndarray], wait_s: float
) -> None:
    seen: list[MicroBatchStats] = []
    batcher = _batcher(backends.streams[:1], None, seen, batch_wait_timeout_s=wait_s)

    async def scenario() -> tuple[list[ItemResult], float]:
        first = asyncio.create_task(batcher.submit(ids[:2]))
        await asyncio.sleep(0.1)
        second_sent = time.perf_counter()
        await batcher.submit(ids[2:4])
        return await first, second_sent

    first, second_sent = asyncio.run(scenario())
    if wait_s:  # the first request waited for the second and ran with it
        assert min(r.started for r in first) >= second_sent
        assert sum(s.inputs for s in seen) == 4 and len({r.started for r in first}) <= 2
    else:
        assert max(r.started for r in first) < second_sent


def test_a_cancelled_request_is_dropped_and_the_others_answered(
    backends: Backends, ids: list[np.ndarray], alone: np.ndarray
) -> None:
    seen: list[MicroBatchStats] = []
    dropped: list[tuple[DropReason, int]] = []
    batcher = _batcher(backends.streams[:1], None, seen, dropped)

    async def scenario() -> tuple[list[ItemResult], list[ItemResult]]:
        busy = asyncio.create_task(batcher.submit(ids[:32]))
        await asyncio.sleep(0.01)  # the worker has taken it
        gone = asyncio.create_task(batcher.submit(ids[32:40]))
        kept = asyncio.create_task(batcher.submit(ids[40:44]))
        await asyncio.sleep(0)
        gone.cancel()
        return await busy, await kept

    busy, kept = asyncio.run(scenario())
    assert np.abs(_vectors(kept) - alone[40:44]).max() <= 1e-5
    assert len(busy) == 32
    assert sum(s.inputs for s in seen) == 32 + 4  # the cancelled inputs never ran
    assert dropped == [("client_gone", 8)]
    assert batcher.queued_inputs == 0


async def _finishing_order(batcher: TokenBudgetBatcher, requests: dict[str, list]) -> list[str]:
    """Submit the requests in order, a tick apart; their names in the order they are answered."""
    order: list[str] = []

    async def one(name: str, sequences: list) -> None:
        await batcher.submit(sequences)
        order.append(name)

    tasks = []
    for name, sequences in requests.items():
        tasks.append(asyncio.create_task(one(name, sequences)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    return order


def test_a_small_request_does_not_wait_behind_a_big_one(
    backends: Backends, ids: list[np.ndarray]
) -> None:
    """Steps of at most 512 padded tokens: the big request needs many, the small ones join the
    first step that starts after they arrive, and are answered first."""
    seen: list[MicroBatchStats] = []
    batcher = _batcher(backends.streams[:1], None, seen, max_batch_tokens=512)
    big = ids[:48]
    order = asyncio.run(
        _finishing_order(batcher, {"big": big, "small": ids[48:49], "pair": ids[49:51]})
    )
    assert set(order[:2]) == {"small", "pair"} and order[2] == "big"
    assert all(s.padded_tokens <= 512 for s in seen)


def test_a_big_request_progresses_while_small_ones_keep_coming(
    backends: Backends, ids: list[np.ndarray]
) -> None:
    """Steps of 64 padded tokens, which three waiting sentences fill: ordering by size alone
    would starve the big request until the small ones stop. Its oldest input joins every step
    and its virtual finish comes due, so it finishes while they still come."""
    seen: list[MicroBatchStats] = []
    batcher = _batcher(backends.streams[:1], None, seen, max_batch_tokens=64)
    answered: list[str] = []

    async def smalls(k: int) -> None:
        for i in range(24):
            await batcher.submit([ids[(k + i) % len(ids)]])
            answered.append("small")

    async def big() -> None:
        await batcher.submit(ids[:8])
        answered.append("big")

    async def scenario() -> None:
        await batcher.submit([np.asarray([101, *([2023] * 298), 102], dtype=np.int64)])
        assert batcher.tokens_per_s() is not None  # virtual finishes from the measured speed
        await asyncio.gather(smalls(0), smalls(1), smalls(2), big())

    asyncio.run(scenario())
    assert answered.index("big") < len(answered) // 2


def test_inputs_queued_past_their_deadline_never_run(
    backends: Backends, ids: list[np.ndarray]
) -> None:
    """An idle worker that waits a second for company holds the request in the queue while its
    50 ms deadline passes; an already expired request is refused before it queues."""
    seen: list[MicroBatchStats] = []
    dropped: list[tuple[DropReason, int]] = []
    batcher = _batcher(backends.streams[:1], None, seen, dropped, batch_wait_timeout_s=1.0)

    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(ids[:3], deadline=time.perf_counter() + 0.05)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(ids[:2], deadline=time.perf_counter())
        await asyncio.sleep(1.2)  # past the worker's wait: nothing left to run

    asyncio.run(scenario())
    assert seen == []
    assert dropped == [("deadline", 3), ("deadline", 2)]
    assert batcher.queued_inputs == 0


def test_admission_refuses_what_would_wait_too_long(
    backends: Backends, ids: list[np.ndarray]
) -> None:
    """Before a micro-batch of ``RATE_MIN_TOKENS`` has run there is no speed to estimate from:
    only ``max_queued_tokens`` binds, and a lone request is admitted past it. Once measured, a
    request that would wait past ``max_queue_wait_s`` behind the queued work is refused, with
    the seconds until it fits."""
    seen: list[MicroBatchStats] = []
    batcher = _batcher(
        backends.streams[:1], None, seen, batch_wait_timeout_s=1.0, max_queued_tokens=100
    )
    four = sum(len(x) for x in ids[:4])
    assert four <= 100 < four + sum(len(x) for x in ids[4:16])

    async def scenario() -> None:
        assert batcher.tokens_per_s() is None
        first = asyncio.create_task(batcher.submit(ids[:4]))  # waits a second for company
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await batcher.submit(ids[4:16])
        await first
        assert batcher.tokens_per_s() is None  # four sentences: too few tokens to tell a speed
        long = np.asarray([101, *([2023] * 298), 102], dtype=np.int64)
        await batcher.submit([long])  # alone: admitted past max_queued_tokens
        rate = batcher.tokens_per_s()
        assert rate is not None and rate > 0

        batcher.configure(BatchingConfig(batch_wait_timeout_s=1.0, max_queue_wait_s=1e-4))
        first = asyncio.create_task(batcher.submit(ids[:4]))
        await asyncio.sleep(0.01)
        n = len(ids[4])
        expected = batcher.expected_wait_s(n)
        assert expected == pytest.approx(min(four, n) / rate)  # its share of each request ahead
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(ids[4:5])
        assert refused.value.retry_after_s == pytest.approx(expected - 1e-4)
        await first

    asyncio.run(scenario())
    assert sum(s.inputs for s in seen) == 4 + 1 + 4


class _Hung:
    """A backend whose call never returns until released: a hung library call or device."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.release = backend, threading.Event()

    def run_output(
        self, output: Output, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        self.release.wait()
        return self.backend.run_output(output, input_ids, attention_mask)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def test_a_hung_backend_is_reported_stuck_and_a_working_one_is_not(
    backends: Backends, ids: list[np.ndarray]
) -> None:
    hung = _Hung(backends.streams[0])
    batcher = _batcher([hung], None, [])  # type: ignore[list-item]

    async def scenario() -> tuple[bool, bool, bool]:
        work = asyncio.ensure_future(batcher.submit(ids[:2]))
        give_up = time.perf_counter() + 30
        while batcher.running_since is None:  # the worker took the step and is inside run()
            assert time.perf_counter() < give_up, "the worker never started the micro-batch"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        verdicts = batcher.stuck(0.01), batcher.stuck(60.0)
        hung.release.set()
        await work
        return (*verdicts, batcher.stuck(0.0))

    stuck_short, stuck_long, stuck_after = asyncio.run(scenario())
    assert stuck_short and not stuck_long  # past the stall bound, and not before it
    assert not stuck_after  # idle again: nothing is running, nothing is stuck
