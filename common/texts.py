"""Built-in real English texts: the load generator's inputs, the benchmarks' corpus, the
export's accuracy check and the tests' data."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def _lines(name: str) -> tuple[str, ...]:
    text = files("common").joinpath("data", name).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def sentences() -> list[str]:
    """Single sentences of varied length and topic (3 to ~70 words), one per input."""
    return list(_lines("sentences.txt"))


def passages() -> list[str]:
    """Paragraphs of ~180-230 words (~250 BERT tokens), for the long-input workloads."""
    return list(_lines("passages.txt"))


def corpus() -> list[str]:
    """Every sentence, then every passage: the texts accuracy is measured on."""
    return sentences() + passages()


def pairs(queries: int = 16, documents: int = 8) -> list[tuple[str, str]]:
    """Real (query, document) pairs for rerankers and classifiers: each of the first
    ``queries`` sentences with ``documents`` texts, passages and sentences alternating (long
    and short documents in one request), rotating so that queries meet different ones."""
    texts = [text for pair in zip(passages(), sentences(), strict=False) for text in pair]
    return [
        (query, texts[(q * documents + d) % len(texts)])
        for q, query in enumerate(sentences()[:queries])
        for d in range(documents)
    ]
