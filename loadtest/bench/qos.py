"""Quality of service under load: does one client's heavy work starve another's light work, and
does the server shed an overload cleanly and come back?

Three scenarios, all through the load generator's own ``LoadRunner`` (several runners share one
event loop and one aiohttp session, so their clocks agree): a bulk client beside an interactive
one, a ~5 MB input beside an interactive one, and an open-loop flood at a multiple of W2's
capacity followed by a recovery probe. Latency percentiles are over OK answers
(``loadtest.stats``); every status is counted separately, so a 429 or 504 is never an OK.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import texts as corpus  # noqa: E402

from ..config import LoadConfig  # noqa: E402
from ..plots import save_figure  # noqa: E402
from ..runner import LoadRunner, Sample, latencies_ms  # noqa: E402
from ..stats import latency_stats, per_second  # noqa: E402
from ..summary import status_key  # noqa: E402
from ..workload import RequestPool  # noqa: E402
from .cpu import REPLICA, descendants, process_kind  # noqa: E402
from .results import BULK_PHASES, BulkQos, HugeInputQos, OverloadQos, QosResults, Rss  # noqa: E402

log = logging.getLogger(__name__)

# Phase lengths in seconds before ``scale``: about 3.5 minutes in all with the drains.
SECONDS = {"interactive alone": 10.0, "bulk alone": 30.0, "bulk + interactive": 30.0,
           "huge input": 20.0, "idle": 5.0, "flood": 60.0}  # fmt: skip
BULK_INPUTS = 256
HUGE_BYTES = 5 * 1024 * 1024
OVERLOAD_FACTOR = 3.0
RECOVERY_RUN = 5  # consecutive fast single sentences that mean "recovered"
RECOVERY_BOUND_S = 60.0
PROBE_PAUSE_S = 0.1  # after a refused probe: back to back on 429s would be a retry storm
# W1-W4's client timeout. A bulk request takes ~5 s alone, the 5 MB one ~6 s; flood requests
# that a server queues for longer are counted as timeouts, the answer a real client would get.
TIMEOUT_S = 30.0

Clients = dict[str, list[Sample]]  # client (or phase) -> its samples, one clock per scenario


class FixedPool(RequestPool):
    """A pool of given requests (the 5 MB input), for a runner that needs no corpus walk."""

    def __init__(self, requests: list[list[str]]) -> None:
        self.requests = requests


def huge_text(n_bytes: int = HUGE_BYTES) -> str:
    """Real words up to ``n_bytes`` of UTF-8: the corpus sentences repeated, joined by spaces."""
    sentences = corpus.sentences()
    repeats = n_bytes // len(" ".join(sentences).encode()) + 1
    return " ".join(sentences * repeats).encode()[:n_bytes].decode(errors="ignore")


def prorated_inputs_per_s(samples: Sequence[Sample], start: float, end: float) -> float:
    """Inputs/s over ``[start, end)``, each OK request's inputs spread evenly over its time in
    flight (sent → done) and counted for the share inside the window.

    A 256-passage request takes seconds, so counting whole requests by completion would credit
    a phase with work done in the one before; with one bulk request in flight at a time the
    server works on it throughout, and even spreading charges each phase its own seconds.
    """
    total = 0.0
    for s in (s for s in samples if s.outcome == "ok"):
        if s.done <= s.sent:
            total += s.inputs if start <= s.done < end else 0
        else:
            total += s.inputs * max(0.0, min(s.done, end) - max(s.sent, start)) / (s.done - s.sent)
    return total / (end - start)


def recovery_s(
    probes: Sequence[Sample], since: float, threshold_ms: float, run: int = RECOVERY_RUN
) -> float | None:
    """Seconds from ``since`` until the ``run``-th of consecutive OK probes under
    ``threshold_ms`` came in; ``None`` when no such run happened."""
    streak = 0
    for s in probes:
        streak = streak + 1 if s.outcome == "ok" and s.latency_ms < threshold_ms else 0
        if streak == run:
            return s.done - since
    return None


def statuses(samples: Sequence[Sample]) -> dict[str, int]:
    return dict(Counter(status_key(s) for s in samples))


def status_group(s: Sample) -> str:
    """OK, refused (429) or anything else: the overload plot's colours."""
    return "200" if s.outcome == "ok" else "429" if s.status == 429 else "other"


