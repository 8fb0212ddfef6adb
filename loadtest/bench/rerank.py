"""A cross-encoder served beside all-MiniLM-L6-v2, and what a second model costs the first
(issue 17).

Two services run at once on the same cores: all-MiniLM-L6-v2 alone, and all-MiniLM-L6-v2 (the
default) with the reranker (``reranker``: ms-marco-MiniLM-L-6-v2's shape). Against the
two-model service: the reranker's ``/rerank`` scores to sentence-transformers' ``CrossEncoder``
fp32 (sigmoid scores, on the first requests' pairs), and its throughput, requests of one query
and 32 documents (passages and sentences alternating, ``workload.rerank_requests``) from W2's 4
clients, in back-to-back pairs with ``CrossEncoder.predict`` offline on the first requests'
pairs. Then MiniLM's W1 on each service, alternated, so "a second model costs the first
nothing" is a measurement: the idle service beside the measured one is there in both.

Sizing, for two cores: a pair is ~140 tokens on average (half the documents are ~250-token
passages), and ``CrossEncoder`` pads a request's 32 pairs to its longest (~300 tokens); it ran
at 2.6-5.5 pairs/s here under other sessions' tests (load average 6-10), where torch's two
threads suffer most (sorting a request's pairs by length into batches of 8 did no better: 3.2
pairs/s against 3.0-3.1, so padding is not the gap). Hence 2 requests (64 pairs) for the
scores, one (32 pairs) per offline pass, 10 s served runs, 3 pairs; W1 runs of 4 s (100-400
requests each) in 6 pairs, short and many so that the alternation, not one lucky run, decides.
The two services start at once. Measured at load average 5-9: 226 s (22 s reference and bf16
backend, 38 s start-ups, 90 s throughput, 68 s W1); the first version (sequential start-ups,
2-request offline passes, 4 W1 pairs of 6 s) took 325 s. The export to ``artifacts/`` is
extra, on the first run only (2.5 min, most of it the export's parity).
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from pathlib import Path

import numpy as np

from common.arrays import encode_batches, sigmoid

from ..api import request_body, request_headers, vectors
from ..config import LoadConfig
from ..driver import run
from ..workload import rerank_requests
from . import offline, served
from .collect import served_system
from .results import PairedThroughput, RerankResult, ServedRun, SeveralModels

log = logging.getLogger(__name__)

KEY = "rerank"  # the name ``--only`` takes
LOOP = served.ClosedLoop(
    workload="pairs", shape="rerank32", inputs=32, clients=4, seconds=10, api="rerank"
)
REQUESTS = 2  # the score comparison: the loop's first requests
OFFLINE_REQUESTS = 1  # the offline pass: the first of them
PAIRS = 3
W1 = served.CLOSED_LOOPS["w1"]
W1_SECONDS = 4
W1_PAIRS = 6
CROSS_ENCODER = "sentence-transformers CrossEncoder fp32"
BF16_SYSTEM = "embedserve openvino bf16 (the service's backend, offline)"

Request = tuple[str, list[str]]  # a query and its documents


class CrossEncoderScorer:
    """sentence-transformers' ``CrossEncoder`` on CPU: one query's documents in one batch, as a
    served request is scored; sigmoid scores (its default for one label)."""

    def __init__(self, folder: Path) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(str(folder), device="cpu")

    def scores(self, query: str, documents: list[str]) -> np.ndarray:
        pairs = [(query, d) for d in documents]
        out = self.model.predict(pairs, batch_size=len(pairs), show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def offline_pass(scorer: CrossEncoderScorer, requests: list[Request]) -> float:
    """Pairs/s of one pass over ``requests``."""
    start = time.perf_counter()
    for query, documents in requests:
        scorer.scores(query, documents)
    return sum(len(d) for _, d in requests) / (time.perf_counter() - start)


def served_scores(url: str, model: str, requests: list[Request]) -> np.ndarray:
    """``/rerank`` scores of every pair (``model`` named in ``x-model``), in request order."""
    config = LoadConfig(url=url, api="rerank", workload="pairs", model=model)
    out = []
    for query, documents in requests:
        body = request_body(config, [query, *documents])
        request = urllib.request.Request(config.endpoint, body, request_headers(config))
        with urllib.request.urlopen(request, timeout=120) as response:
            out.append(vectors(config, response.read())[:, 0])  # (documents,)
    return np.concatenate(out)


def backend_scores(
    artifact_dir: Path, precision: str, threads: int, requests: list[Request]
) -> np.ndarray:
    """Sigmoid scores of every pair from the service's own OpenVINO backend at ``precision``,
    built as a replica of ``threads`` CPUs builds it, on the replica's pair tokens: what
    ``--precision bf16`` serves, without a third server to start."""
    from export.artifact import load_artifact
    from models.tokenizer import Tokenizer
    from service.backends import create_backend

    artifact = load_artifact(artifact_dir)
    if artifact.tokenizer_path is None:
        raise ValueError(f"{artifact_dir} has no tokenizer")
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    settings = offline.replica_settings(artifact_dir, "openvino", precision, threads)
    backend, _ = create_backend(settings, artifact)

    def logits(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return backend.run_output("logits", ids, mask)  # (B, 1)

    out = []
    for query, documents in requests:
        ids = tokenizer.tokenize_pairs([(query, d) for d in documents])
        out.append(encode_batches(ids, logits, artifact.config.pad_token_id)[:, 0])
    return sigmoid(np.concatenate(out))


def reranker_info(info: dict | None) -> dict:
    """The reranker's entry of a service's ``/info`` ``models``: the one whose task is rerank."""
    models = (info or {}).get("models") or []
    found = [m for m in models if isinstance(m, dict) and m.get("task") == "rerank"]
    if len(found) != 1:
        raise RuntimeError(f"/info lists {len(found)} rerank models, expected 1: {models}")
    return found[0]


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def served_run(config: LoadConfig) -> ServedRun:
    s = run(config).summary
    return ServedRun(inputs_per_s=s.inputs_per_s, latency_ms=s.latency_ms, errors=s.errors)


def measure(main_artifact: Path, threads: int, scale: float, work_dir: Path) -> RerankResult:
    """The section: exports the reranker first if needed (not counted in ``seconds``)."""
    from export.artifact import load_artifact

    from . import reranker

    artifact = reranker.artifact()
    start, load_start = time.perf_counter(), os.getloadavg()
    requests = rerank_requests(REQUESTS, LOOP.inputs)
    log.info("rerank: %s and the bf16 backend on %d pairs", CROSS_ENCODER, REQUESTS * LOOP.inputs)
    scorer = CrossEncoderScorer(reranker.checkpoint())
    reference = np.concatenate([scorer.scores(q, d) for q, d in requests])
    bf16 = backend_scores(artifact, "bf16", threads, requests)
    singles = served.singles_file(work_dir)
    both = [main_artifact, artifact]
    log.info("rerank: starting a service of MiniLM alone and one of MiniLM and the reranker")
    with served.embedserves(
        [
            lambda: served.embedserve(main_artifact, threads, work_dir / "single-server.log"),
            lambda: served.embedserve(both, threads, work_dir / "two-models-server.log"),
        ]
    ) as (alone, pair):
        info = served.server_info(pair.url)
        entry = reranker_info(info)
        name = str(entry["model_id"])
        system = served_system(entry)
        scores = {system: served_scores(pair.url, name, requests), BF16_SYSTEM: bf16}
        log.info("rerank: %s against %s offline, in back-to-back pairs", system, CROSS_ENCODER)
        seconds = LOOP.seconds * scale
        pairs = served.paired_closed_loop(
            pair.url, LOOP, lambda: offline_pass(scorer, requests[:OFFLINE_REQUESTS]), PAIRS,
            seconds, model=name,
        )  # fmt: skip
        throughput = PairedThroughput(clients=LOOP.clients, seconds_per_served_run=seconds,
                                      pairs=pairs)  # fmt: skip
        log.info("several models: W1 on one model's service and on two models'")
        w1_seconds = W1_SECONDS * scale
        one, two = (served.loop_config(s.url, W1, w1_seconds, texts=singles) for s in (alone, pair))
        several = served.alternate(lambda: served_run(one), lambda: served_run(two), W1_PAIRS)
    log.info("rerank: served / %s = %.2f", CROSS_ENCODER, throughput.ratio)
    return RerankResult(
        model=name,
        checkpoint=reranker.DESCRIPTION,
        threads=threads,
        served_system=system,
        score_pairs=len(reference),
        max_abs_score={k: max_abs(v, reference) for k, v in scores.items()},
        bf16_max_abs_score=load_artifact(artifact).config.bf16_max_abs_score,
        documents_per_request=LOOP.inputs,
        throughput=throughput,
        several=SeveralModels(
            models=[str(m.get("model_id")) for m in (info or {}).get("models") or []],
            clients=W1.clients,
            seconds_per_run=w1_seconds,
            pairs=several,
        ),
        seconds=time.perf_counter() - start,
        load_avg=(load_start, os.getloadavg()),
    )


def measure_or_skip(
    main_artifact: Path, threads: int, scale: float, work_dir: Path
) -> tuple[RerankResult | None, str | None]:
    """The section, or why it could not be measured (a checkpoint we cannot load), so the rest
    of the bench still reports."""
    from models import CheckpointError

    try:
        return measure(main_artifact, threads, scale, work_dir), None
    except CheckpointError as exc:
        log.warning("skipping the rerank section: %s", exc)
        return None, str(exc)
