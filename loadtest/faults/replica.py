"""A replica lost under load: killed (``kill -9``, the process gone at once) or wedged
(``kill -STOP``, the process there but answering nothing, as a stuck inference or a frozen
machine would be). Ray must notice and start a replacement; the clients must not hang.

Ray sees a killed replica at its next health check (its actor is dead); a wedged one only after
``REPLICA_HEALTH_CHECK_UNHEALTHY_THRESHOLD`` (3) health checks in a row time out, and it can
start the replacement only once the wedged actor is gone: with one replica on all the cores,
there is no CPU left for a second one until then.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import aiohttp

from ..bench.cpu import REPLICA, process_kind
from .load import RecordingLoad
from .records import HANG_S, Record, describe_statuses
from .report import Outcome, from_records
from .target import POLL_S, HealthProbe, Target, probe_health, replica_pid, wait_for

RECOVERY_BOUND_S = 60.0  # healthy again within this: "recovered"
WEDGE_RECOVERY_BOUND_S = 90.0  # Ray needs 3 health-check timeouts and a grace period first
# Defaults: 3 × 30 s health-check timeouts after up to 10 s, a 20 s grace, then a start.
DEFAULTS_WEDGE_RECOVERY_BOUND_S = 240.0
# What a closed connection without an answer means behind HAProxy (its log: `503 0 SC--`).
HAPROXY_CLOSE = (
    "a connection closed with no answer: HAProxy, finding no replica to connect to for a "
    "request that arrived on a reused (keep-alive) client connection, closes that connection "
    "and sends nothing, by design, so that the client retries (haproxy/haproxy issues 2375, "
    "3414); it logs `503 0 SC--` after its 3 retries"
)
AFTER_RECOVERY = 8  # requests sent after recovery that must all be answered 200
LOAD_FLOWING = 8  # answers before the fault: the replica is busy when it is hit


@dataclass
class Run:
    """What happened around one fault (times in seconds on the load's clock)."""

    records: list[Record]
    probes: list[HealthProbe]
    fault_at: float
    old_pid: int
    recovered_at: float | None = None
    new_pid: int | None = None
    harness_killed: bool = False  # the wedged process outlived the run; the harness ended it


async def _recover(
    probe: aiohttp.ClientSession, target: Target, load: RecordingLoad, run: Run, bound_s: float
) -> None:
    """Poll ``/health`` until a replica other than the faulted one answers 200, or the bound."""
    while load.now() - run.fault_at < bound_s:
        result = await probe_health(probe, target.url, load.now())
        run.probes.append(result)
        if result.status == 200:
            try:
                pid = await replica_pid(probe, target)
            except (aiohttp.ClientError, TimeoutError):
                pid = run.old_pid  # /info did not answer: not recovered yet
            if pid != run.old_pid:
                run.recovered_at, run.new_pid = result.at_s, pid
                return
        await asyncio.sleep(POLL_S)  # the poll interval


def _end_if_wedged(pid: int) -> bool:
    """Kill the process we stopped if Ray has not replaced it by now (it still holds the
    replica's CPUs, and would stay stopped for good). True when it had to."""
    if process_kind(pid, os.getpid()) != REPLICA:
        return False  # gone (Ray killed it), or the pid now names something else
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        return True
    return False


async def fault(target: Target, sig: signal.Signals, bound_s: float) -> Run:
    """W2 load; ``sig`` to the replica once it is busy; load on until ``AFTER_RECOVERY``
    requests sent after recovery are answered (or the bound passes)."""
    async with aiohttp.ClientSession() as probe:
        pid = await replica_pid(probe, target)
        async with RecordingLoad(target) as load:
            await wait_for("load to flow", _count(load, 0.0, LOAD_FLOWING), HANG_S)
            run = Run(load.records, [], load.now(), pid)
            os.kill(pid, sig)
            try:
                await _recover(probe, target, load, run, bound_s)
                if run.recovered_at is not None:
                    after = _count(load, run.recovered_at, AFTER_RECOVERY)
                    with suppress(TimeoutError):
                        await wait_for("answers after recovery", after, HANG_S)
            finally:
                if sig == signal.SIGSTOP:
                    run.harness_killed = _end_if_wedged(pid)
    return run


def _count(load: RecordingLoad, since: float, n: int) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`wait_for`: ``n`` requests sent since ``since`` have finished."""

    async def check() -> bool:
        return len(load.answered_since(since)) >= n

    return check


def outcome(
    name: str, scenario: str, what: str, target: Target, run: Run, bound_s: float
) -> Outcome:
    """The row for one fault: the properties judged on every request of the run."""
    extra: list[str] = []
    if run.recovered_at is None:
        extra.append(f"not healthy again within {bound_s:g} s")
    else:
        after = [r for r in run.records if r.start_s >= run.recovered_at]
        if len(after) < AFTER_RECOVERY or any(r.status != 200 for r in after):
            extra.append(f"after recovery: {describe_statuses(after) or 'no answers'}")
    if run.harness_killed:
        extra.append("the wedged process was never replaced: the harness killed it")
    return from_records(
        run.records,
        name=name,
        scenario=scenario,
        fault=f"{what} under W2 load ({target.spec.ingress})",
        server=target.spec.command(),
        recovery_s=None if run.recovered_at is None else run.recovered_at - run.fault_at,
        recovery_bound_s=bound_s,
        problems=extra,
        notes=notes(run),
        details={
            "old_pid": run.old_pid,
            "new_pid": run.new_pid,
            "fault_at_s": run.fault_at,
            "health": [p.__dict__ for p in run.probes],
        },  # fmt: skip
    )


def _windows(run: Run) -> dict[str, Sequence[Record]]:
    end = run.recovered_at if run.recovered_at is not None else float("inf")
    return {
        "in flight at the fault": [r for r in run.records
                                   if r.start_s < run.fault_at < r.start_s + r.seconds],
        "sent during the outage": [r for r in run.records if run.fault_at <= r.start_s < end],
        "sent after recovery": [r for r in run.records if r.start_s >= end],
    }  # fmt: skip


def notes(run: Run) -> list[str]:
    lines = [
        f"{name}: {describe_statuses(group)}; slowest {max(r.seconds for r in group):.1f} s"
        for name, group in _windows(run).items()
        if group
    ]
    health = Counter("timeout" if p.status is None else str(p.status) for p in run.probes)
    lines.append("`GET /health` during the outage (2 s probe timeout): "
                 + ", ".join(f"{k}×{n}" for k, n in health.items()))  # fmt: skip
    if run.new_pid is not None:
        lines.append(f"replica process {run.old_pid} replaced by {run.new_pid}")
    if any(r.status is None and "Disconnected" in (r.error or "") for r in run.records):
        lines.append(HAPROXY_CLOSE)
    return lines


async def crash(target: Target, scenario: str) -> list[Outcome]:
    """``kill -9`` of the replica process under load."""
    run = await fault(target, signal.SIGKILL, RECOVERY_BOUND_S)
    what = "replica process killed (`kill -9`)"
    return [outcome(scenario, scenario, what, target, run, RECOVERY_BOUND_S)]


def _ray_health_defaults() -> dict[str, float]:
    from ray.serve._private import constants as ray

    return {
        "health_check_period_s": float(ray.DEFAULT_HEALTH_CHECK_PERIOD_S),
        "health_check_timeout_s": float(ray.DEFAULT_HEALTH_CHECK_TIMEOUT_S),
        "graceful_shutdown_timeout_s": float(ray.DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S),
    }


RAY_HEALTH_DEFAULTS = _ray_health_defaults()


async def wedge(target: Target, scenario: str) -> list[Outcome]:
    """``kill -STOP`` of the replica process under load: wedged, not dead."""
    run = await fault(target, signal.SIGSTOP, WEDGE_RECOVERY_BOUND_S)
    what = "replica process wedged (`kill -STOP`)"
    return [outcome(scenario, scenario, what, target, run, WEDGE_RECOVERY_BOUND_S)]


async def wedge_ray_defaults(target: Target, scenario: str) -> list[Outcome]:
    """The wedge with Ray's own health-check options: why the service sets shorter ones."""
    bound = DEFAULTS_WEDGE_RECOVERY_BOUND_S
    run = await fault(target, signal.SIGSTOP, bound)
    what = "replica process wedged (`kill -STOP`), Ray's default health checks"
    return [outcome(scenario, scenario, what, target, run, bound)]


def health_check_section() -> str:
    """The document's note on Ray's replica health checks: its defaults, the service's, and the
    worst-case time each needs before a replacement can start."""
    from ray.serve._private.constants import REPLICA_HEALTH_CHECK_UNHEALTHY_THRESHOLD as n

    from service.settings import ServiceSettings

    chosen = {k: float(ServiceSettings.model_fields[k].default) for k in RAY_HEALTH_DEFAULTS}

    def stop_s(o: dict[str, float]) -> float:
        # The next check starts up to a period later; n must time out; then the grace period.
        return o["health_check_period_s"] + n * o["health_check_timeout_s"] + o[
            "graceful_shutdown_timeout_s"]  # fmt: skip

    rows = "\n".join(
        f"| `{k}` | {RAY_HEALTH_DEFAULTS[k]:g} | {chosen[k]:g} |" for k in RAY_HEALTH_DEFAULTS
    )
    return (
        "## Replica health checks\n\n"
        f"Ray declares a replica that does not answer its health check unhealthy after {n} "
        "checks in a row time out, stops it (waiting the graceful-shutdown period, which a "
        "wedged process never ends by itself) and only then can start its replacement: one "
        "replica holds every core. Worst case before the replacement starts: "
        f"{stop_s(RAY_HEALTH_DEFAULTS):g} s with Ray's defaults, {stop_s(chosen):g} s with the "
        "service's (`service/settings.py`; the `wedge-ray-defaults` row runs with Ray's). A "
        "killed replica is seen at the next check, so the period also bounds how long a crash "
        "goes unnoticed.\n\n"
        "| Deployment option | Ray 2.60 default | embedserve |\n|---|---|---|\n" + rows + "\n"
    )
