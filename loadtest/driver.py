"""One load test from configuration to files: info, warm-up, scrapes, the phase(s), outputs.

``run(config)`` is the in-process API (the benchmark uses it); the CLI is a thin layer on top.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from . import plots
from .config import LoadConfig
from .runner import LoadRunner, Phase, Sample
from .server import ServerSplit, fetch_info, scrape, split
from .summary import Summary, now, summarize, write_samples
from .sweep import run_sweep
from .tokens import estimate_tokens
from .workload import RequestPool

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    summary: Summary
    samples: list[Sample]  # the summarised phase (a sweep's best step)
    files: list[Path] = field(default_factory=list)


def run(config: LoadConfig) -> RunResult:
    """Run the load test ``config`` describes; write ``config.out`` when set. Ctrl-C stops the
    load and still summarises (and writes) what was measured."""
    result = asyncio.run(_run(config))
    if config.out is not None:
        result.files = write_outputs(result, config.out)
    return result


def _on_sigint(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()

    def handler() -> None:
        log.warning("interrupted: stopping the load and writing what was measured")
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C aborts at once

    return handler


async def _run(config: LoadConfig) -> RunResult:
    started = now()
    pool = RequestPool(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, _on_sigint(stop))
        handles_sigint = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        handles_sigint = False
    limit = config.concurrency if config.mode == "closed" else config.in_flight_cap()
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            info = await fetch_info(session, config.base_url)
            runner = LoadRunner(config, pool, session, stop)
            route = urlsplit(config.endpoint).path

            warm = config.warmup_s == 0

            async def measure(rate: float | None, label: str) -> tuple[Phase, ServerSplit | None]:
                nonlocal warm
                if not warm:  # once, before the first measured phase
                    await _phase(runner, config, rate, config.warmup_s, None, "[warm-up] ")
                    warm = True
                before = await scrape(session, config.base_url)
                duration, count = config.duration_s, config.requests
                phase = await _phase(runner, config, rate, duration, count, label)
                after = await scrape(session, config.base_url) if before is not None else None
                server = split(before, after, route) if before and after else None
                return phase, server

            sweep = None
            if config.sweep:
                assert config.rate is not None
                sweep, best = await run_sweep(
                    measure,
                    config.rate,
                    config.sweep_factor,
                    config.sweep_max_steps,
                    config.sweep_refine,
                    config.slo_p99_ms,
                    stop.is_set,
                )
                phase, server = best.phase, best.server
            else:
                phase, server = await measure(config.rate, "")
    finally:
        if handles_sigint and not stop.is_set():
            loop.remove_signal_handler(signal.SIGINT)
    missing = {s.index for s in phase.samples if s.outcome == "ok" and s.tokens is None}
    summary = summarize(
        phase,
        config.public(),
        started,
        info,
        server,
        estimate_tokens(pool, missing) if missing else None,
    )
    if sweep is not None:
        summary.sweep = sweep
        summary.interrupted = summary.interrupted or stop.is_set()
    return RunResult(summary, phase.samples)


async def _phase(
    runner: LoadRunner,
    config: LoadConfig,
    rate: float | None,
    duration_s: float | None,
    requests: int | None,
    label: str,
) -> Phase:
    if config.mode == "open":
        assert rate is not None
        return await runner.open_loop(rate, duration_s, requests, label)
    return await runner.closed_loop(config.concurrency, duration_s, requests, label)


def write_outputs(result: RunResult, out: Path) -> list[Path]:
    """summary.json, requests.csv, and the plots that apply."""
    summary = result.summary
    name = summary.config.get("name") or summary.config.get("workload", "load")
    files = [summary.write(out)]
    if summary.config.get("write_samples", True):
        write_samples(result.samples, out / "requests.csv")
        files.append(out / "requests.csv")
    mode = summary.config.get("mode")
    title = f"{name}, {mode} loop" + (
        f" at {summary.offered_rps:g} req/s" if summary.offered_rps else ""
    )
    timeline = out / "latency_over_time.png"
    files.append(plots.timeline(result.samples, title, timeline, open_loop=mode == "open"))
    files.append(plots.cdf({title: summary.latency_cdf_ms}, "latency CDF", out / "latency_cdf.png"))
    if summary.sweep is not None:
        files.append(plots.sweep_curve(summary.sweep, f"{name} sweep", out / "sweep.png"))
    return files
