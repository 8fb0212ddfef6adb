"""Static checks of what cannot run here: the RayService manifests (no Kubernetes), the
Dockerfiles (no Docker engine), the Prometheus scrape configs and the Grafana dashboard. Each
check ties a file to the others or to the code, so they cannot drift apart silently."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from deploy.serve_config import CONFIGS, DEPLOY_DIR

RAYSERVICES = {
    "cpu": DEPLOY_DIR / "kuberay" / "rayservice-cpu.yaml",
    "gpu": DEPLOY_DIR / "kuberay" / "rayservice-gpu.yaml",
}
DOCKERFILES = {"cpu": DEPLOY_DIR / "Dockerfile", "gpu": DEPLOY_DIR / "Dockerfile.gpu"}
SERVE_CONFIG = {"cpu": CONFIGS[0].path, "gpu": CONFIGS[1].path}
KINDS = ["cpu", "gpu"]


def quantity(value: str | int | float) -> float:
    """Kubernetes CPU/GPU quantities: 4, "4", "500m"."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def rayservice(kind: str) -> dict[str, Any]:
    return yaml.safe_load(RAYSERVICES[kind].read_text())


def app_config(kind: str) -> dict[str, Any]:
    (app,) = yaml.safe_load(SERVE_CONFIG[kind].read_text())["applications"]
    return app


