"""The rerank section's pure parts and the load generator's rerank dialect (issue 17).

The served measurement needs two running services and a reranker export (``make bench``); here:
the requests it sends, the rerank dialect against the stub over real HTTP, the reranker
folder's tokenizer, the paired maths, and the report rendered from typed results.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from common import texts as corpus
from loadtest.api import BadResponse, parse_response, request_body, request_headers, vectors
from loadtest.bench import report_rerank, rerank, reranker, served
from loadtest.bench.qos import FixedPool
from loadtest.bench.results import PairedThroughput, RerankResult, ServedRun, SeveralModels
from loadtest.config import LoadConfig
from loadtest.driver import run
from loadtest.stats import LatencyStats, median_ratio, spread
from loadtest.stub import StubServer, stub_score
from loadtest.tokens import default_tokenizer_file
from loadtest.workload import RequestPool, rerank_requests

URL = "http://127.0.0.1:9"


def rerank_config(**kw: object) -> LoadConfig:
    return LoadConfig.model_validate({"url": URL, "api": "rerank", "workload": "pairs", **kw})


def test_rerank_requests_are_a_query_and_its_real_documents() -> None:
    requests = rerank_requests(3, 32)
    sentences, passages = corpus.sentences(), corpus.passages()
    assert [q for q, _ in requests] == sentences[:3]
    assert all(len(docs) == 32 for _, docs in requests)
    first = requests[0][1]
    assert first[0] in passages and first[1] in sentences  # long and short alternate
    assert requests[1][1] != first  # each query meets other documents


def test_pairs_pool_counts_documents_not_the_query() -> None:
    pool = RequestPool(rerank_config(batch_size=8))
    query, *documents = pool.texts(5)
    assert (query, documents) == rerank_requests(6, 8)[5]
    assert pool.inputs(5) == 8
    assert RequestPool(LoadConfig(url=URL, workload="batch", batch_size=8)).inputs(0) == 8
    assert FixedPool([["a", "b"]]).inputs(0) == 2  # a pool built without a config


def test_rerank_api_and_pairs_workload_go_together() -> None:
    with pytest.raises(ValidationError, match="go together"):
        LoadConfig(url=URL, api="rerank", workload="batch")
    with pytest.raises(ValidationError, match="go together"):
        LoadConfig(url=URL, workload="pairs")
    assert rerank_config().endpoint == f"{URL}/rerank"
    assert rerank_config().inputs_per_request == 32


def test_rerank_body_and_model_header() -> None:
    config = rerank_config(model="rr")
    assert orjson.loads(request_body(config, ["q", "a", "b"])) == {
        "query": "q",
        "texts": ["a", "b"],
    }
    assert request_headers(config)["x-model"] == "rr"
    assert "x-model" not in request_headers(LoadConfig(url=URL, model="rr"))  # OpenAI: the body's


def test_rerank_answer_is_read_back_in_input_order() -> None:
    config = rerank_config()
    answer = orjson.dumps([{"index": 1, "score": 0.9}, {"index": 0, "score": 0.2}])
    assert vectors(config, answer)[:, 0].tolist() == pytest.approx([0.2, 0.9])
    assert parse_response(config, {"x-total-tokens": "12"}, answer, 2).tokens == 12
    with pytest.raises(BadResponse, match="once"):
        parse_response(config, {}, orjson.dumps([{"index": 1, "score": 0.9}] * 2), 2)
    with pytest.raises(BadResponse, match="3 inputs"):
        parse_response(config, {}, answer, 3)
    with pytest.raises(BadResponse, match="index, score"):
        parse_response(config, {}, orjson.dumps({"results": []}), 2)


def test_rerank_closed_loop_and_scores_against_the_stub() -> None:
    with StubServer() as server:
        result = run(rerank_config(url=server.url, model="rr", batch_size=8, requests=12,
                                   concurrency=2, progress=False))  # fmt: skip
        requests = rerank_requests(2, 5)
        scores = rerank.served_scores(server.url, "rr", requests)
    assert result.summary.ok == 12 and result.summary.errors == 0
    assert {s.inputs for s in result.samples} == {8}
    assert server.models == {"rr"}
    assert scores.tolist() == pytest.approx([stub_score(i) for i in range(5)] * 2)


def test_reranker_tokenizer_keeps_its_pair_template_and_loses_the_128_cut(tmp_path: Path) -> None:
    source = default_tokenizer_file()  # all-MiniLM-L6-v2's, which the reranker folder copies
    assert source is not None
    path = tmp_path / "tokenizer.json"
    path.write_bytes(source.read_bytes())
    reranker.untruncated_tokenizer(path)
    data = json.loads(path.read_text())
    assert data["truncation"] is None and data["padding"] is None
    pair = [step.get("SpecialToken", {}).get("id") for step in data["post_processor"]["pair"]]
    assert pair == ["[CLS]", None, "[SEP]", None, "[SEP]"]


def test_alternate_swaps_which_goes_first() -> None:
    calls: list[str] = []

    def a() -> str:
        calls.append("a")
        return "a"

    def b() -> str:
        calls.append("b")
        return "b"

    assert served.alternate(a, b, 3) == [("a", "b")] * 3
    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_paired_maths() -> None:
    assert median_ratio([(10.0, 5.0), (10.0, 20.0), (4.0, 4.0)]) == 1.0
    assert spread([9.0, 10.0, 12.0]) == pytest.approx(0.2)
    inside, ratio, noise = report_rerank.within_noise([(10.0, 10.5), (11.0, 11.0), (9.0, 9.9)])
    assert inside and ratio == pytest.approx(1.05) and noise == pytest.approx(0.1)
    inside, ratio, _ = report_rerank.within_noise([(10.0, 13.0), (10.2, 13.1), (9.9, 12.8)])
    assert not inside and ratio == pytest.approx(1.29, abs=0.01)


def test_reranker_is_found_in_info_by_its_task() -> None:
    info = {"models": [{"model_id": "e", "task": "embedding"}, {"model_id": "r", "task": "rerank"}]}
    assert rerank.reranker_info(info)["model_id"] == "r"
    with pytest.raises(RuntimeError, match="0 rerank models"):
        rerank.reranker_info({"model_id": "e"})


def served_run(p50: float, p99: float) -> ServedRun:
    stats = LatencyStats(count=1000, p50=p50, p90=p99, p99=p99, p999=p99, max=p99, mean=p50,
                         min=p50)  # fmt: skip
    return ServedRun(inputs_per_s=1000 / p50, latency_ms=stats, errors=0)


def result() -> RerankResult:
    several = SeveralModels(
        models=["all-MiniLM-L6-v2", "minilm-l6-reranker"],
        clients=1,
        seconds_per_run=10,
        pairs=[(served_run(8, 14), served_run(8.2, 15)), (served_run(8.4, 13), served_run(8, 14))],
    )
    return RerankResult(model="minilm-l6-reranker", checkpoint=reranker.DESCRIPTION, threads=2,
                        served_system="embedserve onnxruntime fp32 served", score_pairs=128,
                        max_abs_score={"embedserve onnxruntime fp32 served": 3e-6},
                        bf16_max_abs_score=4e-3, documents_per_request=32,
                        throughput=PairedThroughput(clients=4, seconds_per_served_run=10,
                                                    pairs=[(60.0, 90.0), (62.0, 88.0)]),
                        several=several, seconds=150,
                        load_avg=((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)))  # fmt: skip


def test_section_renders_every_number_from_the_results() -> None:
    r = result()
    text = "\n".join(report_rerank.section(r, None, cores=2))
    assert "## Reranking" in text and "minilm-l6-reranker" in text and "2-core" in text
    assert "**1.46×**" in text and "60.0 → 90.0 (1.50×)" in text  # median of 1.50 and 1.42
    assert "offline 61.0, served 89.0" in text and "4.0/5.0/6.0 at its end" in text
    assert "3.00e-06" in text and "bf16 path at 4.00e-03" in text and "128 (query" in text
    assert "### Several models in one service" in text
    assert text.count("| 1 |") == 1 and "| 2 |" in text
    assert "p50 0.99× (within" in text and "errors: 0" in text
    assert RerankResult.model_validate_json(r.model_dump_json()) == r  # results.json round trip


def test_section_says_why_it_is_missing() -> None:
    assert report_rerank.section(None, None, 2) == []
    assert "Not measured: no torch" in "\n".join(report_rerank.section(None, "no torch", 2))
