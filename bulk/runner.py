"""A bulk run from start to end: read and check the texts, take the parts folder (resuming what
it holds), send the missing batches with bounded concurrency, assemble the output.

Batch ``k`` is always texts ``[k*B, (k+1)*B)`` and is sent whole, so a resumed run sends exactly
the batches the killed one had not finished, and a batch's vectors never depend on which run
sent it. Workers take the lowest unsent batch next, so finished parts fill the front of the
file first and a kill loses at most ``concurrency`` batches in flight.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .client import EmbeddingsClient
from .config import BulkConfig
from .parts import Job, PartStore
from .progress import ProgressBar
from .sources import file_digest, read_texts, require_pyarrow


@dataclass
class RunSummary:
    """What a run did; ``seconds`` is the whole run (reading to assembled output)."""

    output: Path
    texts: int
    dimensions: int
    batches: int
    resumed: int  # batches found finished in the parts folder
    sent: int  # batches this run sent
    retries: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def texts_per_s(self) -> float:
        """Texts of the whole input per second of this run (resumed texts included)."""
        return self.texts / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        why = ", ".join(f"{reason}×{n}" for reason, n in sorted(self.retries.items()))
        retries = f"; {sum(self.retries.values())} retries ({why})" if self.retries else ""
        return (
            f"embedded {self.texts:,} texts ({self.batches} batches: {self.resumed} resumed, "
            f"{self.sent} sent{retries}) in {self.seconds:.1f} s -> {self.output} "
            f"({self.texts}, {self.dimensions}) float32"
        )


def job_of(config: BulkConfig, texts: list[str]) -> Job:
    size, sha256 = file_digest(config.input)
    suffix = config.input.suffix.lower()
    source = {".parquet": config.column, ".txt": ""}.get(suffix, config.field)
    return Job(
        input_size=size,
        input_sha256=sha256,
        source=source,
        texts=len(texts),
        batch_size=config.batch_size,
        model=config.model,
        dimensions=config.dimensions,
        encoding=config.encoding,
    )


def run(config: BulkConfig, progress: bool = True) -> RunSummary:
    """Embed ``config.input`` into ``config.output``; raises :class:`~bulk.sources.InputError`
    (nothing sent, or resume refused) or :class:`~bulk.client.BatchFailed` (the server)."""
    started = time.monotonic()
    if config.output.suffix.lower() == ".parquet":
        require_pyarrow(f"writing {config.output}")  # before an hour of sending, not after
    texts = read_texts(config)
    job = job_of(config, texts)
    store = PartStore(config.parts)
    try:
        done = store.open(job, config.restart)
        bar = ProgressBar(
            total=job.texts,
            done=sum(job.rows(k) for k in done),
            every_s=config.progress_every_s,
            enabled=progress,
        )
        todo = [k for k in range(job.batches) if k not in done]
        try:
            retries = asyncio.run(send(config, texts, job, store, todo, bar))
        finally:
            bar.close()
        rows, dim = store.assemble(job, config.output)
        store.remove()
    finally:
        store.close()
    return RunSummary(
        output=config.output,
        texts=rows,
        dimensions=dim,
        batches=job.batches,
        resumed=len(done),
        sent=len(todo),
        retries=retries,
        seconds=time.monotonic() - started,
    )


async def send(
    config: BulkConfig,
    texts: list[str],
    job: Job,
    store: PartStore,
    todo: list[int],
    bar: ProgressBar,
) -> Counter[str]:
    """Send the ``todo`` batches, at most ``config.concurrency`` at once, each written as a
    part when it comes back; the first failure cancels the rest (their parts stay for a
    resume). What was retried, by reason."""
    pending = iter(todo)  # shared: each worker takes the next batch
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = EmbeddingsClient(config, session, random.Random(), on_retry=bar.retried)

        async def worker() -> None:
            for k in pending:
                start = k * job.batch_size
                batch = texts[start : start + job.batch_size]
                label = f"batch {k} (texts {start}-{start + len(batch) - 1})"
                vectors = await client.embed(batch, label)
                await asyncio.to_thread(store.write, k, vectors)
                bar.advance(len(batch))

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(config.concurrency, len(todo))):
                    group.create_task(worker())
        except ExceptionGroup as group_error:
            raise first_cause(group_error) from None
    return client.retries


def first_cause(group: BaseExceptionGroup) -> BaseException:
    """The first real failure of a task group (the rest were cancelled because of it)."""
    first: BaseException = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
