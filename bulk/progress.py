"""The progress bar on stderr: texts done of the total, texts/s, time left.

On a terminal one line is redrawn (at most ten times a second, so a fast run does not spend
itself drawing); into a file or a pipe (a CI log, ``nohup``) a plain line every
``every_s`` seconds, so logs of an hour-long run stay readable. Rate and ETA count only the
texts sent by this run: batches found done on resume took no time now.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24
TTY_REDRAW_S = 0.1


def clock(seconds: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour) for an ETA."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(done: int, total: int, sent: int, elapsed_s: float, retries: int) -> str:
    """The progress line: ``[####----] 2,560/5,000 51% 412 texts/s ETA 0:06 retries 3``;
    ``sent`` (texts sent by this run) over ``elapsed_s`` is the rate."""
    fraction = done / total if total else 1.0
    filled = int(BAR_WIDTH * fraction)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    rate = sent / elapsed_s if elapsed_s > 0 else 0.0
    eta = clock((total - done) / rate) if rate > 0 else "?"
    line = f"[{bar}] {done:,}/{total:,} {fraction:4.0%} {rate:,.0f} texts/s ETA {eta}"
    return line + (f" retries {retries}" if retries else "")


class ProgressBar:
    """Call :meth:`advance` as batches finish, :meth:`retried` as they are re-sent, and
    :meth:`close` at the end (it draws the final line)."""

    def __init__(
        self,
        total: int,
        done: int,
        every_s: float,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.total, self.done, self.sent, self.retries = total, done, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = TTY_REDRAW_S if self.tty else every_s
        self.enabled = enabled
        self.started = self.last = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def advance(self, texts: int) -> None:
        self.done += texts
        self.sent += texts
        self._maybe_draw()

    def retried(self) -> None:
        self.retries += 1
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._draw(final=False)

    def close(self) -> None:
        self._draw(final=True)

    def _draw(self, final: bool) -> None:
        if not self.enabled:
            return
        line = render(self.done, self.total, self.sent, self.elapsed_s, self.retries)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
