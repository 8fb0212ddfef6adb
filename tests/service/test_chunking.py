"""``long_input``: inputs over the model's window cut, refused, or embedded whole in windows
(service.chunking), on the OpenAI and TEI routes of the real app over ONNX Runtime fp32."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import texts
from common.arrays import normalize_rows
from export.artifact import load_artifact
from models import Tokenizer
from service.backends import Backend
from service.backends.base import Output
from service.chunking import Chunker, Frame, Framing
from service.engine import Registry
from service.errors import ApiError
from service.settings import ServiceSettings
from service.tasks import TaskRequest
from tests.service.conftest import ClientFactory

OVERLAP = 32  # the setting's default, given here so the hand-made windows follow the test
MAX_WINDOWS = 12
MAX_BATCH = 4  # inputs per micro-batch: a long text's windows must spread over several
Rows = set[tuple[int, ...]]  # a backend call's inputs, each its unpadded token ids


@pytest.fixture(scope="module")
def chunking(make_client: ClientFactory) -> httpx.Client:
    return make_client(
        backend="onnxruntime",
        num_cpus=1,
        cache_mb=0,
        chunk_overlap=OVERLAP,
        max_windows=MAX_WINDOWS,
        batching={"max_batch_size": MAX_BATCH},
    )


@pytest.fixture(scope="module")
def tokenizer(minilm_artifact: Path) -> Tokenizer:
    artifact = load_artifact(minilm_artifact)
    assert artifact.tokenizer_path is not None
    return Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)


def long_text(tokens: int, tokenizer: Tokenizer, first: int = 0) -> str:
    """Real passages, from the ``first``, joined until the text holds at least ``tokens``
    tokens."""
    passages = texts.passages()
    parts: list[str] = []
    while len(tokenizer.tokenize([" ".join(parts)], truncate=False)[0]) < tokens:
        parts.append(passages[(first + len(parts)) % len(passages)])
    return " ".join(parts)


def by_hand(text: str, tokenizer: Tokenizer, artifact_path: Path) -> tuple[np.ndarray, list[int]]:
    """The text's windows made and embedded one at a time, pooled by token count: the raw
    vector and each window's token count."""
    artifact = load_artifact(artifact_path)
    session = ort.InferenceSession(str(artifact.model_path), providers=["CPUExecutionProvider"])
    ids = tokenizer.tokenize([text], truncate=False)[0]
    cls, body, sep = ids[:1], ids[1:-1], ids[-1:]
    room = artifact.config.max_seq_length - 2
    stride = room - OVERLAP
    vectors, weights = [], []
    for start in range(0, len(body), stride):
        window = np.asarray([cls + body[start : start + room] + sep], dtype=np.int64)
        feeds = {"input_ids": window, "attention_mask": np.ones_like(window)}
        vectors.append(session.run(["sentence_embedding"], feeds)[0][0])
        weights.append(window.shape[1])
        if start + room >= len(body):
            break
    pooled = np.average(np.stack(vectors).astype(np.float64), axis=0, weights=weights)
    return pooled.astype(np.float32), weights