def recovery_threshold_ms(idle: Sequence[Sample]) -> float:
    """Twice the idle p50: fast enough to be 'normal again', loose enough for the noise."""
    p50 = latency_stats(latencies_ms(idle)).p50
    return 2 * p50 if p50 is not None else math.inf


def server_rss(launcher: int) -> Rss:
    """VmRSS of the launcher's process tree, and of the replica process(es) within it."""
    mib: dict[int, float] = {}
    for pid in descendants(launcher):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # exited meanwhile
        kb = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
        mib[pid] = int(kb) / 1024
    replicas = [v for pid, v in mib.items() if process_kind(pid, 0) == REPLICA]
    return Rss(replica_mib=sum(replicas) if replicas else None, tree_mib=sum(mib.values()))


class Scenario:
    """Runners on one session and one clock: seconds from the scenario's start."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url, self.session, self.stop = url, session, asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()

    def now(self) -> float:
        return self.loop.time() - self.start

    def runner(self, pool: RequestPool | None = None, **shape: Any) -> LoadRunner:
        config = LoadConfig(url=self.url, timeout_s=TIMEOUT_S, progress=False,
                            write_samples=False, **shape)  # fmt: skip
        pool = pool if pool is not None else RequestPool(config)
        return LoadRunner(config, pool, self.session, self.stop)

    async def closed(
        self, runner: LoadRunner, at: float, duration_s: float | None, requests: int | None = None
    ) -> list[Sample]:
        """One client back to back from ``at`` (scenario clock) for ``duration_s``."""
        await asyncio.sleep(max(0.0, at - self.now()))
        t0 = self.now()  # closed_loop's own t0: no await before it reads the clock
        phase = await runner.closed_loop(1, duration_s, requests)
        return [replace(s, scheduled=s.scheduled + t0, sent=s.sent + t0, done=s.done + t0)
                for s in phase.samples]  # fmt: skip


@asynccontextmanager
async def scenario(url: str) -> AsyncIterator[Scenario]:
    connector = aiohttp.TCPConnector(limit=0)  # the flood's own in-flight cap bounds it
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield Scenario(url, session)


def summarise_bulk(clients: Clients, seconds: dict[str, float]) -> BulkQos:
    a, b, c = (seconds[k] for k in BULK_PHASES)
    return BulkQos(
        seconds=seconds,
        bulk_inputs_per_request=max((s.inputs for s in clients["bulk"]), default=BULK_INPUTS),
        interactive_alone=latency_stats(latencies_ms(clients["interactive alone"])),
        interactive_beside_bulk=latency_stats(latencies_ms(clients["interactive beside bulk"])),
        bulk_alone_inputs_per_s=prorated_inputs_per_s(clients["bulk"], a, a + b),
        bulk_beside_inputs_per_s=prorated_inputs_per_s(clients["bulk"], a + b, a + b + c),
        statuses={k: statuses(v) for k, v in clients.items()},
    )


async def bulk_beside_interactive(url: str, scale: float = 1.0) -> tuple[BulkQos, Clients]:
    """Interactive alone, then bulk alone, then both. The bulk client runs on until the
    interactive one stops sending, so every interactive request meets a bulk one in flight."""
    seconds = {k: SECONDS[k] * scale for k in BULK_PHASES}
    a, b, c = seconds.values()
    async with scenario(url) as sc:
        interactive = sc.runner(workload="short")
        bulk = sc.runner(workload="long", batch_size=BULK_INPUTS)  # passages, wrapped around
        alone = await sc.closed(interactive, 0.0, a)
        beside, bulk_samples = await asyncio.gather(
            sc.closed(interactive, a + b, c), sc.closed(bulk, a, b + c)
        )
    clients = {"interactive alone": alone, "interactive beside bulk": beside, "bulk": bulk_samples}
    return summarise_bulk(clients, seconds), clients


async def huge_beside_interactive(url: str, scale: float = 1.0) -> tuple[HugeInputQos, Clients]:
    """A ~5 MB single input back to back beside one sentence at a time, both for the phase."""
    seconds, text = SECONDS["huge input"] * scale, huge_text()
    async with scenario(url) as sc:
        huge = sc.runner(FixedPool([[text]]))  # the pool, not the workload, says what is sent
        beside, big = await asyncio.gather(
            sc.closed(sc.runner(workload="short"), 0.0, seconds), sc.closed(huge, 0.0, seconds)
        )
    clients = {"interactive": beside, "huge input": big}
    return HugeInputQos(
        seconds=seconds,
        input_bytes=len(text.encode()),
        interactive=latency_stats(latencies_ms(beside)),
        huge=latency_stats(latencies_ms(big)),
        statuses={k: statuses(v) for k, v in clients.items()},
    ), clients  # fmt: skip


def summarise_overload(clients: Clients, capacity_rps: float, offered_rps: float,
                       seconds: float, rss: dict[str, Rss]) -> OverloadQos:  # fmt: skip
    flood, idle = clients["flood"], clients["idle"]
    ok, server = latencies_ms(flood), sum(s.status >= 500 for s in flood)
    refused = [s.latency_ms for s in flood if status_group(s) == "429"]
    return OverloadQos(
        capacity_rps=capacity_rps,
        offered_rps=offered_rps,
        seconds=seconds,
        inputs_per_request=max((s.inputs for s in flood), default=0),
        statuses=statuses(flood),
        admitted=latency_stats(ok),
        refused=latency_stats(refused),
        server_errors=server,
        other_errors=len(flood) - len(ok) - len(refused) - server,
        idle_p50_ms=latency_stats(latencies_ms(idle)).p50,
        recovery_s=recovery_s(clients["recovery"], seconds, recovery_threshold_ms(idle)),
        recovery_run=RECOVERY_RUN,
        recovery_bound_s=RECOVERY_BOUND_S,
        recovery_probes=len(clients["recovery"]),
        probe_pause_s=PROBE_PAUSE_S,
        timeout_s=TIMEOUT_S,
        rss=rss,
    )


async def overload(
    url: str, launcher: int, capacity_rps: float, scale: float = 1.0
) -> tuple[OverloadQos, Clients]:
    """Idle single sentences, then a Poisson flood of W2's requests at ``OVERLOAD_FACTOR`` ×
    ``capacity_rps``; from the flood's last scheduled arrival (its drain is part of recovering),
    single sentences back to back until ``RECOVERY_RUN`` in a row come in fast."""
    seconds, rate = SECONDS["flood"] * scale, OVERLOAD_FACTOR * capacity_rps
    async with scenario(url) as sc:
        idle = await sc.closed(sc.runner(workload="short"), 0.0, SECONDS["idle"] * scale)
        k, sentences = len(idle), corpus.sentences()  # probes go on where idle left off
        sentences = sentences[k % len(sentences) :] + sentences[: k % len(sentences)]
        # No client-side drops: with the timeout, no more than rate × timeout can be in flight.
        cap = math.ceil(rate * TIMEOUT_S) + 1
        flood = sc.runner(
            mode="open", rate=rate, workload="batch", batch_size=32, max_in_flight=cap
        )
        rss = {"before": await asyncio.to_thread(server_rss, launcher)}
        threshold = recovery_threshold_ms(idle)

        async def recover() -> list[Sample]:
            await asyncio.sleep(max(0.0, seconds - sc.now()))
            rss["right after"] = await asyncio.to_thread(server_rss, launcher)
            probes: list[Sample] = []
            while sc.now() - seconds < RECOVERY_BOUND_S:
                # A runner per probe: each sends the next sentence, not the first again.
                one = sc.runner(FixedPool([[sentences[len(probes) % len(sentences)]]]))
                probes += await sc.closed(one, 0.0, None, requests=1)
                if recovery_s(probes, seconds, threshold) is not None:
                    break
                if probes[-1].outcome != "ok":
                    await asyncio.sleep(PROBE_PAUSE_S)
            return probes

        # The flood's clock from here (open_loop's t0 is 10 ms after its call): the probes'
        # clock and the flood's agree within that.
        sc.start = sc.loop.time()
        phase, probes = await asyncio.gather(flood.open_loop(rate, seconds, None), recover())
        rss["after recovery"] = await asyncio.to_thread(server_rss, launcher)
    clients = {"idle": idle, "flood": phase.samples, "recovery": probes}
    return summarise_overload(clients, capacity_rps, rate, seconds, rss), clients


def _scatter(ax: Any, samples: Sequence[Sample], color: str, label: str) -> None:
    """Each request's latency at its scheduled time (its send time in a closed loop); later
    calls draw on top."""
    x, y = [s.scheduled for s in samples], [max(s.latency_ms, 0.1) for s in samples]
    ax.scatter(x, y, s=7, alpha=0.6, color=color, label=f"{label} ({len(samples)})",
               linewidths=0, zorder=len(ax.collections) + 2)  # fmt: skip
    ax.set_yscale("log")


def _panel(ax: Any, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)


def _figure() -> tuple[Any, Any, Any]:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    bottom.set_xlabel("time (s)")
    return fig, top, bottom


def bulk_plot(clients: Clients, seconds: dict[str, float], path: Path) -> Path:
    """Top: each interactive request's latency, alone and beside bulk. Bottom: bulk inputs/s
    per second, prorated as the table's numbers are."""
    fig, top, bottom = _figure()
    _scatter(top, clients["interactive alone"], "tab:blue", "interactive alone")
    _scatter(top, clients["interactive beside bulk"], "tab:red", "interactive beside bulk")
    start = seconds["interactive alone"]
    end = start + seconds["bulk alone"] + seconds["bulk + interactive"]
    top.axvspan(start, end, color="gray", alpha=0.12, label="bulk client sending")
    _panel(top, "one sentence at a time, alone and beside 256-passage requests", "latency (ms)")
    edges = np.arange(math.ceil(max((s.done for s in clients["bulk"]), default=end)) + 1)
    rates = [prorated_inputs_per_s(clients["bulk"], t, t + 1) for t in edges[:-1]]
    bottom.stairs(rates, edges, color="tab:gray", label="bulk passages/s (prorated)")
    _panel(bottom, "", "passages/s")
    return save_figure(fig, path)


