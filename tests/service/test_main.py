"""``python -m service`` as a user runs it, over its default HAProxy ingress.

The rest of the service suite deploys into one in-process Ray instance with Ray's Python proxy
(the cluster default); this module checks that the launcher's default path keeps the same
contract: parity, JSON errors with the right status, request ids, metrics, a clean stop; and
that it keeps to itself: keys from a file, every listener on loopback, nothing a client sends in
its logs.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from service.__main__ import main, parse_args, serving_line
from service.settings import ModelEntry, ServiceSettings, load_settings

from ..helpers import cosine, embed, free_port
from .conftest import wait_healthy
from .test_security import SECRETS, exchange, files_mentioning, logged_through

launches = pytest.mark.ray  # a case that launches `python -m service`, Ray and all

KEY = f"launcher-key-{uuid.uuid4().hex}"  # from --api-key-file
FLAG_KEY = f"flag-key-{uuid.uuid4().hex}"  # from --api-key
AUTH = {"Authorization": f"Bearer {KEY}"}
# HAProxy's side listeners (stats, Prometheus), fixed here so the listener test can find them.
HAPROXY_SIDE_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


@dataclass
class Launched:
    url: str
    proc: subprocess.Popen[str]
    artifact: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def launched(minilm_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    port = free_port()
    config = tmp_path_factory.mktemp("launcher") / "embedserve.yaml"
    config.write_text(
        f"port: {port}\nmax_body_bytes: 65536\nmax_ongoing_requests: 2\nmax_queued_requests: 1\n"
        "batching:\n  max_batch_size: 16\n"
    )
    keys = config.parent / "api-keys"
    keys.write_text(f"# keys of the launcher test\n\n  {KEY}  \n")
    cmd = [sys.executable, "-m", "service", "--config", str(config)]
    cmd += ["--artifact", str(minilm_artifact), "--api-key-file", str(keys), "--api-key", FLAG_KEY]
    env = {**os.environ, "EMBEDSERVE_APP_NAME": "launcher-test"}
    env |= {name: str(free_port()) for name in HAPROXY_SIDE_PORTS}
    # RAY_SERVE_THROUGHPUT_OPTIMIZED buffers 1000 access-log lines; write each at once, so the
    # log test can read what the requests before it left (the lines are the same).
    env["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] = "1"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url)
        yield Launched(url, proc, minilm_artifact, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def client(launched: Launched) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=launched.url, headers=AUTH, timeout=60) as c:
        yield c


@launches
def test_it_serves_the_model_over_haproxy(client: httpx.Client, minilm, corpus) -> None:
    info = client.get("/info").json()
    assert info["ingress"] == "haproxy"
    assert info["batching"]["max_batch_size"] == 16  # the config file was read
    assert info["backend"]["intra_op_threads"] == max(1, os.cpu_count() or 1)  # all cores
    texts = corpus[:24] + corpus[-2:]
    assert cosine(embed(client, texts), minilm.encode(texts)).min() >= 0.9999


@launches
def test_request_ids_are_echoed_or_made(client: httpx.Client) -> None:
    sent = client.post("/v1/embeddings", json={"input": "a"}, headers={"x-request-id": "abc-1"})
    assert sent.headers.get_list("x-request-id") == ["abc-1"]
    made = client.post("/v1/embeddings", json={"input": "b"})  # not cached: it runs
    assert len(made.headers.get_list("x-request-id")) == 1
    assert float(made.headers["x-inference-time-ms"]) > 0


@launches
@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        ({"content": b'{"input": '}, 400, "invalid_json"),
        ({"json": {"input": 5}}, 422, None),
        ({"content": b'{"input": "' + b"x" * 70000 + b'"}'}, 413, None),
        ({"json": {"input": "a"}, "headers": {"Authorization": "Bearer wrong"}}, 401, None),
    ],
)
@launches
def test_client_mistakes_get_json_errors(
    client: httpx.Client, request_args: dict, status: int, code: str | None
) -> None:
    response = client.post("/v1/embeddings", **request_args)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)


@launches
def test_backpressure_is_json_429_then_healthy(launched: Launched, client: httpx.Client) -> None:
    body = {"input": ["word " * 300] * 4}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=launched.url, headers=AUTH, timeout=120) as c:
            return await asyncio.gather(*(c.post("/v1/embeddings", json=body) for _ in range(12)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["message"]
    assert httpx.get(f"{launched.url}/health", timeout=10).status_code == 200  # no key needed
    assert embed(client, ["after the burst"]).shape == (1, 384)


@launches
def test_metrics_count_requests(launched: Launched) -> None:
    text = httpx.get(f"{launched.url}/metrics", timeout=10).text
    model = 'model="all-MiniLM-L6-v2"'
    assert f'embedserve_requests_total{{{model},route="/v1/embeddings",status="200"}}' in text


@launches
def test_keys_from_the_file_and_the_flag_both_authenticate(launched: Launched) -> None:
    for key, status in ((KEY, 200), (FLAG_KEY, 200), ("# keys of the launcher test", 401)):
        headers = {"Authorization": f"Bearer {key}"}
        response = httpx.post(f"{launched.url}/v1/embeddings", json={"input": "a"}, headers=headers)
        assert response.status_code == status, (key, response.text)


def ray_psutil() -> ModuleType:
    """Ray's vendored psutil (ray/thirdparty_files), importable once Ray is."""
    import ray  # noqa: F401

    return importlib.import_module("psutil")


