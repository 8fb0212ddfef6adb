"""The bulk client (``python -m bulk``, issue 19) against the same service's W2.

One service (``served.embedserve``: ``python -m service`` with the bench's defaults, cache
off) is loaded in turn by W2 (``served.CLOSED_LOOPS["w2"]``: 4 clients back to back, 32
sentences a request, the sentences of ``common.texts`` in order) and by the bulk client with
its defaults (64 texts a request, 4 in flight) embedding a file of the same sentences in the
same order, in pairs whose order alternates (``served.alternate``). The file holds about
``SECONDS`` of W2's rate, so both sides run for about as long; the client's rate is the whole
run's (reading and hashing the file, sending, writing parts with fsync, assembling the
``.npy``), as a user would time it, less the interpreter's start.

``python -m loadtest.bench.bulk --artifact PATH [--scale 0.3]`` prints the Markdown.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bulk import BulkConfig
from bulk import run as run_bulk
from common import texts as corpus

from ..driver import run
from . import served

log = logging.getLogger(__name__)

KEY = "bulk"  # the name ``--only`` takes
SECONDS = 20.0  # per run, times scale
PAIRS = 3
DEFAULTS = BulkConfig(input=Path("texts.txt"), output=Path("vectors.npy"))  # the CLI's


def sentences_file(path: Path, lines: int) -> Path:
    """``lines`` sentences of ``common.texts`` in order, cycling: W2's texts, one a line."""
    sentences = corpus.sentences()
    path.write_text(
        "".join(f"{sentences[i % len(sentences)]}\n" for i in range(lines)), encoding="utf-8"
    )
    return path


def bulk_rate(url: str, texts: Path, output: Path) -> float:
    """Texts/s of one fresh bulk run with the client's defaults (nothing to resume)."""
    output.unlink(missing_ok=True)
    config = BulkConfig(input=texts, output=output, url=url)
    shutil.rmtree(config.parts, ignore_errors=True)
    return run_bulk(config, progress=False).texts_per_s


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict[str, Any]:
    """W2 inputs/s and bulk texts/s in alternating pairs against one service."""
    start, load_start = time.perf_counter(), os.getloadavg()
    work.mkdir(parents=True, exist_ok=True)
    seconds = SECONDS * scale
    w2 = served.CLOSED_LOOPS["w2"]
    with served.embedserve(artifact, threads, work / "server.log") as server:
        info = served.server_info(server.url) or {}
        w2_config = served.loop_config(server.url, w2, seconds)
        sizing = run(w2_config).summary.inputs_per_s  # also warms the service up
        lines = max(DEFAULTS.batch_size, int(sizing * seconds))
        texts = sentences_file(work / "sentences.txt", lines)
        pairs = served.alternate(
            lambda: run(w2_config).summary.inputs_per_s,
            lambda: bulk_rate(server.url, texts, work / "vectors.npy"),
            PAIRS,
        )
    for w2_rate, bulk in pairs:
        log.info("bulk pair: W2 %.1f inputs/s, bulk %.1f texts/s", w2_rate, bulk)
    ratios = [bulk / w2_rate for w2_rate, bulk in pairs]
    return {
        "model": info.get("model_id"),
        "backend": info.get("backend", {}),
        "threads": threads,
        "lines": lines,
        "batch_size": DEFAULTS.batch_size,
        "concurrency": DEFAULTS.concurrency,
        "encoding": DEFAULTS.encoding,
        "w2_inputs": w2.inputs,
        "w2_clients": w2.clients,
        "seconds_per_run": seconds,
        "pairs": [{"w2": a, "bulk": b} for a, b in pairs],
        "ratio_median": float(np.median(ratios)),
        "ratio_range": (min(ratios), max(ratios)),
        "seconds": time.perf_counter() - start,
        "load_avg": (load_start, os.getloadavg()),
    }


def section(found: dict[str, Any], cores: int) -> list[str]:
    """The Markdown of ``docs/benchmarks.md``'s bulk-client section."""
    backend = found.get("backend") or {}
    low, high = found["ratio_range"]
    rows = [
        f"| {i + 1} | {p['w2']:.1f} | {p['bulk']:.1f} | {p['bulk'] / p['w2']:.2f}x |"
        for i, p in enumerate(found["pairs"])
    ]
    load_start, load_end = found["load_avg"]
    return [
        "## Bulk embedding: `python -m bulk`",
        "",
        f"{found['model']} on {backend.get('name')} {backend.get('precision')}, "
        f"{found['threads']} threads, {cores} cores, one service. The bulk client with its "
        f"defaults ({found['batch_size']} texts a request, {found['concurrency']} in flight, "
        f"{found['encoding']} vectors) embeds a file of {found['lines']:,} sentences of "
        f"`common.texts` into a `.npy`; W2 ({found['w2_clients']} clients, "
        f"{found['w2_inputs']} sentences a request, the same sentences) runs "
        f"{found['seconds_per_run']:g} s; the two in turn, order alternating. The client's "
        "rate is its whole run: reading and hashing the file, sending, each batch written to "
        "disk (fsync) for resumption, the output assembled.",
        "",
        "| pair | W2 inputs/s | bulk texts/s | bulk / W2 |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Median **{found['ratio_median']:.2f}x** of W2's throughput (range {low:.2f}-"
        f"{high:.2f}x); load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at "
        "the end.",
        "",
    ]