def pods(kind: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group, group spec, first container) for the head and every worker group."""
    cluster = rayservice(kind)["spec"]["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    return [(name, g, g["template"]["spec"]["containers"][0]) for name, g in groups]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# --- KubeRay RayService ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_rayservice_has_head_and_workers_with_resources_and_probes(kind: str) -> None:
    service = rayservice(kind)
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__  # the Ray these files are tested with
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no replicas on head
    assert cluster["workerGroupSpecs"], "no worker group"
    for name, group, container in pods(kind):
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], name  # Guaranteed QoS
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        assert container["readinessProbe"] and container["livenessProbe"], name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["serve"] == 8000 and ports["metrics"] == 8080, name
        assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"]), name
        if name != "head":
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
            probe = " ".join(container["readinessProbe"]["exec"]["command"])
            assert "localhost:8000/-/healthz" in probe, "workers are ready when their proxy is"
    # The builder may run on any node, and RAY_* settings must reach every proxy: one env.
    envs = [c.get("env", []) for _, _, c in pods(kind)]
    assert all(env == envs[0] for env in envs)


@pytest.mark.parametrize("kind", KINDS)
def test_worker_pods_fit_the_replicas_the_config_asks_for(kind: str) -> None:
    deployment = app_config(kind)["deployments"][0]
    per_replica = deployment["ray_actor_options"]
    most = deployment["autoscaling_config"]["max_replicas"]
    capacity = 0
    for name, group, container in pods(kind):
        if name == "head":
            continue
        limits = container["resources"]["limits"]
        cpus, gpus = quantity(limits["cpu"]), quantity(limits.get("nvidia.com/gpu", 0))
        fit = cpus // per_replica["num_cpus"]
        if per_replica["num_gpus"]:
            fit = min(fit, gpus // per_replica["num_gpus"])
        assert fit >= 1, f"{name}: a replica ({per_replica}) does not fit {limits}"
        capacity += fit * group["maxReplicas"]
    assert capacity >= most, f"max_replicas {most} > what the worker groups can hold"


def test_gpu_cluster_serves_on_cuda_and_cpu_cluster_does_not() -> None:
    gpu_args, cpu_args = app_config("gpu")["args"], app_config("cpu")["args"]
    assert gpu_args["device"] == "cuda" and gpu_args["num_gpus"] >= 1
    assert cpu_args.get("device", "cpu") == "cpu" and cpu_args.get("num_gpus", 0) == 0
    for name, _, container in pods("gpu"):
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpus is None) == (name == "head"), name
    for _, _, container in pods("cpu"):
        assert "nvidia.com/gpu" not in container["resources"]["limits"]


@pytest.mark.parametrize("kind", KINDS)
def test_rayservice_runs_the_image_its_dockerfile_builds(kind: str) -> None:
    images = {c["image"] for _, _, c in pods(kind)}
    assert images == {"embedserve:0.1.0" + ("-gpu" if kind == "gpu" else "")}
    # The image exports the artifact the Serve config serves.
    exported = [
        args for op, args in instructions(DOCKERFILES[kind]) if op == "RUN" and "-m export" in args
    ]
    assert exported and f"--output {app_config(kind)['args']['artifact']}" in exported[0]
    # The probes call wget: the image must have it.
    assert any("install" in a and "wget" in a for op, a in instructions(DOCKERFILES[kind]))


NETWORK_POLICY = DEPLOY_DIR / "kuberay" / "networkpolicy.yaml"
OPERATOR = {"app.kubernetes.io/name": "kuberay-operator"}  # the KubeRay Helm chart's label


def admitted(port: int, pod_labels: dict[str, str]) -> list[Any]:
    """The ``from`` lists of the NetworkPolicy rules that let traffic reach ``port`` of a pod
    with ``pod_labels``; ``None`` in the result means from anywhere. No policy: anywhere."""
    policy = yaml.safe_load(NETWORK_POLICY.read_text())
    selected = policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    if not selected or "Ingress" not in policy["spec"]["policyTypes"]:
        return [None]
    return [
        rule.get("from")
        for rule in policy["spec"].get("ingress", [])
        if "ports" not in rule or any(p["port"] == port for p in rule["ports"])
    ]


def peer_labels(peer: dict[str, Any]) -> dict[str, str]:
    return peer.get("podSelector", {}).get("matchLabels", {})


@pytest.mark.parametrize("kind", KINDS)
def test_ray_ports_are_reachable_only_from_the_cluster(kind: str) -> None:
    """Ray's ports run code for whoever reaches them (no token on a `ray start` cluster): only
    the Ray pods may, and the operator the dashboard; the API and metrics ports stay open."""
    for name, group, container in pods(kind):
        labels = group["template"]["metadata"]["labels"]
        for port in container["ports"]:
            sources = admitted(port["containerPort"], labels)
            if port["name"] in ("serve", "metrics"):
                assert None in sources, (name, port)
                continue
            assert sources and None not in sources, (name, port)
            allowed = [dict(labels)] + ([OPERATOR] if port["name"] == "dashboard" else [])
            for peers in sources:
                assert all(peer_labels(p) in allowed for p in peers), (name, port, peers)


@pytest.mark.parametrize("kind", KINDS)
def test_the_dashboard_is_open_only_because_the_operator_needs_it(kind: str) -> None:
    head = rayservice(kind)["spec"]["rayClusterConfig"]["headGroupSpec"]
    host = head["rayStartParams"].get("dashboard-host", "127.0.0.1")
    operator_rules = [
        peers
        for peers in admitted(8265, head["template"]["metadata"]["labels"])
        if peers and any(peer_labels(p) == OPERATOR for p in peers)
    ]
    # KubeRay's operator submits serveConfigV2 to the head Service's dashboard port.
    assert host == "0.0.0.0" and operator_rules, (host, operator_rules)


# --- Dockerfiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_dockerfile_layers_user_healthcheck_and_port(kind: str) -> None:
    steps = instructions(DOCKERFILES[kind])
    ops = [op for op, _ in steps]
    base = steps[0][1]
    assert base.startswith("python:3.11-slim" if kind == "cpu" else "nvidia/cuda:")
    first_code = next(i for i, (op, a) in enumerate(steps) if op == "COPY" and "service" in a)
    deps = next(i for i, (op, a) in enumerate(steps) if op == "RUN" and "-r /tmp/requirements" in a)
    manifest = next(i for i, (op, a) in enumerate(steps) if op == "COPY" and "pyproject.toml" in a)
    assert manifest < deps < first_code, "dependencies must be a layer before the code"
    user = [a for op, a in steps if op == "USER"]
    assert user and user[-1] not in ("root", "0") and not user[-1].startswith("0:"), "runs as root"
    # A user the image creates (uid 1000, Ray's convention), not one that may not exist.
    created = [a for op, a in steps if op == "RUN" and "useradd" in a]
    assert created and "--uid 1000" in created[0] and created[0].split()[-1] == user[-1]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")
    health = [a for op, a in steps if op == "HEALTHCHECK"]
    assert health and "/health" in health[0]
    assert ("EXPOSE", "8000") in steps
    # EMBEDSERVE_* in the image would reach the builder on the cluster and make the deployment
    # differ from serve_config.yaml: standalone settings go in CMD flags instead.
    assert not any(op == "ENV" and "EMBEDSERVE_" in a for op, a in steps)
    cmd = json.loads(next(a for op, a in steps if op == "CMD"))
    assert cmd[:3] == ["python", "-m", "service"] and "0.0.0.0" in cmd


def test_cpu_image_takes_torch_from_the_cpu_index() -> None:
    text = DOCKERFILES["cpu"].read_text()
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text


def test_gpu_image_swaps_onnxruntime_for_onnxruntime_gpu() -> None:
    steps = " ".join(a for op, a in instructions(DOCKERFILES["gpu"]) if op == "RUN")
    uninstall, install = steps.index("uninstall -y onnxruntime"), steps.index("onnxruntime-gpu")
    assert steps.index("-r /tmp/requirements.txt") < uninstall < install


@pytest.mark.parametrize("kind", KINDS)
def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies(kind: str) -> None:
    ignore = Path(f"{DOCKERFILES[kind]}.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "an allow-list: everything else stays out of the context"
    copied = set()
    for op, args in instructions(DOCKERFILES[kind]):
        if op == "COPY" and "--from" not in args:
            copied.update(args.split()[:-1])
    assert copied <= allowed, copied - allowed
    assert not {"artifacts", ".venv", "tests"} & allowed


# --- Prometheus ------------------------------------------------------------------------------


def scrape_jobs(name: str) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((DEPLOY_DIR / "prometheus" / name).read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_scrapes_the_service_and_rays_node_metrics() -> None:
    for name in ("kubernetes.yml", "local.yml"):
        jobs = scrape_jobs(name)
        assert set(jobs) == {"embedserve", "ray"}, name
        assert jobs["embedserve"]["metrics_path"] == "/metrics"


def test_prometheus_kubernetes_targets_exist_in_the_manifests() -> None:
    """The relabel rules keep pods by labels and port names the RayServices really define."""
    jobs = scrape_jobs("kubernetes.yml")
    wanted = {}
    for job in jobs.values():
        for rule in job["relabel_configs"]:
            if rule.get("action") == "keep":
                wanted.setdefault(job["job_name"], []).append(
                    (rule["source_labels"][0], rule["regex"])
                )
    for kind in KINDS:
        for name, group, container in pods(kind):
            labels = group["template"]["metadata"]["labels"]
            ports = {p["name"] for p in container["ports"]}
            for source, regex in wanted["embedserve"] + wanted["ray"]:
                if source == "__meta_kubernetes_pod_label_app_kubernetes_io_name":
                    assert labels.get("app.kubernetes.io/name") == regex, (kind, name)
                elif source == "__meta_kubernetes_pod_container_port_name":
                    assert regex in ports, (kind, name, regex)
    assert ("__meta_kubernetes_pod_label_ray_io_node_type", "worker") in wanted["embedserve"]


# --- Grafana ---------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY_DIR / "grafana" / "embedserve.json").read_text())


def expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def exposed_service_metrics() -> set[str]:
    """Every sample name service.metrics exposes (prometheus_client adds the suffixes)."""
    from prometheus_client import Counter, Gauge, Histogram

    from service.metrics import init

    names = set()
    for value in init(None).all():
        if isinstance(value, Histogram):
            names |= {f"{value._name}_{s}" for s in ("bucket", "sum", "count")}
        elif isinstance(value, Counter):
            names.add(f"{value._name}_total")
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def rays_serve_metrics() -> set[str]:
    """Metric names the installed Ray Serve defines (exported with a ``ray_`` prefix)."""
    source = Path(ray.__file__).parent / "serve" / "_private"
    names = set()
    for path in source.glob("*.py"):
        for found in re.findall(r'"(serve_[a-z_{}]+)"', path.read_text()):
            names |= {found.replace("{protocol_name}", p) for p in ("http", "grpc")}
    return names


def test_dashboard_has_the_panels_the_issue_lists() -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for wanted in (
        "request rate", "p50 / p99", "queue vs inference", "batch size", "batch tokens",
        "padding ratio", "errors by status", "replicas",
    ):  # fmt: skip
        assert wanted in titles, wanted
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard()["panels"])


def test_dashboard_queries_only_metrics_that_exist() -> None:
    exposed, ray_names = exposed_service_metrics(), rays_serve_metrics()
    used = {name for expr in expressions() for name in re.findall(r"\b[a-z_]+_[a-z_]+\b", expr)}
    ours = {n for n in used if n.startswith("embedserve_")}
    assert ours and ours <= exposed, ours - exposed
    theirs = {n for n in used if n.startswith("ray_serve_")}
    base = {re.sub(r"_(total|bucket|sum|count)$", "", n).removeprefix("ray_") for n in theirs}
    assert theirs and base <= ray_names, base - ray_names


def test_every_service_query_follows_the_model_picked() -> None:
    """A service that serves several models: each panel shows the models picked (all by
    default), and the request rate and latency one series per model."""
    [model] = [v for v in dashboard()["templating"]["list"] if v["name"] == "model"]
    assert model["includeAll"] and model["allValue"] == ".*"  # ".*" takes model="" too
    selectors = [s for e in expressions() for s in re.findall(r"embedserve_\w+(?:\{[^}]*\})?", e)]
    assert selectors and all('model=~"$model"' in s for s in selectors), selectors
    by_model = [e for e in expressions() if "embedserve_request" in e and "route" in e]
    assert by_model and all("model)" in e or "model, " in e for e in by_model), by_model
