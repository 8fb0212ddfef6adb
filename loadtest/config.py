"""The configuration of one load test: every knob, validated once, stored in the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Api = Literal["openai", "tei", "rerank"]  # rerank: TEI's /rerank, one query and its documents
EncodingFormat = Literal["float", "base64"]
Mode = Literal["open", "closed"]
# Built-in texts (--workload); "pairs": a query and --batch-size documents, for --api rerank.
BuiltinWorkload = Literal["short", "batch", "long", "mixed", "pairs"]
Workload = Literal[BuiltinWorkload, "file"]  # "file": the texts of --texts

DEFAULT_PATHS: dict[str, str] = {"openai": "/v1/embeddings", "tei": "/embed", "rerank": "/rerank"}
DEFAULT_DURATION_S = 30.0
DEFAULT_SWEEP_STEP_S = 10.0
DEFAULT_SWEEP_START_RPS = 5.0


class LoadConfig(BaseModel):
    """What to load, how hard, for how long. Bounds are always set: a run stops by itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="server base URL, or the full endpoint URL")
    api: Api = "openai"
    model: str | None = Field(
        default=None, description="model field of OpenAI requests; x-model header of TEI's"
    )
    encoding_format: EncodingFormat = "float"
    api_key: SecretStr | None = None

    mode: Mode = "closed"
    rate: float | None = Field(
        default=None, gt=0, description="open loop: requests/s (sweep: start)"
    )
    concurrency: int = Field(default=1, ge=1, description="closed loop: clients back to back")
    sweep: bool = False
    slo_p99_ms: float = Field(default=100.0, gt=0)
    sweep_factor: float = Field(
        default=1.5, gt=1.0, description="rate multiplier between sweep steps"
    )
    sweep_max_steps: int = Field(default=12, ge=1)
    sweep_refine: int = Field(
        default=2, ge=0, description="bisection steps after the first failure"
    )

    workload: Workload = "short"
    batch_size: int | None = Field(default=None, ge=1, description="inputs per request")
    texts: Path | None = None

    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, ge=1)
    warmup_s: float = Field(default=0.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    max_in_flight: int | None = Field(
        default=None, ge=1, description="open loop: cap before dropping"
    )
    seed: int = 0

    name: str | None = Field(default=None, description="label for plots and compare tables")
    out: Path | None = None
    progress: bool = True
    write_samples: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> LoadConfig:
        if self.texts is not None and self.workload != "file":
            object.__setattr__(self, "workload", "file")
        if self.workload == "file" and self.texts is None:
            raise ValueError("workload 'file' needs --texts FILE")
        if self.workload == "short" and self.batch_size not in (None, 1):
            raise ValueError("workload 'short' sends one sentence per request; use 'batch'")
        if (self.api == "rerank") != (self.workload == "pairs"):
            raise ValueError("--api rerank and --workload pairs go together: a query and documents")
        if self.sweep:
            object.__setattr__(self, "mode", "open")
            if self.rate is None:
                object.__setattr__(self, "rate", DEFAULT_SWEEP_START_RPS)
        if self.mode == "open" and self.rate is None:
            raise ValueError("open loop needs --rate")
        if self.duration_s is None and self.requests is None:
            default = DEFAULT_SWEEP_STEP_S if self.sweep else DEFAULT_DURATION_S
            object.__setattr__(self, "duration_s", default)
        scheme = urlsplit(self.url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"url must be http(s)://..., got {self.url!r}")
        return self

    @property
    def endpoint(self) -> str:
        """The URL requests go to: the URL itself when it names a path, else the API's route."""
        parts = urlsplit(self.url)
        if parts.path not in ("", "/"):
            return self.url
        return self.base_url + DEFAULT_PATHS[self.api]

    @property
    def base_url(self) -> str:
        """scheme://host:port, where ``/info`` and ``/metrics`` are looked for."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def inputs_per_request(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 32 if self.workload in ("batch", "mixed", "pairs") else 1

    def in_flight_cap(self) -> int:
        """Open loop: beyond this many requests in flight, new arrivals are dropped (errors).

        Ten seconds of arrivals by default: far past any useful latency, short of exhausting
        sockets or memory when the server stops answering.
        """
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(64, int(10 * (self.rate or 1.0)))

    def public(self) -> dict[str, object]:
        """The configuration as stored in ``summary.json`` (the API key masked)."""
        data = self.model_dump(mode="json")
        data["api_key"] = "***" if self.api_key is not None else None
        data["endpoint"] = self.endpoint
        return data