def micro_batches(client: httpx.Client) -> np.ndarray:
    """[micro-batches run, inputs in them] from the service's own batch-size histogram."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "embedserve_batch_size":
            found = {s.name: s.value for s in family.samples}
            return np.array([found[f"embedserve_batch_size_{k}"] for k in ("count", "sum")])
    raise AssertionError("embedserve_batch_size not exposed")


def floats(item: dict[str, str]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")


def test_a_2000_token_text_equals_its_windows_pooled_by_hand(
    chunking: httpx.Client, tokenizer: Tokenizer, minilm_artifact: Path
) -> None:
    text = long_text(2000, tokenizer)
    expected, windows = by_hand(text, tokenizer, minilm_artifact)
    body = {"input": [text, "a short one"], "long_input": "chunk", "encoding_format": "base64"}
    before = micro_batches(chunking)
    answer = chunking.post("/v1/embeddings", json=body)
    batches, inputs = micro_batches(chunking) - before
    assert answer.status_code == 200, answer.text
    data = answer.json()
    got = floats(data["data"][0])
    assert np.abs(got - normalize_rows(expected[None])[0]).max() <= 1e-5
    short = len(tokenizer.tokenize(["a short one"])[0])
    assert data["usage"]["prompt_tokens"] == sum(windows) + short  # every window's tokens
    # The windows are the batcher's inputs like any other: micro-batches of MAX_BATCH at most.
    assert inputs == len(windows) + 1 and batches >= inputs / MAX_BATCH
    # TEI's /embed, raw: the weighted mean itself, before normalisation.
    raw = chunking.post("/embed", json={"inputs": text, "long_input": "chunk", "normalize": False})
    assert np.abs(np.asarray(raw.json()[0]) - expected).max() <= 1e-5


class Recorded:
    """A stream's real backend, noting the inputs (their unpadded ids) of every call."""

    def __init__(self, backend: Backend, worker: str, calls: list[tuple[str, Rows]]):
        self.backend, self.worker, self.calls = backend, worker, calls
        self.name, self.precision = backend.name, backend.precision

    def run_output(self, output: Output, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        rows = {tuple(row[m == 1]) for row, m in zip(ids, mask, strict=True)}
        self.calls.append((self.worker, rows))
        return self.backend.run_output(output, ids, mask)

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.run_output("sentence_embedding", ids, mask)

    def describe(self) -> dict[str, object]:
        return self.backend.describe()


def test_windows_share_micro_batches_with_other_requests_on_both_streams(
    tokenizer: Tokenizer, minilm_artifact: Path
) -> None:
    """A two-stream OpenVINO replica: a request of two 256-token inputs waits for company;
    a chunked 2,000-token text arrives; its windows join the first request's micro-batch and
    fill the other stream's, and the pooled vector is still its windows' by hand. Both are
    sent as token ids, so neither waits for the tokenizer: they reach the batcher in this
    order within the same turn of the event loop, whatever the machine's load."""
    settings = ServiceSettings(
        artifact=minilm_artifact, backend="openvino", precision="fp32", num_cpus=2,
        cache_mb=0, chunk_overlap=OVERLAP, max_windows=MAX_WINDOWS,
        batching={"max_batch_size": MAX_BATCH, "batch_wait_timeout_s": 1.0},
    )  # fmt: skip
    text = long_text(2000, tokenizer)
    others = tokenizer.tokenize([long_text(300, tokenizer, first) for first in (7, 11)])
    registry = Registry.from_settings(settings)
    calls: list[tuple[str, Rows]] = []
    try:
        model = registry.model(None)
        assert len(model.batcher.workers) == 2
        for worker in [*model.batcher.workers, model.batcher.whole]:  # whole: a lone input's
            assert worker is not None
            worker.backend = Recorded(worker.backend, worker.name, calls)
        pipeline = registry.lookup(None, "embed")
        text_ids = tokenizer.tokenize([text], truncate=False)

        async def together() -> np.ndarray:
            waiting = pipeline(TaskRequest(others, truncate=True))  # not a full batch: waits
            chunked = pipeline(TaskRequest(text_ids, truncate=True, chunk=True))
            answers = await asyncio.gather(waiting, chunked)
            return cast("np.ndarray", answers[1].outputs)

        got = asyncio.run(together())
    finally:
        registry.close()
    expected, windows = by_hand(text, tokenizer, minilm_artifact)
    assert np.abs(got[0] - normalize_rows(expected[None])[0]).max() <= 1e-5
    theirs = {tuple(ids) for ids in others}
    assert sum(len(rows & theirs) for _, rows in calls) == len(others)  # each ran once
    assert sum(len(rows - theirs) for _, rows in calls) == len(windows)
    assert any(rows & theirs and rows - theirs for _, rows in calls)  # a shared micro-batch
    assert {"0", "1"} <= {worker for worker, rows in calls if rows - theirs}  # both streams


def test_a_text_within_the_window_is_embedded_as_truncation_would(chunking: httpx.Client) -> None:
    sentence = texts.sentences()[3]
    answers = [
        chunking.post("/embed", json={"inputs": sentence, "long_input": mode}).json()
        for mode in ("chunk", "truncate", "error")
    ]
    assert answers[0] == answers[1] == answers[2]


def test_truncate_and_error_modes(chunking: httpx.Client, tokenizer: Tokenizer) -> None:
    text = long_text(600, tokenizer)
    cut = chunking.post("/v1/embeddings", json={"input": text, "long_input": "truncate"})
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == 256
    refused = chunking.post("/v1/embeddings", json={"input": text, "long_input": "error"})
    count = len(tokenizer.tokenize([text], truncate=False)[0])
    assert refused.status_code == 413
    assert f"input[0] has {count} tokens" in refused.json()["error"]["message"]
    # Given, long_input decides over TEI's truncate.
    tei = chunking.post("/embed", json={"inputs": text, "truncate": True, "long_input": "error"})
    assert tei.status_code == 413 and tei.json()["error_type"] == "Validation"


@pytest.mark.parametrize(
    ("route", "body", "status", "code"),
    [
        ("/v1/embeddings", {"input": "x", "long_input": "whole"}, 422, None),
        ("/embed_all", {"inputs": "x", "long_input": "chunk"}, 422, None),
        ("/embed_all", {"inputs": "x", "embedding_type": "int8"}, 422, None),
    ],
)  # fmt: skip
def test_what_cannot_be_chunked_is_refused(
    chunking: httpx.Client, route: str, body: dict[str, object], status: int, code: str | None
) -> None:
    answer = chunking.post(route, json=body)
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.json()["error"]["code"] == code
    assert chunking.get("/health").status_code == 200


def test_token_ids_are_windowed_as_their_text_is(
    chunking: httpx.Client, tokenizer: Tokenizer
) -> None:
    text = long_text(700, tokenizer)
    ids = tokenizer.tokenize([text], truncate=False)[0]  # what /tokenize answers, [CLS]..[SEP]
    answers = [
        chunking.post("/v1/embeddings", json={"input": given, "long_input": "chunk"}).json()
        for given in (text, [ids])
    ]
    assert answers[0]["data"] == answers[1]["data"]
    assert answers[0]["usage"] == answers[1]["usage"]


def test_more_windows_than_a_request_may_have_is_413(
    chunking: httpx.Client, tokenizer: Tokenizer
) -> None:
    text = long_text(222 * MAX_WINDOWS + 300, tokenizer)  # over MAX_WINDOWS windows
    answer = chunking.post("/v1/embeddings", json={"input": text, "long_input": "chunk"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_many_windows"
    tei = chunking.post("/embed", json={"inputs": text, "long_input": "chunk"})
    assert tei.status_code == 413 and tei.json()["error_type"] == "Validation"
    # Several inputs count together: 12 one-window inputs fit, 13 do not.
    many = {"input": ["one window"] * (MAX_WINDOWS + 1), "long_input": "chunk"}
    assert chunking.post("/v1/embeddings", json=many).status_code == 413
    many["input"] = many["input"][1:]  # type: ignore[index]
    assert chunking.post("/v1/embeddings", json=many).status_code == 200


def test_windows_overlap_and_reach_the_end() -> None:
    chunker = Chunker(max_length=10, overlap=2, max_windows=100)
    frame = Frame(head=2, tail=1)  # [CLS], a one-token prompt, then [SEP] at the end
    ids = np.asarray([101, 7, *range(1000, 1020), 102])  # 20 text tokens
    windows = chunker.split([ids], [frame])
    assert windows.counts == [4]
    for window in windows.sequences:
        assert len(window) <= 10 and list(window[:2]) == [101, 7] and window[-1] == 102
    text = [list(w[2:-1]) for w in windows.sequences]  # 7 tokens each, 5 new per window
    assert [t[0] for t in text] == [1000, 1005, 1010, 1015] and text[-1][-1] == 1019
    assert all(a[-2:] == b[:2] for a, b in zip(text, text[1:], strict=False))


def test_the_prompt_heads_every_window_only_where_the_input_starts_with_it() -> None:
    framing = Framing.of([101], [7, 8], [102])
    prompted, merged = np.asarray([101, 7, 8, 9, 102]), np.asarray([101, 7, 99, 9, 102])
    bare = np.asarray([7, 8, 9, 9, 9])  # ids without the special tokens: windowed as they are
    assert framing.frames([prompted, merged, bare]) == [Frame(3, 1), Frame(1, 1), Frame(2, 0)]
    assert framing.most == Frame(3, 1)
    with pytest.raises(ApiError) as error:
        Chunker(max_length=5, overlap=2, max_windows=4).room(Frame(3, 1))
    assert error.value.status == 400


def test_an_overlap_no_window_holds_is_refused_at_start_up() -> None:
    bert = Framing.of([101], [], [102])
    Chunker(max_length=10, overlap=7, max_windows=4).check(bert)  # 8 tokens of text a window
    with pytest.raises(ValueError, match=r"chunk_overlap \(8\) must be below the 8 tokens"):
        Chunker(max_length=10, overlap=8, max_windows=4).check(bert)
    Chunker(max_length=10, overlap=9, max_windows=4).check(Framing.bare())
