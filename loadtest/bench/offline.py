"""Offline throughput: the same texts through each encoder in-process, no HTTP, no server.

Each embedserve backend runs through exactly the replica's code path: tokenize with the
artifact's tokenizer, sort by length, cut into micro-batches (``plan_micro_batches``), ``pad``,
``backend.run``, normalise. sentence-transformers runs its own ``encode``. Both get the texts in
the same batches as the served workloads' requests.

The machine is shared and noisy, so encoders are measured in interleaved rounds (each round runs
every encoder once, in rotating order): a burst of someone else's load hurts one round of each
encoder rather than all rounds of one. The best round is reported (the median is kept too):
torch eager at two OpenMP threads slows down tenfold or more whenever another tenant takes a
core, far more than ONNX Runtime or OpenVINO, so the best round is the estimate that is fair
to the sentence-transformers baseline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from common.arrays import encode_batches, normalize_rows
from service.batching import plan_micro_batches
from service.settings import BackendName, Precision, ServiceSettings

log = logging.getLogger(__name__)


class TokenizesTexts(Protocol):
    """What the replica's path needs of a tokenizer (``models.Tokenizer`` or a test's)."""

    def tokenize(self, texts: list[str]) -> list[list[int]]: ...


class RunsBatches(Protocol):
    """What the replica's path needs of a backend (``service.backends.base.Backend``)."""

    name: str
    precision: str

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


