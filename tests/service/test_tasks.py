"""The pipelines of a real model in this process, no HTTP: which checks each input kind gets,
what each task's post stage makes of the backend's output, and the metrics they record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.engine import Registry
from service.errors import ApiError
from service.model import INLINE_TOKENIZE_CHARS, Result
from service.settings import ServiceSettings
from service.tasks import Outputs, Task, TaskRequest

MAX_INPUTS = 4
INPUT_TOKENS = "embedserve_input_tokens"


@pytest.fixture(scope="module")
def registry(minilm_artifact: Path) -> Iterator[Registry]:
    settings = ServiceSettings(
        artifact=minilm_artifact, backend="onnxruntime", num_cpus=1, max_inputs=MAX_INPUTS
    )
    registry = Registry.from_settings(settings)
    yield registry
    registry.close()


def run(registry: Registry, task: Task, request: TaskRequest) -> Result[Outputs]:
    return asyncio.run(registry.lookup(None, task)(request))


def refusal(registry: Registry, request: TaskRequest) -> tuple[int, str | None]:
    with pytest.raises(ApiError) as caught:
        run(registry, "embed", request)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize(
    "request_, expected",
    [
        (TaskRequest([], True), (400, "empty_input")),
        (TaskRequest(["a"] * (MAX_INPUTS + 1), True), (413, "too_many_inputs")),
        (TaskRequest(["fine", ""], True), (400, "empty_input")),
        (TaskRequest([[101, 102], []], True), (400, "empty_input")),
        (TaskRequest([[101, 30522]], True), (400, "invalid_token_id")),
        (TaskRequest(["word " * 600], False), (413, "input_too_long")),
        (TaskRequest([[101] * 300], False), (413, "input_too_long")),
        (TaskRequest(["fine"], True, dimensions=385), (400, "invalid_dimensions")),
        # dimensions are checked first: no tokenizing for a request that cannot be answered
        (TaskRequest([], True, dimensions=385), (400, "invalid_dimensions")),
    ],
    ids=lambda v: v[1] if isinstance(v, tuple) else None,
)
def test_pre_refuses_inputs_that_cannot_run(
    registry: Registry, request_: TaskRequest, expected: tuple[int, str]
) -> None:
    assert refusal(registry, request_) == expected


def test_long_inputs_are_cut_to_the_model_length_on_the_side_asked(registry: Registry) -> None:
    words = " ".join(f"w{i}" for i in range(600))
    right = run(registry, "embed", TaskRequest([words], True))
    ids = run(registry, "embed", TaskRequest([[101] * 300], True))
    assert right.token_count == ids.token_count == registry.default.max_length
    left = run(registry, "embed", TaskRequest([words], True, side="left"))
    assert not np.allclose(right.outputs[0], left.outputs[0])


def test_embed_cuts_to_dimensions_then_normalises(registry: Registry) -> None:
    texts = ["a cat sat on the mat", "stock markets fell"]
    full = run(registry, "embed", TaskRequest(texts, True))
    cut = run(registry, "embed", TaskRequest(texts, True, dimensions=8))
    raw = run(registry, "embed", TaskRequest(texts, True, normalize=False))
    assert isinstance(full.outputs, np.ndarray) and full.outputs.dtype == np.float32
    assert full.outputs.shape == (2, 384) and cut.outputs.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(cut.outputs, axis=1), 1.0, rtol=1e-5)
    head = raw.outputs[:, :8] / np.linalg.norm(raw.outputs[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(cut.outputs, head, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw.outputs, axis=1), 1.0)


def test_embed_tokens_gives_every_real_tokens_vector(registry: Registry) -> None:
    texts = ["short", "a somewhat longer sentence than that"]
    result = run(registry, "embed_tokens", TaskRequest(texts, True))
    lengths = [len(ids) for ids in registry.default.require_tokenizer().tokenize(texts)]
    assert [v.shape for v in result.outputs] == [(n, 384) for n in lengths]
    assert result.token_count == sum(lengths)


def test_stage_metrics_carry_model_and_task(registry: Registry) -> None:
    def tokens() -> dict[str, float]:
        text = registry.metrics.exposition()[0].decode()
        [family] = [f for f in text_string_to_metric_families(text) if f.name == INPUT_TOKENS]
        return {s.labels["task"]: s.value for s in family.samples if s.name.endswith("_total")}

    before = tokens()
    result = run(registry, "embed_tokens", TaskRequest([[101, 7592, 102]], True))
    after = tokens()
    assert result.token_count == 3
    assert after["embed_tokens"] - before["embed_tokens"] == 3
    assert after["embed"] == before["embed"]


def test_short_requests_tokenize_inline_as_the_tokenizer_thread_does(registry: Registry) -> None:
    """A request under ``INLINE_TOKENIZE_CHARS`` is tokenized on the event loop, a longer one on
    the tokenizer thread: the same texts and pairs get the same ids either way."""
    model = registry.default
    short = ["a cat sat on the mat", "stock markets fell"]
    pairs = [("what is ray?", "a serving library")]
    filler = "word " * (INLINE_TOKENIZE_CHARS // 4)  # pushes the request past the bound
    limit = model.max_length

    async def both() -> tuple[list[list[int]], ...]:
        return (
            await model.tokenize(short, "right", limit),
            await model.tokenize([*short, filler], "right", limit),
            await model.tokenize_pairs(pairs, "right", limit),
            await model.tokenize_pairs([*pairs, (filler, filler)], "right", limit),
        )

    inline, threaded, inline_pairs, threaded_pairs = asyncio.run(both())
    assert inline == threaded[: len(short)]
    assert inline_pairs == threaded_pairs[: len(pairs)]
