"""A real multi-node Ray cluster on this machine, embedserve on it, and a worker node lost under
load. Run in its own process (the test session already runs a Ray instance of its own)::

    python -m tests.deploy.multinode_scenario --artifact DIR --out result.json

The application is deployed the way ``serve run deploy/serve_config.yaml`` and KubeRay deploy it:
from the Serve config (its args adapted to this machine, its ``deployments`` section re-derived
from the builder), through the controller's config path. The head has no CPUs (as in the
RayService manifests), so replicas live on the two workers, at most one per node. One worker is
then removed while clients keep sending requests; a replacement node joins, as KubeRay would
replace the pod, and the lost replica is rescheduled there. Every response is recorded (status,
headers and body of failures, latency) and written as JSON for the test to judge.

A node lost in production is mostly silent (a partition, a dead host): its processes' connections
are not reset, so nothing tells the proxy that the requests they hold will never be answered. The
victim replica is therefore stopped (SIGSTOP) before its node is removed: it keeps its sockets
open and answers nothing, as behind a partition. Clients send deadlines
(``x-request-timeout-ms``), as interactive clients do; the bound under test is that every request
is answered, or failed with a JSON 5xx, within its deadline plus the proxy's grace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from service.ingress import free_port

REPO = Path(__file__).resolve().parents[2]
APP = "embedserve"
CLIENT_TIMEOUT_S = 60.0  # a request slower than this counts as hung
DEADLINE_MS = 10_000  # the clients' x-request-timeout-ms
CLIENTS = 4
log = logging.getLogger("multinode")


@dataclass
class Record:
    """One request as the client saw it."""

    start_s: float  # since the load started
    seconds: float
    status: int | None  # None: no HTTP answer (timeout, connection error)
    matches: bool | None = None  # 200 only: vectors equal the healthy cluster's
    error: str | None = None
    content_type: str | None = None
    body: str | None = None  # non-200 only, first 2000 characters
    headers: dict[str, str] = field(default_factory=dict)  # non-200 only


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; bounded, never a bare sleep."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)


def serve_config(artifact: Path, port: int, metrics_dir: Path) -> dict[str, Any]:
    """deploy/serve_config.yaml adapted to a laptop-sized cluster; deployments from the builder."""
    from deploy.serve_config import builder_deployments

    config = yaml.safe_load((REPO / "deploy" / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    args = dict(app["args"])
    args.update(artifact=str(artifact), num_cpus=1, metrics_dir=str(metrics_dir))
    args.pop("autoscaling", None)  # a fixed pair of replicas: which node each is on is the point
    args["num_replicas"] = 2
    app["args"] = args
    (deployment,) = builder_deployments(args, APP)
    deployment["max_replicas_per_node"] = 1  # a Serve config option: one replica per node
    app["deployments"] = [deployment]
    # Every node is 127.0.0.1 here: one proxy (on the head) is all that can bind the port.
    config["proxy_location"] = "HeadOnly"
    config["http_options"] |= {"host": "127.0.0.1", "port": port}
    return config


def manifest_ray_env() -> dict[str, str]:
    """``RAY_*`` variables the CPU RayService gives its Ray containers: the scenario's nodes get
    the same (Serve reads several, the proxy's callback among them, at process start)."""
    service = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayservice-cpu.yaml").read_text())
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    env: dict[str, str] = {}
    for group in groups:
        for item in group["template"]["spec"]["containers"][0].get("env", []):
            if item["name"].startswith("RAY_") and "value" in item:
                env[item["name"]] = str(item["value"])
    return env


def replicas(controller: Any) -> list[dict[str, Any]]:
    import ray

    details = ray.get(controller.get_serve_instance_details.remote())
    app = details.get("applications", {}).get(APP)
    if not app:
        return []
    return [
        {"state": r["state"], "node_id": r.get("node_id"), "pid": r.get("pid")}
        for d in app["deployments"].values()
        for r in d["replicas"]
    ]


def running(controller: Any) -> list[dict[str, Any]]:
    return [r for r in replicas(controller) if r["state"] == "RUNNING"]


def pids_answering(url: str, tries: int = 40) -> set[int]:
    """Which replica processes answer /info (requests spread over replicas)."""
    seen: set[int] = set()
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S) as client:
        for _ in range(tries):
            response = client.get("/info")
            if response.status_code == 200:
                seen.add(response.json()["process"])
    return seen


def embed(url: str, texts: list[str]) -> np.ndarray:
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S) as client:
        response = client.post("/v1/embeddings", json={"input": texts})
    response.raise_for_status()
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


class Load:
    """``CLIENTS`` closed-loop clients posting the same batch; every answer is recorded."""

    def __init__(self, url: str, texts: list[str], expected: np.ndarray) -> None:
        self.url, self.texts, self.expected = url, texts, expected
        self.records: list[Record] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        self.t0 = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_S + 10)
        self.clients_stuck = sum(t.is_alive() for t in self._threads)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    response = client.post(
                        "/v1/embeddings",
                        json={"input": self.texts},
                        headers={"x-request-timeout-ms": str(DEADLINE_MS)},
                    )
                except httpx.HTTPError as exc:
                    record = Record(start - self.t0, time.monotonic() - start, None)
                    record.error = f"{type(exc).__name__}: {exc}"
                else:
                    record = Record(start - self.t0, time.monotonic() - start, response.status_code)
                    if response.status_code == 200:
                        got = np.array(
                            [d["embedding"] for d in response.json()["data"]], dtype=np.float32
                        )
                        record.matches = bool(np.allclose(got, self.expected, atol=1e-5))
                    else:
                        record.content_type = response.headers.get("content-type")
                        record.body = response.text[:2000]
                        record.headers = dict(response.headers)
                with self._lock:
                    self.records.append(record)


