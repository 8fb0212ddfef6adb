"""Repeated inputs answered from memory: a per-model LRU of backend outputs, bounded in bytes.

A key is (backend output, token ids). The ids already hold what changes a vector before the
backend: the prompt, the truncation side and length, a pair's template; what changes it after
(``normalize``, ``dimensions``, ``raw_scores``) is applied by the task's ``post`` to the cached
raw output, so one entry serves every such option. Each served model has its own cache, so the
model is part of the key by construction.

What "a hit returns exactly what a miss would" means here, measured on this project's 2-core
EPYC with all-MiniLM-L6-v2 (each input alone against the same input in 12 random batches of
2-32 sentences and passages): a vector depends on the batch it ran in. OpenVINO bf16 pooled
vectors differed in 11 of 163 inputs (max abs 2.5e-3, un-normalised), OpenVINO fp32 in 151 of
210 (1.2e-6), ONNX Runtime fp32 in all 243 (2.4e-7: its masked mean over a longer padding);
the same batch run twice is bit-identical on all three. So a hit returns, bit for bit, what the
miss that filled it returned, and what any miss in the same batch layout returns; without the
cache the same text sent twice under load can already differ by the amounts above, with it the
answer stays the same for as long as the entry lives.

Entries are read-only copies: a pooled row of the batch's output is a view that would keep the
whole batch alive, and nothing that receives a cached array may change it. Only the event loop
touches a cache (``lookup`` before the batcher, ``store`` after it), so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .backends.base import Output
from .metrics import CacheMetrics

CacheKey = tuple[Output, bytes]  # (backend output, the int64 token ids' bytes)
# Python's own memory per entry beyond the vector's and the ids' bytes: the ndarray header,
# the bytes object, the key tuple, the OrderedDict's node and its share of the hash tables,
# which over-allocate as they grow. tracemalloc measured 244-332 bytes an entry for caches of
# 10 to 22,000 MiniLM vectors; tests/service/test_cache.py checks the bound covers it.
ENTRY_OVERHEAD_BYTES = 384
MIB = 1 << 20


def cache_key(output: Output, ids: np.ndarray) -> CacheKey:
    return output, np.ascontiguousarray(ids, dtype=np.int64).tobytes()


def entry_bytes(key: CacheKey, vector: np.ndarray) -> int:
    """What one entry counts against the bound: its vector, its ids and their overhead."""
    return vector.nbytes + len(key[1]) + ENTRY_OVERHEAD_BYTES


@dataclass(slots=True)
class Lookup:
    """A request's inputs against the cache: each input's cached vector or None, and each
    distinct missing input with the places it holds in the request (duplicates run once)."""

    keys: list[CacheKey]
    found: list[np.ndarray | None]
    missing: dict[CacheKey, list[int]] = field(default_factory=dict)

    def first_indices(self) -> list[int]:
        """The index of each distinct missing input's first occurrence: what to compute."""
        return [places[0] for places in self.missing.values()]


class VectorCache:
    """An LRU of ``(output, ids) → vector`` whose accounted bytes never pass ``max_bytes``.

    Hits and misses count inputs: an input found in the cache, or a repeat of an earlier input
    of the same request (answered by that input's computation), is a hit; each distinct input
    computed is a miss. So hits + misses = the inputs of every request it saw.
    """

    def __init__(self, max_bytes: int, metrics: CacheMetrics | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("a cache holds at least one byte; use no cache for cache_mb 0")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._metrics = metrics

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._entries

    def get(self, key: CacheKey) -> np.ndarray | None:
        """The cached vector (now the most recently used), or None."""
        vector = self._entries.get(key)
        if vector is not None:
            self._entries.move_to_end(key)
        return vector

    def put(self, key: CacheKey, vector: np.ndarray) -> np.ndarray:
        """Keep a read-only copy of ``vector`` (evicting the least recently used entries to make
        room) and return it; one larger than the whole cache is returned as it is, not kept."""
        size = entry_bytes(key, vector)
        if size > self.max_bytes:
            return vector
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= entry_bytes(key, old)
        while self.bytes + size > self.max_bytes:
            evicted_key, evicted = self._entries.popitem(last=False)
            self.bytes -= entry_bytes(evicted_key, evicted)
        kept = np.array(vector, dtype=vector.dtype, copy=True)
        kept.flags.writeable = False
        self._entries[key] = kept
        self.bytes += size
        if self._metrics is not None:
            self._metrics.bytes.set(self.bytes)
        return kept

    def lookup(self, output: Output, sequences: list[np.ndarray]) -> Lookup:
        """Each input found, a repeat of an earlier one, or missing; counted as hits and
        misses (the class docstring)."""
        keys = [cache_key(output, ids) for ids in sequences]
        found: list[np.ndarray | None] = []
        missing: dict[CacheKey, list[int]] = {}
        for index, key in enumerate(keys):
            vector = self.get(key)
            found.append(vector)
            if vector is None:
                missing.setdefault(key, []).append(index)
        self._count(hits=len(keys) - len(missing), misses=len(missing))
        return Lookup(keys, found, missing)

    def store(self, lookup: Lookup, computed: list[np.ndarray]) -> list[np.ndarray]:
        """Every input's vector, in order: the found ones, and ``computed`` (one per distinct
        missing input, in ``lookup.first_indices()`` order) kept and given to each place."""
        out = lookup.found
        for (key, places), vector in zip(lookup.missing.items(), computed, strict=True):
            kept = self.put(key, vector)
            for index in places:
                out[index] = kept
        assert all(vector is not None for vector in out), "every input answered"
        return out  # type: ignore[return-value]

    def _count(self, hits: int, misses: int) -> None:
        self.hits += hits
        self.misses += misses
        if self._metrics is not None:
            self._metrics.hits.inc(hits)
            self._metrics.misses.inc(misses)

    def describe(self) -> dict[str, object]:
        """For /info: this replica's cache of this model."""
        return {
            "max_bytes": self.max_bytes,
            "entries": len(self._entries),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
        }
