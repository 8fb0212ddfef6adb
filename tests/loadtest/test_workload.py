"""Configuration rules, the texts each workload sends, and both wire dialects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from common import texts as corpus
from loadtest.api import BadResponse, parse_response, request_body, vectors
from loadtest.config import LoadConfig
from loadtest.workload import RequestPool, chunks, read_texts

URL = "http://127.0.0.1:9"


def test_endpoint_comes_from_the_api_unless_the_url_names_one() -> None:
    assert LoadConfig(url=URL).endpoint == f"{URL}/v1/embeddings"
    assert LoadConfig(url=URL + "/", api="tei").endpoint == f"{URL}/embed"
    custom = LoadConfig(url=f"{URL}/openai/v1/embeddings")
    assert custom.endpoint == f"{URL}/openai/v1/embeddings"
    assert custom.base_url == URL


def test_configuration_rules() -> None:
    with pytest.raises(ValidationError, match="needs --rate"):
        LoadConfig(url=URL, mode="open")
    with pytest.raises(ValidationError, match="use 'batch'"):
        LoadConfig(url=URL, workload="short", batch_size=8)
    with pytest.raises(ValidationError, match="http"):
        LoadConfig(url="127.0.0.1:8000")
    sweep = LoadConfig(url=URL, sweep=True)
    assert sweep.mode == "open" and sweep.rate and sweep.duration_s
    assert LoadConfig(url=URL).duration_s == 30.0  # never unbounded
    assert LoadConfig(url=URL, requests=5).duration_s is None
    assert LoadConfig(url=URL, api_key="secret").public()["api_key"] == "***"


def test_builtin_workloads_are_real_text_in_corpus_order() -> None:
    sentences, passages = corpus.sentences(), corpus.passages()
    short = RequestPool(LoadConfig(url=URL, workload="short"))
    assert [short.texts(i) for i in range(3)] == [[s] for s in sentences[:3]]
    batch = RequestPool(LoadConfig(url=URL, workload="batch"))
    assert batch.texts(0) == sentences[:32] and batch.texts(1) == sentences[32:64]
    assert batch.texts(20) == chunks(sentences, 32, 21)[20]  # wraps around the corpus
    assert len(batch.texts(20)) == 32
    long = RequestPool(LoadConfig(url=URL, workload="long", batch_size=8))
    assert long.texts(0) == passages[:8]
    words = [len(p.split()) for p in passages]
    assert min(words) > 150 and all(w.isascii() for w in passages[0].split()[:5])


def test_mixed_is_seeded_and_mixes_shapes() -> None:
    a = RequestPool(LoadConfig(url=URL, workload="mixed", seed=4))
    b = RequestPool(LoadConfig(url=URL, workload="mixed", seed=4))
    assert a.requests == b.requests
    sizes = {len(r) for r in a.requests}
    assert {1, 4, 32} <= sizes


def test_texts_files(tmp_path: Path) -> None:
    txt = tmp_path / "in.txt"
    txt.write_text("first line\n\n  second line  \n", encoding="utf-8")
    assert read_texts(txt) == ["first line", "second line"]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('"plain"\n{"text": "object"}\n\n{"input": "other key"}\n', encoding="utf-8")
    assert read_texts(jsonl) == ["plain", "object", "other key"]
    pool = RequestPool(LoadConfig(url=URL, texts=jsonl, batch_size=2))
    assert pool.texts(0) == ["plain", "object"] and pool.texts(1) == ["other key", "plain"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_texts(bad)


def test_request_bodies() -> None:
    openai = json.loads(request_body(LoadConfig(url=URL, model="m"), ["a", "b"]))
    assert openai == {"input": ["a", "b"], "encoding_format": "float", "model": "m"}
    assert json.loads(request_body(LoadConfig(url=URL, api="tei"), ["a"])) == {"inputs": ["a"]}


def test_responses_are_checked_and_tokens_read() -> None:
    config = LoadConfig(url=URL)
    body = json.dumps(
        {
            "data": [{"embedding": [0.1, 0.2]}, {"embedding": [0.3, 0.4]}],
            "usage": {"prompt_tokens": 9},
        }
    ).encode()
    assert parse_response(config, {}, body, 2).tokens == 9
    assert parse_response(config, {"x-total-tokens": "11"}, body, 2).tokens == 11
    with pytest.raises(BadResponse, match="2 vectors for 3 inputs"):
        parse_response(config, {}, body, 3)
    with pytest.raises(BadResponse, match="not JSON"):
        parse_response(config, {}, b"<html>", 1)
    tei = LoadConfig(url=URL, api="tei")
    assert parse_response(tei, {}, b"[[1.0], [2.0]]", 2).tokens is None
    with pytest.raises(BadResponse):
        parse_response(tei, {}, b'{"error": "x"}', 1)


def test_base64_vectors_decode() -> None:
    import base64

    v = np.array([[0.5, -1.0, 2.0]], dtype="<f4")
    body = json.dumps({"data": [{"embedding": base64.b64encode(v[0].tobytes()).decode()}]})
    assert np.array_equal(vectors(LoadConfig(url=URL), body.encode()), v)
