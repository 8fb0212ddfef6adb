"""Silencing the exporters: one progress line per step instead of pages of internals.

torch.onnx writes to stdout, logs through ``logging`` handlers bound to the original stderr,
and its C++ parts write straight to file descriptors 1 and 2; onnxruntime's optimizer and
quantizer log warnings too. Only redirecting the descriptors catches all of it. What was said
is kept (``Captured.text``/``warnings``) so a failure can still be explained.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Captured:
    """What a silenced block wrote, and the warnings it raised (category: message)."""

    text: str = ""
    warnings: list[str] = field(default_factory=list)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


@contextlib.contextmanager
def _fds_to(sink: int) -> Iterator[None]:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        yield
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[Captured]:
    """Capture stdout/stderr (Python and file-descriptor level), logging and warnings.

    Warnings are recorded, not raised or shown, only inside this block: the exporters warn
    about their own internals (treespec deprecations, shared dynamic-axis names, tracer
    notes), which says nothing about the user's model. With ``enabled=False`` everything
    passes through (``--verbose``) and warnings behave as they would outside.
    """
    captured = Captured()
    if not enabled:
        yield captured
        return
    previous_disable = logging.root.manager.disable
    # torch's structured-trace logger logs at DEBUG past logging.disable(); mute it directly.
    trace_log = logging.getLogger("torch.__trace")
    trace_was_disabled = trace_log.disabled
    buffer = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            logging.disable(logging.WARNING)
            trace_log.disabled = True
            with (
                _fds_to(sink.fileno()),
                contextlib.redirect_stdout(buffer),
                contextlib.redirect_stderr(buffer),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                try:
                    yield captured
                finally:
                    captured.warnings = [
                        f"{w.category.__name__}: {_first_line(str(w.message))}" for w in caught
                    ]
        finally:
            logging.disable(previous_disable)
            trace_log.disabled = trace_was_disabled
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace") + buffer.getvalue()
