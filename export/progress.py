"""Progress lines (one per step) and the closing summary table, on stdout.

Written with ``sys.stdout.write`` rather than logging: this is the tool's user interface,
not diagnostics, and it must look the same whatever logging configuration is active.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO


def _say(text: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(text)
    stream.flush()


class Progress:
    """``[i/n] what ... result (1.2s)``; each step's duration is kept for the manifest."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.index = 0
        self.stream = stream
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, key: str, title: str) -> Iterator[list[str]]:
        """Yields a list; whatever the step appends is printed as its result."""
        self.index += 1
        _say(f"[{self.index}/{self.total}] {title} ... ", self.stream)
        result: list[str] = []
        start = time.perf_counter()
        try:
            yield result
        except BaseException:
            _say("failed\n", self.stream)
            raise
        elapsed = time.perf_counter() - start
        self.timings[key] = elapsed
        _say(f"{', '.join(result) or 'ok'} ({elapsed:.1f}s)\n", self.stream)


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table: text columns (first, last) left, numbers right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        middle = [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True)]
        cells = [row[0].ljust(widths[0]), *middle, row[-1]]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows)]) + "\n"


def say(text: str) -> None:
    _say(text)
