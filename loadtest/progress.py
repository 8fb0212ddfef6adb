"""The live progress line: rate, p50/p99 so far, errors, in flight; once a second on stderr.

On a terminal it rewrites one line; into a file or pipe it writes a line every five seconds, so
logs of long runs stay readable.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .runner import Recorder

INTERVAL_S = 1.0
PIPE_EVERY = 5


class Progress:
    """``async with Progress(...)``: reports while the block runs, clears the line after."""

    def __init__(
        self, rec: Recorder, label: str, t0: float, enabled: bool, offered: float | None
    ) -> None:
        self.rec, self.label, self.t0, self.enabled, self.offered = rec, label, t0, enabled, offered
        self.tty = sys.stderr.isatty()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Progress:
        if self.enabled:
            self._task = asyncio.create_task(self._report())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._write(self.line(), final=True)

    def line(self) -> str:
        rec = self.rec
        elapsed = max(asyncio.get_running_loop().time() - self.t0, 1e-9)
        done = len(rec.samples)
        lat = rec.ok_latencies_ms
        p50, p99 = np.percentile(lat, [50, 99]) if lat else (float("nan"),) * 2
        offered = f"offered {self.offered:.1f}/s " if self.offered else ""
        return (
            f"{self.label}{elapsed:6.1f}s  {offered}done {done / elapsed:.1f}/s  "
            f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  errors {rec.errors}  in flight {rec.in_flight}"
        )

    async def _report(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(INTERVAL_S)
            tick += 1
            if self.tty or tick % PIPE_EVERY == 0:
                self._write(self.line(), final=False)

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()
