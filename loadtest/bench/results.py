"""The benchmark's typed results: what ``results.json`` holds and the report is rendered from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from ..server import ServerSplit
from ..summary import SweepResult
from .cpu import CpuBreakdown

Section = Literal["offline", "served"]


class Shape(BaseModel):
    """A request shape: which texts, how many per request/batch."""

    key: str  # "single", "short32", "long8"
    label: str
    inputs_per_request: int
    texts: int  # distinct texts measured


class Row(BaseModel):
    key: str
    section: Section
    system: str
    shape: str  # Shape.key: rows with the same shape ran the same texts
    load: str  # "batch loop", "closed ×4", "open sweep", ...
    inputs_per_s: float  # offline: best round; served: over the measured phase
    median_inputs_per_s: float | None = None  # offline: median round
    requests_per_s: float
    p50_ms: float | None  # per batch (offline) or per request (served)
    p99_ms: float | None
    mean_ms: float | None = None
    vs_baseline: float | None = None  # inputs/s ÷ sentence-transformers' on the same shape
    min_cosine: float | None = None  # vs fp32 PyTorch (models.load_pretrained)
    client_cpu_pct: float | None = None  # served: the load generator's CPU, % of one core
    note: str = ""


class Accuracy(BaseModel):
    texts: int
    min_cosine: float
    mean_cosine: float


class ClientOverhead(BaseModel):
    """The load generator against a stub server that does no work."""

    shape: str
    concurrency: int
    requests_per_s: float
    cpu_ms_per_request: float
    p50_ms: float | None


class Machine(BaseModel):
    cpu_model: str
    cores: int
    avx512_bf16: bool
    amx: bool
    python: str
    platform: str
    versions: dict[str, str]
    git_commit: str | None
    git_dirty: bool | None
    load_avg_start: tuple[float, float, float]
    load_avg_end: tuple[float, float, float] | None = None


class ServedVsOffline(BaseModel):
    """Issue 5's bar: W2 served throughput over the same backend offline on the same texts.

    ``ratio`` is the median over back-to-back (offline, served) pairs; ``pairs`` holds them.
    """

    backend: str  # the offline encoder matching the server's /info backend and precision
    served_inputs_per_s: float
    offline_inputs_per_s: float
    ratio: float
    pairs: list[tuple[float, float]]
    seconds_per_served_run: float
    target: float = 0.9


class BenchResults(BaseModel):
    generated_at: str
    command: str
    duration_s: float
    machine: Machine
    settings: dict[str, object]
    shapes: list[Shape]
    rows: list[Row]
    accuracy: dict[str, Accuracy]
    served_vs_offline: ServedVsOffline | None
    server_split: dict[str, ServerSplit | None]
    cpu_w2: CpuBreakdown | None = None  # where the cores went during W2
    server_info: dict[str, object] | None
    sweep: SweepResult | None
    client_overhead: list[ClientOverhead]
    plots: list[str]
