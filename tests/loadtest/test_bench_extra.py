"""The section on models beside MiniLM: what it sends, and how the report words its ratio."""

from __future__ import annotations

from common import texts as corpus
from loadtest.bench.extra_models import (
    LOOP,
    OFFLINE_REQUESTS,
    PARITY_PASSAGES,
    PARITY_STRIDE,
    parity_batches,
    throughput_batches,
)
from loadtest.bench.report import render
from loadtest.bench.results import Accuracy, ExtraModelResult
from loadtest.config import LoadConfig
from loadtest.workload import RequestPool

from .test_bench import _results


def test_offline_pass_holds_the_texts_of_the_served_loops_first_requests() -> None:
    config = LoadConfig(url="http://127.0.0.1:1", workload=LOOP.workload,
                        batch_size=LOOP.inputs, concurrency=LOOP.clients)  # fmt: skip
    pool = RequestPool(config)
    assert throughput_batches() == [pool.texts(i) for i in range(OFFLINE_REQUESTS)]


def test_parity_texts_are_every_sixth_sentence_then_passages() -> None:
    batches = parity_batches()
    texts = [t for batch in batches for t in batch]
    sentences = corpus.sentences()[::PARITY_STRIDE]
    assert texts == sentences + corpus.passages()[:PARITY_PASSAGES]
    assert max(len(b) for b in batches) <= 32


def _mpnet(ratio: float) -> ExtraModelResult:
    return ExtraModelResult(
        model="all-mpnet-base-v2",
        threads=2,
        parity_texts={"sentences": 111, "passages": 8},
        accuracy={
            "embedserve torch fp32 (models.load_pretrained)": Accuracy(
                texts=119, min_cosine=0.9999991, mean_cosine=0.9999998
            ),
            "embedserve openvino bf16 served": Accuracy(
                texts=119, min_cosine=0.998, mean_cosine=0.9995
            ),
        },
        served_system="embedserve openvino bf16 served",
        inputs_per_request=16,
        clients=4,
        seconds_per_served_run=10,
        pairs=[(20.0, 20.0 * ratio), (22.0, 22.0 * ratio)],
        offline_inputs_per_s=21.0,
        served_inputs_per_s=21.0 * ratio,
        ratio=ratio,
        work_vs_main=8.4,
        seconds=150,
    )


def test_report_section_compares_the_ratio_with_minilms() -> None:
    results = _results()  # MiniLM's served W2 row: 1.80× sentence-transformers
    results.extra_models = [_mpnet(3.6)]
    text = render(results)
    assert "## Other models beside all-MiniLM-L6-v2" in text
    assert "| embedserve openvino bf16 served | 119 | 0.998000 | 0.999500 |" in text
    assert "served / offline = **3.60×**" in text
    assert "so all-mpnet-base-v2's ratio is above MiniLM's (2.00× it), for 8.4× the" in text
    assert "20.0 → 72.0 (3.60×), 22.0 → 79.2 (3.60×)" in text

    results.extra_models = [_mpnet(1.8)]
    assert "ratio is about the same as MiniLM's (1.00× it)" in render(results)


def test_report_names_a_model_that_could_not_be_measured() -> None:
    results = _results()
    assert "Other models" not in render(results)
    results.extra_models_skipped = {"all-mpnet-base-v2": "needs the packages ...: pip install"}
    assert "all-mpnet-base-v2: not measured: needs the packages" in render(results)
