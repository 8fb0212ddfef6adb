"""What the default service holds in memory, and how long it takes from launch to an answer
(issue 18).

Three measurements, each in processes of its own so that nothing this process loaded counts:

- **imports:** the modules a replica imports (``REPLICA_IMPORTS``) in a fresh interpreter, with
  and without ``import torch`` after them (what a replica paid before ``models`` loaded lazily),
  in interleaved pairs: seconds and RSS of each.
- **backends:** RSS of a fresh process holding the replica's backends (``create_backends``: the
  inference streams and, with several, ``whole``), warmed up as a replica warms them, against
  the streams alone: what ``whole`` costs.
- **served:** ``python -m service`` at its defaults: seconds from launch to the first 200 of
  ``/v1/embeddings``, then after a few requests of W2's and W3's shapes the RSS and PSS of the
  replica (Ray's ``ServeReplica`` process) and of all the service's processes, and whether the
  replica mapped torch's library. RSS counts a shared page in every process that maps it; PSS
  splits it between them, so PSS sums to what the machine gives the service.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import texts

from . import served
from .cpu import REPLICA, classify, descendants

log = logging.getLogger(__name__)

KEY = "footprint"  # the name ``--only`` takes
# What a replica imports: the deployment, the engine and routes it builds, the artifact reader.
REPLICA_IMPORTS = ("service.app", "service.engine", "service.routes", "export.artifact")
IMPORT_PAIRS = 4  # at scale 1.0
# Requests after the first answer, before memory is read: W2's shape then W3's, so the shapes a
# loaded replica has compiled kernels for are in its RSS.
WARM_REQUESTS = {"short": (32, 10), "long": (8, 4)}  # (inputs per request, requests) at scale 1.0
FIRST_ANSWER_TIMEOUT_S = 120.0

_IMPORT_PROBE = """
import json, resource, sys, time
start = time.perf_counter()
import {modules}
{extra}
seconds = time.perf_counter() - start
rss = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
print(json.dumps({{"seconds": seconds, "rss_mb": rss / 2**20, "torch": "torch" in sys.modules}}))
"""

_BACKENDS_PROBE = """
import json, resource, sys
from export.artifact import load_artifact
from service.backends import choose, create_backends, resolve_streams
from service.backends.base import warm_up
from service.backends.openvino import compile_streams
from service.settings import ServiceSettings
artifact = load_artifact(sys.argv[1])
settings = ServiceSettings(artifact=sys.argv[1], num_cpus=int(sys.argv[2]))
if sys.argv[3] == "yes":  # as a replica builds them
    backends = create_backends(settings, artifact)
    held = [*backends.streams, *([backends.whole] if backends.whole else [])]
else:  # the same streams, and no ``whole``
    choice = choose(settings, artifact)
    streams = resolve_streams(settings, choice)
    threads = settings.intra_op_threads
    held = compile_streams(artifact.model_path, threads, choice.precision, streams)
for backend in held:
    warm_up(backend, artifact.config.max_seq_length)
rss = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
print(json.dumps({"rss_mb": rss / 2**20, "backends": len(held)}))
"""


def _probe(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_cost(scale: float) -> dict:
    """The replica's imports without torch and with it, in interleaved fresh interpreters."""
    modules = ", ".join(REPLICA_IMPORTS)
    runs: dict[str, list[dict]] = {"replica": [], "replica + torch": []}
    for _ in range(max(2, round(IMPORT_PAIRS * scale))):
        runs["replica"].append(_probe(_IMPORT_PROBE.format(modules=modules, extra="")))
        runs["replica + torch"].append(
            _probe(_IMPORT_PROBE.format(modules=modules, extra="import torch"))
        )
    return {
        name: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "rss_mb": statistics.median(r["rss_mb"] for r in rs),
            "torch": rs[0]["torch"],
            "runs": len(rs),
        }
        for name, rs in runs.items()
    }


def backends_cost(artifact: Path, threads: int) -> dict:
    """RSS of a process holding the replica's backends, with ``whole`` and without it."""
    out = {}
    for whole in ("yes", "no"):
        out[f"whole={whole}"] = _probe(_BACKENDS_PROBE, str(artifact), str(threads), whole)
    return out


