"""Models measured beside all-MiniLM-L6-v2 (issue 16): today all-mpnet-base-v2.

For each model, in one run: the cosine to sentence-transformers fp32 of our fp32 PyTorch encoder
and of the served default path (``python -m service`` with its default backend choice), and the
served throughput of a closed loop of sentence batches as a ratio to sentence-transformers fp32
offline on the same sentences, in back-to-back pairs as issue 5's ratio is measured.

Sizing, for two cores: MPNet-base does 8.0× MiniLM's matmul work per sentence (12 layers of
768 against 6 of 384; ``work_vs_main`` reports it), and sentence-transformers ran it at 18-36
sentences/s here. Parity therefore uses one sentence in six (the single-sentence rows' cut) and
8 passages rather than the whole corpus (``tests/models/test_mpnet_real.py`` covers all of it
for the fp32 encoder), and throughput 3 pairs of a 10 s served run (16 sentences per request,
4 clients: 30-45 requests, so the window's edges move the rate by a few % at most) against one
offline pass over the first 8 of those requests. Measured: 200 s with server start-up, at a
load average of 5 on the two cores (other sessions' tests beside it); the export to
``artifacts/`` is extra, on the first run only (9 min there, most of it the export's parity).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import texts as corpus
from common.arrays import cosine_rows

from ..stats import median_ratio
from ..workload import chunks
from . import flops, offline, served
from .collect import served_system
from .results import Accuracy, ExtraModelResult

log = logging.getLogger(__name__)

PARITY_STRIDE = 6  # one sentence in six, as the single-sentence rows take them
PARITY_PASSAGES = 8
PARITY_BATCH = 32  # sentences per request when fetching served vectors (passages: 8)
LOOP = served.ClosedLoop(workload="batch", shape="short32", inputs=16, clients=4, seconds=10)
OFFLINE_REQUESTS = 8  # the offline pass: the sentences of the loop's first 8 requests
PAIRS = 3
ST_SYSTEM = "sentence-transformers fp32"
OURS_SYSTEM = "embedserve torch fp32 (models.load_pretrained)"


@dataclass(frozen=True)
class ExtraModel:
    """A model the bench measures beside MiniLM: ``folder`` finds (or assembles) its
    sentence-transformers folder, exported once to ``artifact``."""

    key: str  # the name ``--only`` takes
    name: str
    folder: Callable[[], Path]
    artifact: Path


def _mpnet_folder() -> Path:
    from models.packaged import all_mpnet_base_v2

    return all_mpnet_base_v2()


EXTRA_MODELS = {
    m.key: m
    for m in (
        ExtraModel(
            "mpnet", "all-mpnet-base-v2", _mpnet_folder, Path("artifacts/all-mpnet-base-v2")
        ),
    )
}


def parity_batches() -> list[list[str]]:
    """The parity texts as requests: sentences in 32s, then passages in 8s."""
    sentences = corpus.sentences()[::PARITY_STRIDE]
    passages = corpus.passages()[:PARITY_PASSAGES]
    cut = [sentences[i : i + PARITY_BATCH] for i in range(0, len(sentences), PARITY_BATCH)]
    return cut + [passages]


def throughput_batches() -> list[list[str]]:
    """The sentences the served loop's first requests carry (it walks the corpus in order)."""
    return chunks(corpus.sentences(), LOOP.inputs, OFFLINE_REQUESTS)


def _accuracy(vectors: np.ndarray, reference: np.ndarray) -> Accuracy:
    cos = cosine_rows(vectors, reference)
    return Accuracy(texts=len(cos), min_cosine=float(cos.min()), mean_cosine=float(cos.mean()))


def work_vs_main(artifact: Path, main_artifact: Path, sentences: list[str]) -> float:
    """Mean matmul FLOPs per sentence of ``artifact`` over ``main_artifact``'s, each model
    with its own tokenizer on the same sentences."""
    return flops.mean_flops(
        flops.artifact_encoder_config(artifact), flops.token_lengths(artifact, sentences)
    ) / flops.mean_flops(
        flops.artifact_encoder_config(main_artifact), flops.token_lengths(main_artifact, sentences)
    )


def measure_model(
    model: ExtraModel, main_artifact: Path, threads: int, scale: float, work_dir: Path
) -> ExtraModelResult:
    """Parity and the served/offline ratio of ``model``; exports it first if needed."""
    from models import load_pretrained

    folder = model.folder()
    served.ensure_artifact(model.artifact, str(folder))
    start = time.perf_counter()
    batches = parity_batches()
    texts = [t for batch in batches for t in batch]
    log.info("%s: sentence-transformers fp32 and our fp32 encoder on %d texts", model.name,
             len(texts))  # fmt: skip
    reference_encoder = offline.SentenceTransformersEncoder(str(folder))
    reference = np.concatenate([reference_encoder.encode(batch) for batch in batches])
    ours = load_pretrained(folder).encode(texts, batch_size=PARITY_BATCH)
    accuracy = {OURS_SYSTEM: _accuracy(ours, reference)}
    sentences = throughput_batches()
    log_file = work_dir / f"{model.key}-server.log"
    with served.embedserve(model.artifact, threads, log_file) as server:
        vectors = served.served_vectors(server.url, batches)
        system = served_system(served.server_info(server.url))
        accuracy[system] = _accuracy(vectors, reference)
        log.info("%s: %s against %s offline, in back-to-back pairs", model.name, system, ST_SYSTEM)
        seconds = LOOP.seconds * scale
        pairs = served.paired_closed_loop(
            server.url, LOOP, lambda: offline.one_pass(reference_encoder, sentences), PAIRS, seconds
        )
    for name, acc in accuracy.items():
        log.info("%s: %s min cosine %.6f", model.name, name, acc.min_cosine)
    ratio = median_ratio(pairs)
    log.info("%s: served / %s offline = %.2f", model.name, ST_SYSTEM, ratio)
    n_sentences = len(corpus.sentences()[::PARITY_STRIDE])
    return ExtraModelResult(
        model=model.name,
        threads=threads,
        parity_texts={"sentences": n_sentences, "passages": len(texts) - n_sentences},
        accuracy=accuracy,
        served_system=system,
        inputs_per_request=LOOP.inputs,
        clients=LOOP.clients,
        seconds_per_served_run=seconds,
        pairs=pairs,
        offline_inputs_per_s=float(np.median([o for o, _ in pairs])),
        served_inputs_per_s=float(np.median([s for _, s in pairs])),
        ratio=ratio,
        work_vs_main=work_vs_main(model.artifact, main_artifact, [t for b in sentences for t in b]),
        seconds=time.perf_counter() - start,
    )


def measure_all(
    keys: list[str], main_artifact: Path, threads: int, scale: float, work_dir: Path
) -> tuple[list[ExtraModelResult], dict[str, str]]:
    """Each of ``keys``' models measured; those that cannot be (parts not installed, a family
    we cannot load) are skipped with the reason, so the rest of the bench still reports."""
    from models import CheckpointError

    results, skipped = [], {}
    for key in keys:
        model = EXTRA_MODELS[key]
        try:
            results.append(measure_model(model, main_artifact, threads, scale, work_dir))
        except CheckpointError as exc:
            log.warning("skipping %s: %s", model.name, exc)
            skipped[model.name] = str(exc)
    return results, skipped