def run(artifact: Path, workdir: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    from common.texts import sentences

    timeline: dict[str, float] = {}
    t_begin = time.monotonic()
    victim_pid: int | None = None

    def mark(event: str) -> None:
        timeline[event] = round(time.monotonic() - t_begin, 2)
        log.info("%s at %.1fs", event, timeline[event])

    port = free_port()
    head_args = {
        "num_cpus": 0,  # like the RayService head: control plane and proxy only
        "include_dashboard": False,
        "dashboard_agent_listen_port": free_port(),
    }
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        mark("cluster_up")
        config = ServeDeploySchema.model_validate(serve_config(artifact, port, workdir / "metrics"))
        client = serve_start(
            http_options=config.http_options.model_dump(), proxy_location=config.proxy_location
        )
        client.deploy_apps(config)
        controller = client._controller
        url = f"http://127.0.0.1:{port}"

        def two_running() -> list[dict[str, Any]] | None:
            found = running(controller)
            return found if len(found) == 2 else None

        first = wait_for("2 running replicas", two_running, 120)
        wait_for("the application to answer", lambda: _answers(url), 60)
        mark("app_running")

        node_of_pid = {r["pid"]: r["node_id"] for r in first}
        pids = pids_answering(url)
        texts = sentences()[:8]
        expected = embed(url, texts)
        result: dict[str, Any] = {
            "worker_node_ids": [w.node_id for w in workers],
            "head_node_id": cluster.head_node.node_id,
            "replicas_before": first,
            "pids_answering_before": sorted(pids),
            "nodes_answering_before": sorted({node_of_pid.get(p, "?") for p in pids}),
            "texts": texts,
            "embeddings": expected.tolist(),
        }

        victim_node, victim_pid = first[0]["node_id"], first[0]["pid"]
        victim = next(w for w in workers if w.node_id == victim_node)
        with Load(url, texts, expected) as load:
            wait_for("load to flow", lambda: len(load.records) >= 8, 30)
            removed_at = load.now()
            os.kill(victim_pid, signal.SIGSTOP)  # silent: holds its connections, answers nothing
            cluster.remove_node(victim)
            mark("node_removed")
            # The service must keep answering from the surviving replica: 5 s of load on it.
            wait_for(
                "the dead replica to leave the routing table",
                lambda: all(r["node_id"] != victim_node for r in replicas(controller)),
                90,
            )
            mark("dead_replica_gone")
            gone_at = load.now()
            survivor_window = (gone_at, gone_at + 5)
            time.sleep(5)
            # KubeRay replaces a lost worker pod; here a new node joins and gets the replica.
            cluster.add_node(num_cpus=2)
            mark("replacement_node_added")
            after = wait_for("the replica to be rescheduled", two_running, 120)
            mark("rescheduled")
            recovered_at = load.now()
            wait_for(
                "load after recovery",
                lambda: sum(r.start_s > recovered_at for r in load.records) >= 16,
                60,
            )
        mark("load_stopped")

        node_of_pid = {r["pid"]: r["node_id"] for r in after}
        # The proxy learns of the rescheduled replica after the controller marks it RUNNING
        # (a long poll): 40 requests in a row just after could all still reach the survivor.
        pids = wait_for(
            "both replicas to answer through the proxy",
            lambda: (found := pids_answering(url)) >= set(node_of_pid) and found,
            60,
        )
        result.update(
            victim_node_id=victim_node,
            removed_at_s=round(removed_at, 2),
            dead_replica_gone_at_s=round(gone_at, 2),
            survivor_window_s=[round(t, 2) for t in survivor_window],
            recovered_at_s=round(recovered_at, 2),
            replicas_after=after,
            pids_answering_after=sorted(pids),
            nodes_answering_after=sorted({node_of_pid.get(p, "?") for p in pids}),
            clients_stuck=load.clients_stuck,
            records=[asdict(r) for r in load.records],
            timeline=timeline,
        )
        return result
    finally:
        if victim_pid is not None:
            _kill(victim_pid)
        try:
            from ray import serve

            serve.shutdown()
            ray.shutdown()
        finally:
            cluster.shutdown()


def _kill(pid: int) -> None:
    """The stopped victim outlives its node; it must not outlive the scenario."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def proxy_log_errors(workdir: Path, limit: int = 20) -> list[str]:
    """What the Serve proxy logged about failed requests (why a 5xx was sent)."""
    lines: list[str] = []
    for path in sorted(workdir.glob("ray/session_*/logs/serve/proxy_*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "Request failed" in line or " ERROR " in line:
                lines.append(line[:1000])
    return list(dict.fromkeys(lines))[:limit]  # a message can be in two files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Short (unix socket paths), private (the session files and address of the test's own Ray
    # instance stay untouched), removed afterwards.
    workdir = Path(tempfile.mkdtemp(prefix="esmn", dir="/tmp"))
    # The nodes get what the manifests give them, not what this process happened to inherit.
    os.environ.pop("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", None)
    os.environ.update(manifest_ray_env())
    os.environ["RAY_TMPDIR"] = str(workdir)
    try:
        result = run(args.artifact.resolve(), workdir)
        result["proxy_log_errors"] = proxy_log_errors(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
