"""Repeated queries served with and without the replica's cache (issue 18, ``service.cache``).

The workload: single-sentence requests from 4 clients back to back (W2's clients), each text
drawn with a Zipf law, P(rank k) ∝ k^-ZIPF_S over the first DISTINCT sentences of
``common.texts``: a few queries asked over and over, a long tail asked once. Two services run
(``python -m service`` with its defaults; the same with ``EMBEDSERVE_CACHE_MB=0``) and are
loaded in turn, in pairs whose order alternates (``served.alternate``). A cache that stays warm
from one pair to the next would answer every later run from memory, so each pair asks a fresh
set of queries: the same sentences behind a tag of the pair's own ("q2: ..."), new token ids,
a cold cache; the hit rate is the service's own count (``embedserve_cache_*_total``) over
each cached run, warm-up included.

Identical vectors: the same requests to both services after the load, float32 bits through
base64. A vector depends on the batch it ran in (``service.cache``'s docstring: up to 2.5e-3
un-normalised under OpenVINO bf16), so the comparison is made where it is exact, on texts the
load never sent: the same fixed requests of IDENTITY_BATCH texts to each service twice, the
cached service answering the second time from memory. For scale beside it, the texts the load
did send: the cached service's entries (filled in whatever batches the load made) against the
cache-less service's answer, and the cache-less service against itself in two batch layouts.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from common import texts as corpus
from service.settings import ServiceSettings

from ..config import LoadConfig
from ..driver import run
from . import served
from .served import exact_vectors

log = logging.getLogger(__name__)

KEY = "cache"  # the name ``--only`` takes
ZIPF_S = 1.1  # the exponent: rank 1 is asked 2.1x as often as rank 2, 13x as often as rank 10
DISTINCT = 512  # distinct queries (of common.texts' 666 sentences; the rest: identity texts)
DRAWS = 4096  # queries drawn per pair's file (the load generator's pool: it wraps after)
CLIENTS = 4
SECONDS = 10.0  # per run, times scale
PAIRS = 3
IDENTITY_BATCH = 8
SEED = 18
# The service's default cache size, named: the bench's other services run with it off.
CACHE_ON = {"EMBEDSERVE_CACHE_MB": str(ServiceSettings.model_fields["cache_mb"].default)}


def zipf_queries(pair: int, rng: np.random.Generator) -> list[str]:
    """``DRAWS`` queries by the Zipf law over the first ``DISTINCT`` sentences, tagged for
    ``pair`` (a fresh set of token ids for each pair's cold cache)."""
    sentences = corpus.sentences()[:DISTINCT]
    weights = np.arange(1, DISTINCT + 1, dtype=np.float64) ** -ZIPF_S
    ranks = rng.choice(DISTINCT, size=DRAWS, p=weights / weights.sum())
    return [f"q{pair}: {sentences[int(k)]}" for k in ranks]


def cache_counts(url: str) -> tuple[float, float]:
    """(hits, misses) the service has counted, over its models and replicas."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    totals = {"embedserve_cache_hits_total": 0.0, "embedserve_cache_misses_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["embedserve_cache_hits_total"], totals["embedserve_cache_misses_total"]


def rate(config: LoadConfig) -> float:
    return run(config).summary.inputs_per_s


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict[str, Any]:
    """Throughput pairs (cached, not) on the Zipf workload, the hit rates, and the vectors."""
    start, load_start = time.perf_counter(), os.getloadavg()
    rng = np.random.default_rng(SEED)
    seconds = SECONDS * scale
    with served.embedserves(
        [
            lambda: served.embedserve(
                artifact, threads, work / "cache-server.log", settings_env=CACHE_ON
            ),
            lambda: served.embedserve(artifact, threads, work / "no-cache-server.log"),
        ]
    ) as (cached, plain):
        info = served.server_info(cached.url) or {}
        pairs: list[dict[str, float]] = []
        last: list[str] = []
        for pair in range(PAIRS):
            last = zipf_queries(pair, rng)
            queries = work / f"zipf-{pair}.txt"
            queries.write_text("\n".join(last) + "\n", encoding="utf-8")
            loop = served.ClosedLoop("file", "single", 1, CLIENTS, seconds)
            on, off = (
                served.loop_config(s.url, loop, seconds, texts=queries) for s in (cached, plain)
            )
            before = cache_counts(cached.url)
            if pair % 2 == 0:  # the order alternates: a drifting load favours neither
                with_cache, without = rate(on), rate(off)
            else:
                without, with_cache = rate(off), rate(on)
            hits, misses = (a - b for a, b in zip(cache_counts(cached.url), before, strict=True))
            pairs.append(
                {"cached": with_cache, "uncached": without, "hit_rate": hits / (hits + misses)}
            )
            log.info("cache pair %d: %.1f / %.1f inputs/s, hit rate %.3f", pair, with_cache,
                     without, pairs[-1]["hit_rate"])  # fmt: skip
        held_out = corpus.sentences()[DISTINCT:]
        first = exact_vectors(cached.url, held_out, IDENTITY_BATCH)  # misses
        hit = exact_vectors(cached.url, held_out, IDENTITY_BATCH)  # hits
        miss = exact_vectors(plain.url, held_out, IDENTITY_BATCH)
        again = exact_vectors(plain.url, held_out, IDENTITY_BATCH)
        loaded = sorted(set(last))
        filled_under_load = exact_vectors(cached.url, loaded, IDENTITY_BATCH)
        plain_batched = exact_vectors(plain.url, loaded, IDENTITY_BATCH)
        plain_alone = exact_vectors(plain.url, loaded, 1)
    ratios = [p["cached"] / p["uncached"] for p in pairs]
    return {
        "model": info.get("model_id"),
        "backend": info.get("backend", {}),
        "cache": info.get("cache"),
        "threads": threads,
        "zipf_s": ZIPF_S,
        "distinct": DISTINCT,
        "clients": CLIENTS,
        "seconds_per_run": seconds,
        "pairs": pairs,
        "ratio_median": float(np.median(ratios)),
        "ratio_range": (min(ratios), max(ratios)),
        "hit_rate_median": float(np.median([p["hit_rate"] for p in pairs])),
        "identity_texts": len(held_out),
        "max_abs_hit_vs_miss": max_abs(hit, first),
        "max_abs_cached_vs_uncached": max_abs(hit, miss),
        "max_abs_uncached_twice": max_abs(again, miss),
        "loaded_texts": len(loaded),
        "max_abs_loaded_cached_vs_uncached": max_abs(filled_under_load, plain_batched),
        "max_abs_uncached_batch_vs_alone": max_abs(plain_batched, plain_alone),
        "seconds": time.perf_counter() - start,
        "load_avg": (load_start, os.getloadavg()),
    }


def section(found: dict[str, Any], cores: int) -> list[str]:
    """The Markdown of ``docs/benchmarks.md``'s cache section."""
    backend = found.get("backend") or {}
    cache = found.get("cache") or {}
    low, high = found["ratio_range"]
    rows = [
        f"| {i + 1} | {p['cached']:.1f} | {p['uncached']:.1f} | {p['cached'] / p['uncached']:.2f}x "
        f"| {p['hit_rate']:.1%} |"
        for i, p in enumerate(found["pairs"])
    ]
    return [
        "## Repeated queries: the replica's cache",
        "",
        f"{found['model']} on {backend.get('name')} {backend.get('precision')}, "
        f"{found['threads']} threads, {cores} cores. Single-sentence requests from "
        f"{found['clients']} clients, each text drawn by a Zipf law (exponent "
        f"{found['zipf_s']}) over {found['distinct']} distinct sentences of `common.texts`, "
        f"a fresh tag per pair so each starts cold; {found['seconds_per_run']:g} s runs, "
        f"cached and uncached services loaded in turn (order alternating), cache "
        f"{int(cache.get('max_bytes', 0)) >> 20} MiB.",
        "",
        "| pair | cached inputs/s | uncached inputs/s | ratio | hit rate |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Median ratio **{found['ratio_median']:.2f}x** (range {low:.2f}-{high:.2f}x) at a median "
        f"hit rate of {found['hit_rate_median']:.1%} (the service's own counts).",
        "",
        f"Vectors, float32 bits: on {found['identity_texts']} sentences the load never sent, "
        f"sent as the same requests of {IDENTITY_BATCH}, the cached service's hits against its "
        f"misses: max abs {found['max_abs_hit_vs_miss']:.3g}; against the uncached service: "
        f"{found['max_abs_cached_vs_uncached']:.3g} (the uncached service against itself: "
        f"{found['max_abs_uncached_twice']:.3g}). On the last pair's {found['loaded_texts']} "
        f"distinct queries (those the load reached were kept from whatever batches it "
        f"made): cached against uncached {found['max_abs_loaded_cached_vs_uncached']:.3g}, "
        f"the uncached service's requests of {IDENTITY_BATCH} against the same texts alone "
        f"{found['max_abs_uncached_batch_vs_alone']:.3g}: the batch a vector runs in changes "
        f"its last bits, with or without the cache.",
        "",
    ]