class Encoder:
    """Texts in, unit-length float32 vectors out, in input order."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class SentenceTransformersEncoder(Encoder):
    def __init__(self, folder: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = "sentence-transformers fp32"
        self.model = SentenceTransformer(folder, device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        out = self.model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)


class BackendEncoder(Encoder):
    """An embedserve backend behind the replica's batching steps (one request = one batch).

    ``label`` tells apart encoders of the same backend and precision.
    """

    def __init__(
        self,
        backend: RunsBatches,
        tokenizer: TokenizesTexts,
        pad_id: int,
        overhead_tokens: int,
        label: str = "",
    ) -> None:
        self.backend = backend
        self.name = f"embedserve {backend.name} {backend.precision} (offline{label})"
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.overhead_tokens = overhead_tokens

    def variant(self, label: str, backend: RunsBatches | None = None) -> BackendEncoder:
        """The same kind of encoder with another backend instance, named apart."""
        return type(self)(
            backend or self.backend, self.tokenizer, self.pad_id, self.overhead_tokens, label
        )

    def calls(self, lengths: Sequence[int]) -> list[list[int]]:
        """The inputs (indices) of each backend call, in call order: sorted by length and cut by
        ``plan_micro_batches`` as the replica does."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        cuts = plan_micro_batches([lengths[i] for i in order], self.overhead_tokens)
        return [order[start:end] for start, end in cuts]

    def encode(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer.tokenize(texts)
        batches = self.calls([len(x) for x in ids])
        return normalize_rows(encode_batches(ids, self.backend.run, self.pad_id, batches=batches))


# Every CPU path the service offers; those this machine or artifact lacks are skipped.
CPU_BACKENDS: tuple[tuple[BackendName, Precision], ...] = (
    ("torch", "fp32"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
)


def replica_settings(artifact: Path, backend: str, precision: str, cpus: int) -> ServiceSettings:
    """A replica's settings for ``backend`` and ``precision`` (names checked here: a
    ``ValueError`` for one the service does not know) on ``cpus`` CPUs."""
    return ServiceSettings.model_validate(
        {"artifact": artifact, "backend": backend, "precision": precision, "num_cpus": cpus}
    )


def backend_encoders(
    artifact_dir: Path,
    threads: int,
    only: Sequence[tuple[str, str]] = CPU_BACKENDS,
    label: str = "",
) -> tuple[list[BackendEncoder], dict[str, str]]:
    """The service's backends (``only`` those (name, precision)), built by the service's own
    ``create_backend`` as a replica builds them (same artifact, same thread budget); and why
    any were skipped."""
    from export.artifact import load_artifact
    from export.errors import ExportError
    from models.tokenizer import Tokenizer
    from service.backends import create_backend

    artifact = load_artifact(artifact_dir)
    config = artifact.config
    if artifact.tokenizer_path is None:
        raise ValueError(f"{artifact_dir} has no tokenizer: the benchmark encodes text")
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length)
    encoders: list[BackendEncoder] = []
    skipped: dict[str, str] = {}
    for name, precision in only:
        try:
            settings = replica_settings(artifact_dir, name, precision, threads)
            backend, _ = create_backend(settings, artifact)
        except (ValueError, ExportError, ImportError) as exc:
            skipped[f"{name} {precision}"] = str(exc)
            log.info("skipping %s %s: %s", name, precision, exc)
            continue
        encoders.append(
            BackendEncoder(
                backend, tokenizer, config.pad_token_id,
                settings.batching.micro_batch_overhead_tokens, label=label,
            )
        )  # fmt: skip
    return encoders, skipped


@dataclass
class Measurement:
    """One encoder on one shape, over all rounds."""

    encoder: str
    shape: str
    inputs_per_round: int
    round_s: list[float] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None  # from the first round, in batch order

    @property
    def inputs_per_s(self) -> float:
        """Best round: the least disturbed by other tenants (and the kindest to the baseline)."""
        return self.inputs_per_round / min(self.round_s)

    @property
    def median_inputs_per_s(self) -> float:
        return self.inputs_per_round / float(np.median(self.round_s))


def one_pass(encoder: Encoder, batches: list[list[str]]) -> float:
    """Inputs/s of one pass over ``batches`` (for the paired served-vs-offline check)."""
    start = time.perf_counter()
    for batch in batches:
        encoder.encode(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def streams_pass(encoders: Sequence[Encoder], batches: list[list[str]]) -> float:
    """Inputs/s of one pass over ``batches`` dealt round-robin to ``encoders``, each called from
    its own thread: a replica's inference streams run offline, with no server around them."""
    n = len(encoders)

    def work(k: int) -> None:
        for batch in batches[k::n]:
            encoders[k].encode(batch)

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(work, range(n)))
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def stream_encoders(
    encoder: BackendEncoder, artifact_dir: Path, threads: int
) -> list[BackendEncoder]:
    """``encoder``'s backend as the service builds it for a replica of ``threads`` CPUs: one
    encoder per inference stream (a single one when that backend runs one stream)."""
    from export.artifact import load_artifact
    from service.backends import create_backends

    backend = encoder.backend
    settings = replica_settings(artifact_dir, backend.name, backend.precision, threads)
    streams = create_backends(settings, load_artifact(artifact_dir)).streams
    return [
        encoder.variant(f", stream {k + 1}/{len(streams)}", backend=b)
        for k, b in enumerate(streams)
    ]


def measure(
    encoders: Sequence[Encoder],
    shapes: dict[str, list[list[str]]],
    rounds: int,
    into: dict[tuple[str, str], Measurement] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], Measurement]:
    """Time every encoder on every shape's batches, ``rounds`` interleaved times."""
    results = into if into is not None else {}
    for encoder in encoders:  # first calls pay for allocation and kernel selection
        for batches in shapes.values():
            encoder.encode(batches[0])
    for r in range(rounds):
        for shape, batches in shapes.items():
            turn = r % len(encoders)
            for encoder in [*encoders[turn:], *encoders[:turn]]:
                key = (encoder.name, shape)
                m = results.setdefault(
                    key, Measurement(encoder.name, shape, sum(len(b) for b in batches))
                )
                vectors = []
                start = time.perf_counter()
                for batch in batches:
                    t = time.perf_counter()
                    vectors.append(encoder.encode(batch))
                    m.batch_ms.append((time.perf_counter() - t) * 1000)
                m.round_s.append(time.perf_counter() - start)
                if m.vectors is None:
                    m.vectors = np.concatenate(vectors)
                log.info(
                    "round %d %s %s: %.1f inputs/s",
                    r + 1,
                    shape,
                    encoder.name,
                    m.inputs_per_round / m.round_s[-1],
                )
        if on_round is not None:
            on_round(r)
    return results
