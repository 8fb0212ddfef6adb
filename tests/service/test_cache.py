"""The repeated-input cache (``service.cache``): its LRU bounded in bytes, in-request
de-duplication, and hits equal to misses bit for bit through the real service.

"Equal" is exact where the batch layout is the same: a vector depends, in its last bits, on the
batch it ran in (the module docstring of ``service.cache`` gives the measurement), so a hit is
compared with the miss that filled it and with a cache-less service answering the same request
alone, never with the same text computed inside a different batch.
"""

from __future__ import annotations

import base64
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import texts
from service.cache import ENTRY_OVERHEAD_BYTES, VectorCache, cache_key, entry_bytes
from service.settings import ServiceSettings

from .conftest import InProcessClient, in_process

D = 384  # MiniLM's dimension, the size of the unit tests' vectors too


def vector(seed: int, shape: tuple[int, ...] = (D,)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ids(*tokens: int) -> np.ndarray:
    return np.asarray(tokens, dtype=np.int64)


# --- the cache alone ---------------------------------------------------------------------------


def test_the_least_recently_used_entry_goes_first_and_the_byte_bound_is_exact() -> None:
    keys = [cache_key("sentence_embedding", ids(101, k, 102)) for k in range(4)]
    size = entry_bytes(keys[0], vector(0))
    assert size == D * 4 + 3 * 8 + ENTRY_OVERHEAD_BYTES
    cache = VectorCache(3 * size)  # exactly three entries
    for k in range(3):
        cache.put(keys[k], vector(k))
    assert len(cache) == 3 and cache.bytes == 3 * size == cache.max_bytes
    assert cache.get(keys[0]) is not None  # 0 is now the most recently used: 1 is the oldest
    cache.put(keys[3], vector(3))
    assert keys[1] not in cache and all(keys[k] in cache for k in (0, 2, 3))
    assert cache.bytes == 3 * size
    smaller = VectorCache(3 * size - 1)  # one byte short of three: two fit
    for k in range(3):
        smaller.put(keys[k], vector(k))
    assert [key in smaller for key in keys[:3]] == [False, True, True]
    assert smaller.bytes == 2 * size


def test_entries_of_different_sizes_evict_as_many_as_the_new_one_needs() -> None:
    small = [cache_key("sentence_embedding", ids(k)) for k in range(4)]
    cache = VectorCache(4 * entry_bytes(small[0], vector(0)))
    for k, key in enumerate(small):
        cache.put(key, vector(k))
    large_key = cache_key("token_embeddings", ids(7, 8))
    large = vector(9, (2, D))  # about two small entries' bytes
    cache.put(large_key, large)
    assert [key in cache for key in small] == [False, False, True, True]
    assert cache.bytes == sum(
        entry_bytes(k, v) for k, v in [(small[2], vector(2)), (small[3], vector(3))]
    ) + entry_bytes(large_key, large)
    assert cache.bytes <= cache.max_bytes


def test_an_entry_larger_than_the_cache_is_answered_but_not_kept() -> None:
    cache = VectorCache(1000)
    key, value = cache_key("token_embeddings", ids(1, 2)), vector(0, (2, D))
    assert cache.put(key, value) is value
    assert len(cache) == 0 and cache.bytes == 0


def test_kept_vectors_are_read_only_copies_not_views_of_the_batch() -> None:
    batch = vector(0, (4, D))  # (B, D): a pooled row is a view of it
    cache = VectorCache(1 << 20)
    key = cache_key("sentence_embedding", ids(5))
    kept = cache.put(key, batch[1])
    assert kept.base is None and not kept.flags.writeable
    batch[1] = 0.0  # the batch's buffer reused: the entry does not change
    hit = cache.get(key)
    assert hit is not None and np.array_equal(hit, vector(0, (4, D))[1])
    with pytest.raises(ValueError):
        hit[0] = 1.0


def test_lookup_runs_each_distinct_input_once_and_answers_every_duplicate_at_its_index() -> None:
    cache = VectorCache(1 << 20)
    a, b, c = ids(1, 2), ids(3), ids(4, 5, 6)
    cache.put(cache_key("sentence_embedding", a), vector(0))
    lookup = cache.lookup("sentence_embedding", [b, a, b, c, b, a])
    assert lookup.first_indices() == [0, 3]  # b and c, once each
    answers = cache.store(lookup, [vector(1), vector(2)])
    expected = [vector(1), vector(0), vector(1), vector(2), vector(1), vector(0)]
    assert all(np.array_equal(got, want) for got, want in zip(answers, expected, strict=True))
    assert answers[0] is answers[2] is answers[4]  # one computation for every duplicate
    # Counted per input: a found one or a repeat is a hit, each distinct one computed a miss.
    assert (cache.hits, cache.misses) == (4, 2)


def test_the_same_ids_for_another_output_are_another_entry() -> None:
    cache = VectorCache(1 << 20)
    cache.put(cache_key("sentence_embedding", ids(1, 2)), vector(0))
    assert cache.get(cache_key("token_embeddings", ids(1, 2))) is None
    assert cache.get(cache_key("sentence_embedding", ids(1, 2, 0))) is None  # ids, not padding


@pytest.mark.parametrize("entries", [100, 2000])
def test_the_accounted_bytes_cover_what_the_entries_allocate(entries: int) -> None:
    """The bound is on real memory: tracemalloc sees numpy's and Python's allocations."""
    cache = VectorCache(1 << 30)
    sequences = [ids(101, *range(k, k + 14), 102) for k in range(entries)]  # 16-token sentences
    rows = vector(0, (len(sequences), D))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for row, seq in zip(rows, sequences, strict=True):
            cache.put(cache_key("sentence_embedding", seq), row)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown <= cache.bytes, (grown, cache.bytes)


# --- through the service -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_and_not(minilm_artifact: Path) -> Iterator[tuple[InProcessClient, InProcessClient]]:
    """The default service (OpenVINO bf16 on this project's machine) with its cache, and the
    same without one (``cache_mb`` 0)."""
    with (
        in_process(ServiceSettings(artifact=minilm_artifact, num_cpus=1)) as cached,
        in_process(ServiceSettings(artifact=minilm_artifact, num_cpus=1, cache_mb=0)) as plain,
    ):
        yield cached, plain


def embed(client: httpx.Client, inputs: list[str], **options: object) -> np.ndarray:
    """The exact float32 vectors of one /v1/embeddings request (base64: no decimal rounding)."""
    body = {"input": inputs, "encoding_format": "base64", **options}
    answer = client.post("/v1/embeddings", json=body)
    assert answer.status_code == 200, answer.text
    rows = [base64.b64decode(d["embedding"]) for d in answer.json()["data"]]
    return np.stack([np.frombuffer(row, dtype="<f4") for row in rows])


def cache_counts(client: httpx.Client) -> dict[str, dict[str, float]]:
    """embedserve_cache_* samples by name, then by model label."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("embedserve_cache_") and not sample.name.endswith("_created"):
                out.setdefault(sample.name, {})[sample.labels["model"]] = sample.value
    return out


def test_a_hit_is_bit_for_bit_the_miss_and_a_cacheless_answer(
    cached_and_not: tuple[InProcessClient, InProcessClient],
) -> None:
    cached, plain = cached_and_not
    request = texts.sentences()[:8]
    miss = embed(cached, request)
    hit = embed(cached, request)
    assert np.array_equal(hit, miss) and hit.tobytes() == miss.tobytes()
    assert embed(plain, request).tobytes() == miss.tobytes()  # the same batch, no cache
    # The options applied after the backend share the entry, and are applied as on a miss.
    for options in ({"dimensions": 64}, {"dimensions": 128}):
        assert (
            embed(cached, request, **options).tobytes()
            == embed(plain, request, **options).tobytes()
        )
    raw = cached.post("/embed", json={"inputs": request, "normalize": False}).json()
    assert raw == plain.post("/embed", json={"inputs": request, "normalize": False}).json()


def test_a_hit_past_its_deadline_is_504_as_a_miss_would_be(
    cached_and_not: tuple[InProcessClient, InProcessClient],
) -> None:
    cached, plain = cached_and_not
    request = {"input": texts.sentences()[30:32]}
    expired = {"x-request-timeout-ms": "1e-9"}
    assert cached.post("/v1/embeddings", json=request).status_code == 200  # now cached
    for client in (cached, plain):
        answer = client.post("/v1/embeddings", json=request, headers=expired)
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"]["code"] == "deadline_exceeded"


def test_token_embeddings_hit_equals_miss(
    cached_and_not: tuple[InProcessClient, InProcessClient],
) -> None:
    cached, plain = cached_and_not
    request = {"inputs": texts.sentences()[8:10]}
    miss = cached.post("/embed_all", json=request).json()
    assert cached.post("/embed_all", json=request).json() == miss
    assert plain.post("/embed_all", json=request).json() == miss


def test_duplicates_in_a_request_run_once_and_are_counted_as_hits(
    cached_and_not: tuple[InProcessClient, InProcessClient],
) -> None:
    cached, plain = cached_and_not
    [old, new] = texts.sentences()[20:22]
    embed(cached, [old])
    model = cached.get("/info").json()["model_id"]
    before = cache_counts(cached)
    got = embed(cached, [new, old, new, new, old])
    after = cache_counts(cached)
    hits = (
        after["embedserve_cache_hits_total"][model] - before["embedserve_cache_hits_total"][model]
    )
    misses = (
        after["embedserve_cache_misses_total"][model]
        - before["embedserve_cache_misses_total"][model]
    )
    assert (hits, misses) == (4, 1)  # old twice from the cache, new's two repeats; new once
    alone = embed(plain, [new])[0]  # what ran: new alone, the one input the batcher got
    assert all(got[i].tobytes() == alone.tobytes() for i in (0, 2, 3))
    assert all(got[i].tobytes() == embed(plain, [old])[0].tobytes() for i in (1, 4))
    assert after["embedserve_cache_bytes"][model] > 0


def test_info_describes_the_cache_and_cache_mb_0_turns_it_off(
    cached_and_not: tuple[InProcessClient, InProcessClient],
) -> None:
    cached, plain = cached_and_not
    embed(cached, ["the info test's own sentence"])
    info = cached.get("/info").json()["cache"]
    assert info["max_bytes"] == 64 << 20
    assert info["entries"] >= 1 and 0 < info["bytes"] <= info["max_bytes"]
    assert plain.get("/info").json()["cache"] is None
    embed(plain, ["the info test's own sentence"] * 2)
    assert cache_counts(plain) == {}  # no cache: nothing counted, no series