def process_tree(pid: int) -> list:
    psutil = ray_psutil()
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listeners(pid: int) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP listener of ``pid`` and its descendants."""
    psutil = ray_psutil()
    found = []
    for process in process_tree(pid):
        try:
            name, sockets = process.name(), process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:  # a worker that exited meanwhile
            continue
        found += [(name, s.laddr.ip, s.laddr.port) for s in sockets if s.status == "LISTEN"]
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@launches
def test_every_listener_of_the_service_is_on_loopback(launched: Launched) -> None:
    """GCS, raylet, object manager, workers, dashboard agent, proxy, replicas, HAProxy: all on
    127.0.0.1 when the service is (the default), so nothing of Ray is reachable from outside."""
    found = listeners(launched.proc.pid)
    names = " ".join(name for name, _, _ in found)
    assert "gcs_server" in names and "raylet" in names and "haproxy" in names, found
    assert any(port == int(launched.url.rsplit(":", 1)[1]) for _, _, port in found)
    # HAProxy's stats and Prometheus listeners: Ray binds them to every interface; the
    # launcher's service.haproxy rewrites them to the service's host.
    side_ports = {int(launched.env[name]) for name in HAPROXY_SIDE_PORTS}
    assert side_ports <= {port for name, ip, port in found if name == "haproxy" and is_loopback(ip)}
    outside = [(name, ip, port) for name, ip, port in found if not is_loopback(ip)]
    # Ray 2.60 binds each replica's inter-deployment gRPC server to [::]:0, with no setting to
    # move it (ray/serve/_private/replica.py, _on_initialized); Ray's token auth, on for the
    # launcher's local instance, guards it. One per replica; anything else is a regression.
    replica_grpc = [entry for entry in outside if "ServeReplica" in entry[0]]
    replicas = {name for name, _, _ in found if "ServeReplica" in name}
    assert len(replica_grpc) <= len(replicas), replica_grpc
    assert [entry for entry in outside if entry not in replica_grpc] == [], found


def session_dir(pid: int) -> Path:
    """The launcher's Ray session folder, from its raylet's command line."""
    for process in process_tree(pid):
        for arg in process.cmdline():
            if arg.startswith("--session_dir="):
                return Path(arg.split("=", 1)[1])
    raise AssertionError("no raylet with --session_dir under the launcher")


@launches
def test_nothing_a_client_sends_reaches_a_response_or_a_log(launched: Launched) -> None:
    """test_security's requests again, over HAProxy and Ray's buffered access logs."""
    logs = session_dir(launched.proc.pid) / "logs"
    with httpx.Client(base_url=launched.url, timeout=60) as client:
        assert exchange(client, KEY) == []
        logged_through(client, KEY, logs)
    assert files_mentioning(logs, (*SECRETS, KEY, FLAG_KEY)) == {}


@launches
def test_sigterm_stops_it_in_seconds(launched: Launched) -> None:
    start = time.monotonic()
    launched.proc.send_signal(signal.SIGTERM)
    output, _ = launched.proc.communicate(timeout=90)
    assert launched.proc.returncode == 0, output
    assert time.monotonic() - start < 25, "HAProxy's 30 s drain was not turned off"
    assert f"serving {launched.artifact} on {launched.url}" in output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-cpus", "2", "--streams", "3"], "3 streams need at least as many threads"),
        (["--backend", "torch", "--precision", "bf16"], "torch supports"),
        # Issue 18: backend auto took OpenVINO, which died in the replica, after Ray started.
        (["--precision", "int8"], "needs an int8 variant, and"),
        # MiniLM's windows hold 254 tokens of text besides [CLS] and [SEP].
        (["--chunk-overlap", "254"], "chunk_overlap (254) must be below the 254 tokens"),
    ],
)
def test_a_plan_no_replica_could_run_is_refused_before_ray_starts(
    minilm_artifact: Path, flags: list[str], message: str
) -> None:
    """One line, exit status 2 (a command line asking the impossible), and no Ray."""
    cmd = [sys.executable, "-m", "service", "--artifact", str(minilm_artifact), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_cache_mb_reaches_the_settings() -> None:
    assert load_settings(*parse_args(["--cache-mb", "0"])).cache_mb == 0
    default = ServiceSettings.model_fields["cache_mb"].default
    assert default > 0 and load_settings(*parse_args([])).cache_mb == default


def test_a_repeated_artifact_serves_several_models() -> None:
    assert parse_args(["--artifact", "a"])[1]["artifact"] == Path("a")
    _, several = parse_args(["--artifact", "a", "--artifact", "b"])
    assert "artifact" not in several and several["models"] == [
        {"artifact": Path("a")},
        {"artifact": Path("b")},
    ]
    entries = [ModelEntry(artifact=Path("a")), ModelEntry(artifact=Path("b"), name="r")]
    settings = ServiceSettings(models=entries)
    assert serving_line(settings, ["e", "r"], "http://h:1") == (
        "embedserve is serving a as 'e', b as 'r' on http://h:1 (the first is the default)"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "all-MiniLM-L6-v2"], "lists every served model; drop model"),
        (["--artifact", "/no/such/artifact"], "error: no artifact at /no/such/artifact;"),
        ([], "two models would be served as 'all-MiniLM-L6-v2'; name them"),
    ],
)
def test_several_models_are_refused_in_one_line_before_ray_starts(
    minilm_artifact: Path, flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--artifact", str(minilm_artifact), "--artifact", str(minilm_artifact), *flags])
    assert message in str(stopped.value.code) and "\n" not in str(stopped.value.code)
