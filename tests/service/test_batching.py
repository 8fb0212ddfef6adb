"""The batcher's planning rules, without Ray: cost of a gathered batch and the micro-batch cut."""

import itertools
import random

import numpy as np
import pytest

from service.batching import Item, batch_cost, pad, plan_micro_batches


def _items(lengths: list[int], slot: int) -> list[Item]:
    return [Item(np.ones(n, dtype=np.int64), False, slot, 0.0) for n in lengths]


def test_batch_cost_enforces_count_and_tokens() -> None:
    # max_batch_tokens 1024, max_batch_size 8 -> slot of 128 tokens.
    assert batch_cost(_items([10] * 8, 128)) == 1024  # eight short inputs: the count cap binds
    assert batch_cost(_items([10] * 9, 128)) > 1024
    assert batch_cost(_items([256, 10, 10], 128)) == 768  # padded tokens bind
    assert batch_cost(_items([256] * 5, 128)) > 1024


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


def test_pad_right_pads_ids_and_mask() -> None:
    ids, mask = pad([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == np.int64