def _memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of one process, MiB (0 for one that is gone)."""
    fields: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                fields[name] = int(rest.split()[0]) / 1024
    except OSError:
        return 0.0, 0.0
    return fields.get("Rss", 0.0), fields.get("Pss", 0.0)


def _maps_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "gone"
    return classify(argv)


def _post(url: str, inputs: list[str]) -> int:
    request = urllib.request.Request(
        f"{url}/v1/embeddings",
        data=json.dumps({"input": inputs}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return int(response.status)
    except OSError:
        return 0


def served_footprint(artifact: Path, threads: int, scale: float, work: Path) -> dict:
    """Launch to first answer, then the service's memory by process kind after some load."""
    start = time.perf_counter()
    with served.embedserve(artifact, threads, work / "footprint-server.log") as server:
        deadline = time.monotonic() + FIRST_ANSWER_TIMEOUT_S
        while _post(server.url, ["hello"]) != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from {server.url} in {FIRST_ANSWER_TIMEOUT_S} s")
            time.sleep(0.05)
        first_answer_s = time.perf_counter() - start
        sentences, passages = texts.sentences(), texts.passages()
        for pool, (inputs, requests) in zip(
            (sentences, passages), WARM_REQUESTS.values(), strict=True
        ):
            for i in range(max(1, round(requests * scale))):
                _post(server.url, [pool[(i * inputs + j) % len(pool)] for j in range(inputs)])
        kinds: dict[str, dict[str, float]] = {}
        replica_torch = False
        for pid in descendants(server.pid):
            kind = _kind(pid)
            rss, pss = _memory(pid)
            entry = kinds.setdefault(kind, {"processes": 0, "rss_mb": 0.0, "pss_mb": 0.0})
            entry["processes"] += 1
            entry["rss_mb"] += rss
            entry["pss_mb"] += pss
            replica_torch |= kind == REPLICA and _maps_torch(pid)
    return {
        "first_answer_s": first_answer_s,
        "kinds": kinds,
        "total_rss_mb": sum(k["rss_mb"] for k in kinds.values()),
        "total_pss_mb": sum(k["pss_mb"] for k in kinds.values()),
        "replica_maps_torch": replica_torch,
    }


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    log.info("footprint: import cost of the replica's modules, with and without torch")
    imports = import_cost(scale)
    log.info("footprint: backends with and without whole")
    backends = backends_cost(artifact, threads)
    log.info("footprint: launching the service")
    service = served_footprint(artifact, threads, scale, work)
    return {"threads": threads, "imports": imports, "backends": backends, "served": service}


def section(found: dict, cores: int) -> list[str]:
    s, imports, backends = found["served"], found["imports"], found["backends"]
    replica = s["kinds"].get(REPLICA, {"rss_mb": 0.0, "pss_mb": 0.0})
    lines = [
        "## Footprint: memory and start-up (issue 18)",
        "",
        f"`python -m service --num-cpus {found['threads']}` at its defaults on {cores} cores: "
        f"**{s['first_answer_s']:.1f} s** from launch to the first 200 of `/v1/embeddings`; "
        f"after a few requests of W2's and W3's shapes the replica holds "
        f"**{replica['rss_mb']:.0f} MiB** RSS ({replica['pss_mb']:.0f} MiB PSS), the whole "
        f"service {s['total_rss_mb']:.0f} MiB RSS, {s['total_pss_mb']:.0f} MiB PSS "
        f"(PSS shares each shared page among the processes that map it). The replica "
        f"{'maps' if s['replica_maps_torch'] else 'does not map'} torch's library.",
        "",
        "| processes | count | RSS MiB | PSS MiB |",
        "|---|---:|---:|---:|",
    ]
    for kind, k in sorted(s["kinds"].items(), key=lambda kv: -kv[1]["pss_mb"]):
        lines.append(f"| {kind} | {k['processes']:.0f} | {k['rss_mb']:.0f} | {k['pss_mb']:.0f} |")
    plain, torch = imports["replica"], imports["replica + torch"]
    lines += [
        "",
        f"The replica's imports (`{', '.join(REPLICA_IMPORTS)}`) in a fresh interpreter, median "
        f"of {plain['runs']} interleaved pairs: {plain['seconds']:.2f} s and "
        f"{plain['rss_mb']:.0f} MiB RSS without torch; with `import torch` after them, as a "
        f"replica paid before `models` loaded its names lazily: {torch['seconds']:.2f} s and "
        f"{torch['rss_mb']:.0f} MiB (torch: +{torch['seconds'] - plain['seconds']:.2f} s, "
        f"+{torch['rss_mb'] - plain['rss_mb']:.0f} MiB).",
        "",
        f"The replica's backends alone in a fresh process, warmed up: "
        f"{backends['whole=yes']['rss_mb']:.0f} MiB with `whole` (the single-stream model for "
        f"a lone input) beside the streams, {backends['whole=no']['rss_mb']:.0f} MiB without it.",
    ]
    return lines
