"""The service's one settings object: defaults in code < YAML file < environment < CLI.

``BatchingConfig`` is the part that can change while running (Ray Serve ``user_config`` →
``reconfigure``); everything else is fixed for a deployment's lifetime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ENV_PREFIX = "EMBEDSERVE_"
Ingress = Literal["haproxy", "proxy"]
BackendName = Literal["auto", "onnxruntime", "openvino", "torch"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Device = Literal["cpu", "cuda"]
DEFAULT_ARTIFACT = Path("artifacts/all-MiniLM-L6-v2")
DEFAULT_ARTIFACT_CACHE = Path("artifacts/cache")


# Unknown keys are mistakes; values are fixed once read; no infinite or NaN number means
# anything here (an infinite delay or timeout would only ever wait).
SETTINGS_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BatchingConfig(BaseModel):
    """Dynamic batching limits, changeable at runtime."""

    model_config = SETTINGS_MODEL

    max_batch_size: int = Field(64, ge=1, le=4096, description="inputs per gathered batch")
    max_batch_tokens: int = Field(
        1024,
        ge=1,
        description="padded tokens (inputs × longest) per step a worker takes: bounds how long "
        "a new request waits for a busy worker (service.batching). 1024 against 2048 on two "
        "cores: a sentence beside bulk work p99 160-171 ms against 337-351, W3 46.7 inputs/s "
        "against 44.0, W2 the same",
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        le=1,
        description="how long a batch waits to fill after its first input; a busy worker "
        "already gathers everything that arrives while it runs (service.batching)",
    )
    micro_batch_overhead_tokens: int = Field(
        16, ge=0, description="cost of one more backend call, in padded tokens, when cutting"
    )
    max_queue_wait_s: float = Field(
        5.0,
        gt=0,
        description="a request the work queued ahead of it would keep waiting longer is "
        "refused with 429 (estimated from the replica's recent tokens per second)",
    )
    max_queued_tokens: int = Field(
        1 << 20,
        ge=1,
        description="real tokens queued in a replica beyond which requests get 429 (a bound on "
        "memory, and on admission before the replica has measured its speed)",
    )


class AutoscalingSettings(BaseModel):
    """Ray Serve autoscaling of the replicas; replaces ``num_replicas`` when set."""

    model_config = SETTINGS_MODEL

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(
        8, gt=0, description="requests in flight per replica the autoscaler aims for"
    )
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(
        30.0, gt=0, description="seconds of in-flight counts averaged per decision (Ray's 30)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


class ModelEntry(BaseModel):
    """One model of a service that serves several (``ServiceSettings.models``)."""

    model_config = SETTINGS_MODEL

    artifact: Path
    name: str | None = Field(
        None, min_length=1, description="served model id; default: the artifact's model name"
    )


class ServiceSettings(BaseModel):
    """Everything a replica and the launcher need. Also the args model of ``build_app``."""

    model_config = SETTINGS_MODEL

    artifact: Path = DEFAULT_ARTIFACT
    models: list[ModelEntry] = Field(
        default_factory=list,
        description="several models in one service, in place of artifact and model_name; the "
        "first is the default of a request that names none",
    )
    model: str | None = Field(
        None,
        description="a known model name or a checkpoint folder to serve instead of artifact: "
        "python -m service exports it into artifact_cache on first use (service.artifact_cache)",
    )
    artifact_cache: Path = Field(
        DEFAULT_ARTIFACT_CACHE,
        description="where model's artifacts are kept, one folder per checkpoint content hash",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    ingress: Ingress = Field(
        "haproxy", description="HTTP ingress of the local launcher (service.ingress)"
    )
    route_prefix: str = "/"
    app_name: str = "embedserve"
    model_name: str | None = Field(
        None,
        description="served model id; default: the artifact's, which is the name of the "
        "checkpoint folder (or the known name) it was exported from",
    )
    backend: BackendName = "auto"
    precision: Precision = "auto"
    device: Device = "cpu"
    num_replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingSettings | None = None
    num_cpus: float = Field(1.0, gt=0, description="CPU budget of a replica: its runtime threads")
    num_gpus: float = Field(0.0, ge=0)
    streams: int = Field(
        0, ge=0, description="inference streams sharing num_cpus threads; 0: measured default"
    )
    max_ongoing_requests: int = Field(
        256, ge=2, description="requests a replica holds at once (Ray's default of 5 caps batches)"
    )
    max_queued_requests: int = Field(
        1024, ge=-1, description="requests waiting for a replica in Ray's router (-1: no bound)"
    )
    max_inputs: int = Field(2048, ge=1, description="inputs per request")
    cache_mb: float = Field(
        64.0,
        ge=0,
        description="MiB (2^20 bytes) of each replica's cache of each model's outputs for inputs "
        "it has seen (service.cache); 0: no cache, and a request's repeated inputs each run. 64 "
        "MiB is under a tenth of a replica's 728 MB RSS and holds about 33,000 of MiniLM's "
        "pooled vectors of 16-token sentences (1.5 KiB each, plus the ids and 384 bytes of "
        "overhead), or 169 inputs' token embeddings at 256 tokens",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    truncate: bool = Field(True, description="cut inputs over the model's limit (else 413)")
    chunk_overlap: int = Field(
        32,
        ge=0,
        description="tokens of text neighbouring windows share when a request asks long_input "
        "chunk (service.chunking): about a sentence, so none is only ever seen cut in two",
    )
    max_windows: int = Field(
        2048,
        ge=1,
        description="sequences a long_input chunk request may split into, all inputs counted "
        "(413 past it): as many as max_inputs' default, so a chunked request costs at most "
        "what the largest plain request does",
    )
    request_timeout_s: float | None = Field(
        300.0,
        gt=0,
        description="default deadline of a request; a client's x-request-timeout-ms can only "
        "shorten it. Inputs still queued at the deadline are dropped: 504; a second later the "
        "ingress answers 504 itself, for a replica that died silently or hangs "
        "(service.ingress.ingress_timeout_s). Must exceed the longest request's run: 2048 "
        "passages take about 90 s on one core here. None: no bound",
    )
    # A replica Ray must replace: one that stopped answering (a wedged process, a backend stuck
    # for good; ServedModel.healthy) is stopped after 3 checks in a row time out (Ray's fixed
    # threshold), then the graceful shutdown: period + 3 x timeout + grace = 27 s here against
    # Ray's 10 + 3 x 30 + 20 = 120 s. Measured with a SIGSTOPped replica under W2 load: healthy
    # again after about 37 s, no request hung; with Ray's defaults 130 s and 8 requests past a
    # 60 s client timeout. A 3x flood never took /health past 0.08 s (docs/reliability.md).
    health_check_period_s: float = Field(2.0, gt=0, description="Ray's replica health check")
    health_check_timeout_s: float = Field(5.0, gt=0, description="Ray's replica health check")
    graceful_shutdown_timeout_s: float = Field(
        10.0, ge=0, description="how long a stopping replica may finish its requests"
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="bearer keys; none: the API is open to whoever reaches it"
    )
    api_key_file: Path | None = Field(
        None,
        description="more keys, one a line (# comments and blank lines ignored), added to "
        "api_keys by load_settings: keys stay out of argv, shell history and the YAML",
    )
    startup_timeout_s: float = Field(
        600.0,
        gt=0,
        description="how long python -m service waits for the replicas to start before it "
        "gives up with one line (a replica that cannot be placed would otherwise wait forever)",
    )
    metrics_dir: Path | None = Field(
        None, description="prometheus multiprocess folder shared by the replicas of a node"
    )
    batching: BatchingConfig = BatchingConfig.model_validate({})

    @model_validator(mode="after")
    def _one_way_to_name_the_models(self) -> ServiceSettings:
        if self.models:
            given = {"model": self.model, "model_name": self.model_name}
            single = [name for name, value in given.items() if value is not None]
            single += ["artifact"] if "artifact" in self.model_fields_set else []
            if single:
                raise ValueError(
                    "models (or --artifact given more than once) lists every served model; "
                    f"drop {' and '.join(single)}"
                )
        named = [entry.name for entry in self.models if entry.name is not None]
        if len(set(named)) < len(named):
            raise ValueError("two models have the same name: give each its own")
        return self

    @property
    def served_models(self) -> list[ModelEntry]:
        """What the service serves, the default first: ``models``, else ``artifact`` alone."""
        return self.models or [ModelEntry(artifact=self.artifact, name=self.model_name)]

    @property
    def intra_op_threads(self) -> int:
        return max(1, int(self.num_cpus))


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """EMBEDSERVE_PORT=9000, EMBEDSERVE_BATCHING__MAX_BATCH_SIZE=32, EMBEDSERVE_API_KEY=a,b,
    EMBEDSERVE_MODELS=/artifacts/a,/artifacts/b (as repeated --artifact: names their own)."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in ("api_key", "api_keys"):
            out["api_keys"] = comma_list(value)
        elif name == "models":
            out["models"] = [{"artifact": path} for path in comma_list(value)]
        elif "__" in name:
            outer, inner = name.split("__", 1)
            out.setdefault(outer, {})[inner] = value
        else:
            out[name] = value
    return out


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def read_api_keys(path: Path) -> list[SecretStr]:
    """The keys in ``path``: one a line, surrounding whitespace stripped, blank lines and
    ``#`` comments skipped. Errors name the file, never a key."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"api_key_file {path}: cannot be read ({reason})") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ValueError(f"api_key_file {path}: holds no keys (one a line; # starts a comment)")
    return [SecretStr(key) for key in keys]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: Path | None = None,
    cli: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> ServiceSettings:
    """Defaults < YAML ``config_file`` < ``EMBEDSERVE_*`` environment < CLI flags.

    ``api_key_file`` (from whichever layer sets it last) is read here, its keys added to
    ``api_keys``: the replicas get the keys themselves, so the file need exist only where the
    settings are loaded (the launcher, or the node that runs the application builder).
    """
    layers: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except yaml.YAMLError as exc:
            # Where and what, not PyYAML's snippet of the file: that may hold an API key.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "cannot be parsed"
            raise ValueError(f"{config_file}: not valid YAML{where}: {problem}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings")
        layers = _merge(layers, loaded)
    layers = _merge(layers, _env_overrides(dict(os.environ if environ is None else environ)))
    layers = _merge(layers, {k: v for k, v in (cli or {}).items() if v is not None})
    settings = ServiceSettings.model_validate(layers)
    if settings.api_key_file is None:
        return settings
    # Loading twice (the launcher, then build_app) must not list a key twice.
    keys = [*settings.api_keys, *read_api_keys(settings.api_key_file)]
    unique = dict.fromkeys(key.get_secret_value() for key in keys)
    return settings.model_copy(update={"api_keys": [SecretStr(key) for key in unique]})
