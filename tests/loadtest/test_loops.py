"""The load loops against a deliberately slow local server (127.0.0.1 only).

Assertions are on the schedule and on counts, never on how fast this shared machine is: the
open loop must send on time *whatever* the server does, so its send-time adherence is compared
with the backlog the server builds, which is seconds.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from loadtest.config import LoadConfig
from loadtest.driver import run
from loadtest.stub import StubServer
from loadtest.summary import Summary

ROOT = Path(__file__).resolve().parents[2]


def test_open_loop_keeps_its_schedule_against_a_slow_server() -> None:
    delay, rate, n = 0.02, 100.0, 150  # the server does ≤ 50/s; we offer 100/s for 1.5 s
    with StubServer(delay_s=delay, serial=True) as server:
        config = LoadConfig(url=server.url, mode="open", rate=rate, requests=n, progress=False)
        result = run(config)
    samples = sorted(result.samples, key=lambda s: s.scheduled)
    assert result.summary.ok == n and server.handled == n
    scheduled = np.array([s.scheduled for s in samples])
    sent = np.array([s.sent for s in samples])
    latency = np.array([s.latency_ms for s in samples]) / 1000
    backlog = n * delay - scheduled[-1]  # seconds of work left when the last request arrives
    assert backlog > 1.0
    late = sent - scheduled
    # Sends follow the schedule, not the answers: lateness is far below the server's backlog.
    assert np.median(late) < 0.02 and late.max() < backlog / 3
    send_span, schedule_span = sent[-1] - sent[0], scheduled[-1] - scheduled[0]
    assert send_span == pytest.approx(schedule_span, abs=0.2)
    # Latency counts from the scheduled start, so it includes the queue the server built:
    # it grows about linearly (slope ≈ offered/capacity − 1 = 1) instead of staying at 20 ms.
    slope = np.polyfit(scheduled, latency, 1)[0]
    assert slope > 0.5
    assert latency[-10:].mean() > latency[:10].mean() + 0.5 * backlog
    assert result.summary.latency_ms.max > 1000 * backlog * 0.8


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_collections_during_a_phase_leave_the_callers_heap_alone(mode: str) -> None:
    # A full collection of this suite's heap stopped the open loop for 0.5 s once (a burst of
    # late sends above): during a phase the objects held before it must be frozen, then given back.
    held = len(gc.get_objects())
    frozen: list[int] = []  # the frozen count at the first collection that found any

    def watch(phase: str, info: dict[str, int]) -> None:
        # Counting walks the frozen objects: once (while nothing is frozen it costs nothing).
        if phase == "start" and not frozen and (count := gc.get_freeze_count()):
            frozen.append(count)

    gc.callbacks.append(watch)
    try:
        with StubServer() as server:
            config = LoadConfig(url=server.url, mode=mode, rate=1e3, requests=1000, progress=False)
            result = run(config)
    finally:
        gc.callbacks.remove(watch)
    assert result.summary.ok == 1000
    assert frozen and frozen[0] >= held
    assert gc.get_freeze_count() == 0


def test_closed_loop_holds_n_in_flight() -> None:
    with StubServer(delay_s=0.03, serial=False) as server:
        config = LoadConfig(
            url=server.url, mode="closed", concurrency=3, requests=60, progress=False
        )
        result = run(config)
    assert result.summary.ok == 60 and server.handled == 60
    assert server.max_in_flight == 3 and result.summary.client.max_in_flight == 3
    # Never more than 3, and 3 nearly all the time: only the clients' turnarounds are gaps.
    assert server.mean_concurrency() > 0.8 * 3
    # Back to back: each client's next request leaves when its previous one is answered.
    lat = result.summary.latency_ms
    assert lat.p50 is not None and lat.p50 >= 30


def test_runs_stop_by_themselves_on_duration() -> None:
    with StubServer(delay_s=0.01, serial=False) as server:
        start = time.perf_counter()
        result = run(LoadConfig(url=server.url, concurrency=2, duration_s=0.5, progress=False))
        took = time.perf_counter() - start
    assert result.summary.ok > 0 and took < 5
    assert max(s.sent for s in result.samples) < 0.5


def test_sweep_finds_the_knee(tmp_path: Path) -> None:
    # Capacity ≤ 50 requests/s. One second at 125/s leaves a 1.5 s backlog: p99 must break,
    # whatever else this machine is doing; 20/s is far enough below capacity to hold.
    with StubServer(delay_s=0.02, serial=True) as server:
        config = LoadConfig(
            url=server.url,
            sweep=True,
            rate=20,
            sweep_factor=2.5,
            duration_s=1.0,
            slo_p99_ms=400,
            sweep_refine=1,
            out=tmp_path,
            progress=False,
        )
        summary = run(config).summary
    assert summary.sweep is not None
    offered = [s.offered_rps for s in summary.sweep.steps]
    held = [s.held for s in summary.sweep.steps]
    assert offered[:2] == [20, 50] and held[0]
    broke = offered[held.index(False)]
    assert broke <= 125 and not any(h for o, h in zip(offered, held, strict=True) if o >= 100)
    # One bisection step between the last rate that held and the first that broke.
    assert len(offered) == held.index(False) + 2
    assert offered[-1] == (offered[held.index(False) - 1] + broke) / 2
    best = max(o for o, h in zip(offered, held, strict=True) if h)
    assert summary.sweep.max_rate_rps == best == summary.offered_rps
    assert (tmp_path / "sweep.png").is_file()


def test_ctrl_c_writes_what_it_has(tmp_path: Path) -> None:
    with StubServer(delay_s=0.01, serial=False) as server:
        cmd = [
            sys.executable,
            "-m",
            "loadtest",
            "--url",
            server.url,
            "--rate",
            "50",
            "--duration",
            "60",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while server.handled < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    summary = Summary.model_validate_json((tmp_path / "summary.json").read_text())
    assert summary.interrupted and summary.ok >= 20
    assert (tmp_path / "latency_over_time.png").is_file()
