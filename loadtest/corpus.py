"""Built-in real English texts, shared by the load generator, benchmarks and accuracy tests."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def _lines(name: str) -> tuple[str, ...]:
    text = files("loadtest").joinpath("data", name).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def sentences() -> list[str]:
    """Single sentences of varied length and topic (3 to ~70 words), one per input."""
    return list(_lines("sentences.txt"))


def passages() -> list[str]:
    """Paragraphs of ~180-230 words (~250 BERT tokens), for the long-input workloads."""
    return list(_lines("passages.txt"))
