"""The node-loss row: ``tests/deploy/multinode_scenario.py`` (a real multi-node Ray cluster on
this machine, a worker node lost under load) judged by the same properties as the other faults.

The hook for whoever wires it into the default run: :func:`run` either starts the scenario in
its own process (it needs a Ray instance of its own, several minutes) or, given the path of a
result it already wrote (``--multinode-result``), only reads it. :func:`outcome` turns a result
into the table's row; its records carry the same fields as :class:`~.records.Record`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .records import Record
from .report import Outcome, from_records

MODULE = "tests.deploy.multinode_scenario"
TIMEOUT_S = 420  # the scenario's own test allows this
REPO = Path(__file__).resolve().parents[2]


def command(artifact: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", MODULE, "--artifact", str(artifact), "--out", str(out)]


def outcome(result: dict[str, Any], name: str, how: str | None = None) -> Outcome:
    """The row for one node-loss result."""
    records = [Record.from_dict(r) for r in result["records"]]
    extra = []
    wrong = sum(r.get("matches") is False for r in result["records"])
    if wrong:
        extra.append(f"{wrong} answers 200 with vectors unlike the healthy cluster's")
    if result.get("clients_stuck"):
        extra.append(f"{result['clients_stuck']} clients still stuck when the load stopped")
    removed = result["removed_at_s"]
    gone = result["dead_replica_gone_at_s"] - removed
    return from_records(
        records,
        name=name,
        scenario=name,
        fault="a worker node lost under load (its replica silent, then the node removed; a "
        "replacement node joins), 2 replicas on 2 worker nodes",
        server="tests/deploy/multinode_scenario.py: Serve config, KubeRay manifests' RAY_* env",
        recovery_s=result["recovered_at_s"] - removed,
        problems=extra,
        notes=[
            f"the dead replica left the routing table {gone:.1f} s after the node was removed; "
            "recovery is to the replica rescheduled on the new node",
            *[f"proxy log: {line[:300]}" for line in result.get("proxy_log_errors", [])[:3]],
        ],
        command=how or f"python -m {MODULE} --artifact ARTIFACT --out RESULT.json",
    )


async def run(artifact: Path, result_path: Path | None, name: str) -> list[Outcome]:
    """The row from ``result_path``, or from a fresh run of the scenario when it is None."""
    if result_path is not None:
        return [outcome(json.loads(result_path.read_text()), name)]
    with tempfile.TemporaryDirectory(prefix="faults-multinode-") as folder:
        out = Path(folder) / "result.json"
        done = await asyncio.to_thread(
            subprocess.run, command(artifact.resolve(), out), cwd=REPO, capture_output=True,
            text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{MODULE} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return [outcome(json.loads(out.read_text()), name)]