def overload_plot(clients: Clients, seconds: float, path: Path) -> Path:
    """Top: each flood request's latency by status, and the recovery probes. Bottom: answers
    per second by status (when they came), and arrivals; the dotted line ends the flood."""
    fig, top, bottom = _figure()
    flood, probes = clients["flood"], clients["recovery"]
    horizon = max((s.done for s in [*flood, *probes]), default=seconds)
    arrivals = per_second(np.array([s.scheduled for s in flood]), horizon)
    edges = np.arange(len(arrivals) + 1, dtype=float)
    bottom.stairs(arrivals, edges, color="tab:gray", label="arrivals (scheduled)")
    for key, color in (("200", "tab:blue"), ("429", "tab:orange"), ("other", "black")):
        group = [s for s in flood if status_group(s) == key]
        _scatter(top, group, color, key)
        done = per_second(np.array([s.done for s in group]), horizon)
        bottom.stairs(done, edges, color=color, label=f"{key} answers")
    _scatter(top, probes, "tab:green", "recovery probe, 1 sentence")
    for ax in (top, bottom):
        ax.axvline(seconds, color="black", linestyle=":", linewidth=0.8)
    _panel(top, "open-loop flood, then single sentences until recovered", "latency (ms)")
    _panel(bottom, "", "requests/s")
    return save_figure(fig, path)


def run_qos(
    url: str, launcher: int, capacity_rps: float, assets: Path, scale: float = 1.0
) -> QosResults:
    """The three scenarios one after the other; plots under ``assets/qos``."""
    t0 = time.perf_counter()
    bulk, bulk_clients = asyncio.run(bulk_beside_interactive(url, scale))
    huge, _ = asyncio.run(huge_beside_interactive(url, scale))
    flood, flood_clients = asyncio.run(overload(url, launcher, capacity_rps, scale))
    log.info("qos: interactive p50 %s ms beside bulk, %s beside 5 MB; overload %s, recovery %s s",
             bulk.interactive_beside_bulk.p50, huge.interactive.p50, flood.statuses,
             flood.recovery_s)  # fmt: skip
    plots = [
        bulk_plot(bulk_clients, bulk.seconds, assets / "qos" / "bulk.png"),
        overload_plot(flood_clients, flood.seconds, assets / "qos" / "overload.png"),
    ]
    return QosResults(
        bulk=bulk,
        huge_input=huge,
        overload=flood,
        plots=[str(p.relative_to(assets.parent)) for p in plots],
        seconds=time.perf_counter() - t0,
    )
