"""What each request carries: the texts of request ``i`` for every workload, deterministically.

Built-in workloads use real English prose (``common.texts``), never random tokens: tokenizers
and attention cost depend on real text. Sequential workloads walk the corpus in order, so the
texts of request ``i`` are the same on every server and in the offline benchmark
(:func:`chunks`); ``mixed`` draws request shapes from a seeded generator. ``pairs`` (for
``--api rerank``) sends each sentence in turn as a query with its documents
(:func:`rerank_requests`); such a request's texts are the query first, then the documents.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from common import texts as corpus

from .config import LoadConfig

MIXED_LONG_INPUTS = 4
# Share of mixed requests that are one sentence / a batch of sentences / a few passages.
MIXED_SHARES = (0.6, 0.3, 0.1)
POOL_LIMIT = 4096


def read_texts(path: Path) -> list[str]:
    """A ``.txt`` file (one input per non-empty line) or ``.jsonl`` (strings, or objects with
    ``text``/``input``/``inputs``)."""
    raw = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() not in (".jsonl", ".ndjson"):
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
    else:
        texts = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, dict):
                item = next((item[k] for k in ("text", "input", "inputs") if k in item), None)
            if not isinstance(item, str) or not item:
                raise ValueError(f"{path}:{number}: expected a string or an object with 'text'")
            texts.append(item)
    if not texts:
        raise ValueError(f"{path}: no texts")
    return texts


def chunks(texts: list[str], size: int, count: int) -> list[list[str]]:
    """``count`` consecutive runs of ``size`` texts, wrapping around the list."""
    n = len(texts)
    return [[texts[(i * size + j) % n] for j in range(size)] for i in range(count)]


def cycle_length(n_texts: int, size: int) -> int:
    """Requests after which sequential chunks repeat exactly."""
    return math.lcm(n_texts, size) // size


def rerank_requests(count: int, documents: int) -> list[tuple[str, list[str]]]:
    """The first ``count`` (query, documents) requests of the ``pairs`` workload: each sentence
    as a query with ``documents`` texts, passages and sentences alternating
    (:func:`common.texts.pairs`)."""
    pairs = corpus.pairs(queries=count, documents=documents)
    return [
        (pairs[q * documents][0], [doc for _, doc in pairs[q * documents : (q + 1) * documents]])
        for q in range(count)
    ]


class RequestPool:
    """The texts of every request of a run, built up front (off the measured path).

    Request ``i`` sends ``pool[i % len(pool)]``; a pool covers a full cycle of the corpus when
    that is small, else ``POOL_LIMIT`` requests.
    """

    queries = False  # each request's first text is its query (``pairs``), not an input

    def __init__(self, config: LoadConfig) -> None:
        size = config.inputs_per_request
        self.queries = config.workload == "pairs"
        if config.workload == "mixed":
            self.requests = _mixed(size, config.seed)
        elif self.queries:
            count = min(len(corpus.sentences()), POOL_LIMIT)
            self.requests = [[q, *docs] for q, docs in rerank_requests(count, size)]
        else:
            texts = {
                "short": corpus.sentences,
                "batch": corpus.sentences,
                "long": corpus.passages,
            }.get(config.workload)
            source = texts() if texts is not None else read_texts(config.texts)  # type: ignore[arg-type]
            if config.workload == "short":
                size = 1
            self.requests = chunks(source, size, min(cycle_length(len(source), size), POOL_LIMIT))

    def __len__(self) -> int:
        return len(self.requests)

    def texts(self, index: int) -> list[str]:
        return self.requests[index % len(self.requests)]

    def inputs(self, index: int) -> int:
        """What request ``index`` asks to be scored or embedded: its texts, less a query."""
        return len(self.texts(index)) - (1 if self.queries else 0)


def _mixed(batch_size: int, seed: int) -> list[list[str]]:
    sentences, passages = corpus.sentences(), corpus.passages()
    rng = np.random.default_rng(seed)
    kinds = rng.choice(3, size=1024, p=MIXED_SHARES)
    out: list[list[str]] = []
    for kind in kinds:
        if kind == 0:
            out.append([sentences[rng.integers(len(sentences))]])
        elif kind == 1:
            start = int(rng.integers(len(sentences)))
            out.append(chunks(sentences[start:] + sentences[:start], batch_size, 1)[0])
        else:
            picks = rng.choice(len(passages), size=MIXED_LONG_INPUTS, replace=False)
            out.append([passages[int(p)] for p in picks])
    return out
