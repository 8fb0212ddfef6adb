"""The benchmark's typed results: what ``results.json`` holds and the report is rendered from."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from ..server import ServerSplit
from ..stats import LatencyStats, median_ratio
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
    inputs_per_request: int  # W2's request and clients, as ``served.CLOSED_LOOPS`` sets them
    clients: int
    target: float = 0.9
    # Offline is the faster, in each pair, of one caller on one stream and the server's own
    # streams each fed by a thread (1: the backend has one stream, so both ways are the same).
    offline_streams: int = 1


class MatmulTrial(BaseModel):
    """One bf16 matrix multiply (m×k)·(k×n), timed: best of ``repeats`` after a warm-up."""

    method: str
    m: int
    k: int
    n: int
    tflops: float
    repeats: int

    @property
    def shape(self) -> str:
        return f"({self.m}×{self.k})·({self.k}×{self.n})"


class PeakResult(BaseModel):
    """The machine's measured bf16 matmul peak at the benchmark's thread count: the best trial
    over methods and shapes (``method`` and ``shape`` name it), every trial kept."""

    threads: int
    method: str
    shape: str
    tflops: float
    trials: list[MatmulTrial]
    skipped: dict[str, str] = {}
    seconds: float  # spent measuring, all runs together
    runs: int = 1  # measurements combined (``flops.best_of``): best trial per method and shape


class FlopRate(BaseModel):
    """Useful FLOP/s of one long-passage row: its inputs/s × the mean FLOPs per passage."""

    row: str  # Row.key
    section: Section
    system: str
    inputs_per_s: float
    gflops: float
    fraction_of_peak: float
    median_gflops: float | None = None  # offline: from the median round
    median_fraction_of_peak: float | None = None


class LongPassageFlops(BaseModel):
    """Issue 8's bar: FLOP/s on long passages as a fraction of the bf16 matmul peak.

    FLOPs are counted from the encoder config on real tokens only (``loadtest.bench.flops``):
    matmul work only, 2 FLOPs per multiply-add, padding not counted.
    """

    encoder: dict[str, int]  # n_layers, d_model, n_heads, d_ff: what the FLOPs are counted from
    texts: int
    mean_tokens: float
    max_tokens: int
    mean_flops: float  # per passage
    peak: PeakResult
    rates: list[FlopRate]
    target: float = 0.4


class ServedVariant(BaseModel):
    """One server configuration under short W1 + W2 runs (issue 8's served before/after pairs):
    each variant in a fresh server, warmed up alike, the variants back to back."""

    key: str  # "proxy", "streams", "default", "replicas", "wait": what optimisations refer to
    flags: list[str]  # added to ``python -m service``; [] = the defaults
    ingress: str | None  # as the server's /info reported them
    batch_wait_timeout_s: float | None
    w1_p50_ms: float | None
    w1_p99_ms: float | None
    w2_inputs_per_s: float
    w2_p50_ms: float | None
    errors: int  # over both runs
    seconds: dict[str, float]  # measured seconds per workload (warm-up excluded)
    min_cosine: float | None = None  # vectors of every sentence (the warm-up requests)
    streams: int | None = None  # inference streams per replica, from /info


Format = Literal["number", "percent", "cosine"]


class Metric(BaseModel):
    """One measured quantity at each stage of an optimisation, before first, after last."""

    name: str
    values: list[float | None]
    format: Format = "number"
    digits: int = 1
    ratio: bool = True  # False: no ratio makes sense (accuracy)

    def step(self, i: int) -> float | None:
        """Stage ``i`` over stage ``i - 1``."""
        return _over(self.values[i], self.values[i - 1]) if self.ratio and i > 0 else None

    @property
    def overall(self) -> float | None:
        """After ÷ before: the last stage over the first."""
        return _over(self.values[-1], self.values[0]) if self.ratio else None


def _over(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


class Optimisation(BaseModel):
    """Issue 8: one optimisation, before → after, every number measured in the same run."""

    key: str
    title: str
    stages: list[str]  # before, (intermediate steps,) after
    metrics: list[Metric]
    method: str  # how it was measured, for the report


class Rss(BaseModel):
    """Resident memory (VmRSS) in MiB: the replica process(es), where queued inputs live, and
    the launcher's whole process tree (raylet, GCS, HAProxy, ...; shared pages once per process).
    """

    replica_mib: float | None  # None: no replica process found
    tree_mib: float


BULK_PHASES = ("interactive alone", "bulk alone", "bulk + interactive")  # BulkQos.seconds' keys


class BulkQos(BaseModel):
    """A bulk client (one request of ``bulk_inputs_per_request`` passages in flight) beside an
    interactive one (one sentence in flight); latencies over OK answers only."""

    seconds: dict[str, float]  # BULK_PHASES -> length
    bulk_inputs_per_request: int
    interactive_alone: LatencyStats
    interactive_beside_bulk: LatencyStats
    # Each OK bulk request's inputs spread evenly over its time in flight (qos.prorated_...)
    bulk_alone_inputs_per_s: float
    bulk_beside_inputs_per_s: float
    statuses: dict[str, dict[str, int]]  # client -> status (summary.status_key) -> requests
    target_p50_ms: float = 150.0
    target_p99_ms: float = 400.0
    target_ratio: float = 0.85

    @property
    def ratio(self) -> float | None:
        """Bulk throughput beside the interactive client over bulk throughput alone."""
        return _over(self.bulk_beside_inputs_per_s, self.bulk_alone_inputs_per_s)


class HugeInputQos(BaseModel):
    """One request whose single input is ``input_bytes`` of text, back to back, beside an
    interactive client; the server truncates the input to the model's limit."""

    seconds: float
    input_bytes: int
    interactive: LatencyStats
    huge: LatencyStats
    statuses: dict[str, dict[str, int]]  # client -> status -> requests


class OverloadQos(BaseModel):
    """Poisson arrivals of W2's requests at a multiple of W2's capacity, then recovery."""

    capacity_rps: float  # W2's requests/s in the same run
    offered_rps: float
    seconds: float
    inputs_per_request: int
    statuses: dict[str, int]  # every status (summary.status_key) of the flood's requests
    admitted: LatencyStats  # OK answers
    refused: LatencyStats  # 429s
    server_errors: int  # any 5xx
    other_errors: int  # neither OK, 429 nor 5xx: other 4xx, timeouts, connection errors, drops
    idle_p50_ms: float | None  # single sentences, back to back, just before the flood
    recovery_s: float | None  # None: not recovered within recovery_bound_s
    recovery_run: int  # consecutive single sentences under 2x idle_p50_ms that mean recovered
    recovery_bound_s: float
    recovery_probes: int
    probe_pause_s: float  # before the next probe after one that was not OK
    timeout_s: float  # the client's: a request unanswered by then counts as a timeout
    rss: dict[str, Rss]  # "before", "right after", "after recovery"


class QosResults(BaseModel):
    """Quality of service under load (``loadtest.bench.qos``), run in the main server last."""

    bulk: BulkQos
    huge_input: HugeInputQos
    overload: OverloadQos
    plots: list[str]  # relative to the report's folder
    seconds: float  # wall time of the three scenarios


class Studies(BaseModel):
    """Issue 8's one-off optimisation studies (``--studies``): what ran and what it showed."""

    served_variants: list[ServedVariant]  # in the order they ran
    optimisations: list[Optimisation]  # before → after, one per optimisation
    seconds: float


class ExtraModelResult(BaseModel):
    """A model measured beside all-MiniLM-L6-v2 (``loadtest.bench.extra_models``): accuracy
    against sentence-transformers fp32 and served throughput over it, both in the same run."""

    model: str
    threads: int  # the server's --num-cpus and sentence-transformers' torch threads
    parity_texts: dict[str, int]  # "sentences", "passages": how many of each were compared
    accuracy: dict[str, Accuracy]  # system -> cosine to sentence-transformers fp32
    served_system: str  # "embedserve <backend> <precision> served", from /info
    inputs_per_request: int  # the served closed loop: sentences per request, clients
    clients: int
    seconds_per_served_run: float
    pairs: list[tuple[float, float]]  # (sentence-transformers offline, served) inputs/s
    offline_inputs_per_s: float  # medians over the pairs
    served_inputs_per_s: float
    ratio: float  # median over the pairs of served / offline
    work_vs_main: float  # matmul FLOPs per sentence over all-MiniLM-L6-v2's, same sentences
    seconds: float  # wall time of the section, export excluded


class ServedRun(BaseModel):
    """One closed-loop run, as the several-models comparison keeps it."""

    inputs_per_s: float
    latency_ms: LatencyStats
    errors: int


class SeveralModels(BaseModel):
    """The default model's W1 on a single-model service and on a service of ``models`` (the
    default first), both up at once, run back to back ``pairs`` times in alternating order."""

    models: list[str]
    clients: int
    seconds_per_run: float
    pairs: list[tuple[ServedRun, ServedRun]]  # (single-model service, several-model service)


class PairedThroughput(BaseModel):
    """Served against offline on the same work, measured back to back in ``pairs``
    (``served.paired_closed_loop``); the summary numbers are medians over the pairs."""

    clients: int
    seconds_per_served_run: float
    pairs: list[tuple[float, float]]  # (offline, served) per second

    @property
    def offline_per_s(self) -> float:
        return float(np.median([o for o, _ in self.pairs]))

    @property
    def served_per_s(self) -> float:
        return float(np.median([s for _, s in self.pairs]))

    @property
    def ratio(self) -> float:
        """Served over offline: the median pair's."""
        return median_ratio(self.pairs)


class RerankResult(BaseModel):
    """``loadtest.bench.rerank``: a cross-encoder served beside all-MiniLM-L6-v2, against
    sentence-transformers' ``CrossEncoder`` fp32 offline on the same pairs, in the same run."""

    model: str  # the reranker as the service names it
    checkpoint: str  # how it was made (``loadtest.bench.reranker``)
    threads: int
    served_system: str  # "embedserve <backend> <precision> served", from /info's models
    score_pairs: int  # (query, document) pairs whose scores were compared
    max_abs_score: dict[str, float]  # system -> max |score - CrossEncoder's| (sigmoid scores)
    bf16_max_abs_score: float | None  # the export's own measurement, from the manifest
    documents_per_request: int  # the served closed loop: one query and this many documents
    throughput: PairedThroughput  # (CrossEncoder offline, served) pairs/s
    several: SeveralModels
    seconds: float  # wall time of the section, export excluded
    # load average (1/5/15 min) at the section's start and end; None in the first results
    load_avg: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None


class BenchSettings(BaseModel):
    """How this run was set up: what the report's method notes quote."""

    rounds: int  # interleaved offline rounds
    threads: int
    quick: bool
    slo_p99_ms: float
    single_stride: int  # the single-sentence rows take one sentence in this many
    clients: dict[str, int]  # closed-loop workload (w1...) -> clients
    durations: dict[str, str]  # served run -> its measured length
    reproduce_w2: str  # the ``python -m loadtest`` line of W2
    skipped_backends: dict[str, str] = {}  # "name precision" -> why not measured


class BenchResults(BaseModel):
    generated_at: str
    command: str
    duration_s: float
    machine: Machine
    settings: BenchSettings
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
    long_flops: LongPassageFlops | None = None  # issue 8: FLOP/s against the bf16 peak
    studies: Studies | None = None  # only with --studies
    qos: QosResults | None = None  # quality of service under load; absent in older results
    extra_models: list[ExtraModelResult] = []  # models measured beside MiniLM (issue 16)
    extra_models_skipped: dict[str, str] = {}  # model -> why it was not measured
    rerank: RerankResult | None = None  # a reranker beside MiniLM, several models (issue 17)
    rerank_skipped: str | None = None  # why the rerank section was not measured
    sections: dict[str, dict[str, Any]] = {}  # loadtest.bench.sections' results, by KEY
