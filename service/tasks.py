"""What a served model can be asked for: a task, run as a pipeline of three stages.

``pre`` turns a request's texts, (query, document) pairs or token ids into checked token id
arrays (``service.checks``: empty, too many, too long, outside the vocabulary, ``dimensions`` out
of range); ``core`` runs one *named* backend output for them through the model's shared batcher,
or takes it from the model's cache (``service.cache``: keyed by the output and the ids, which
hold the prompt and the truncation, so ``post``'s options share an entry);
``post`` shapes that output into the answer (unit length and ``dimensions``, every token's
vector as it is, or a classifier's logits as scores).
A pipeline records its stages' metrics, labelled with model and task, and nothing else does.
A new task is a new entry of ``TASKS``: its output and its ``post``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeGuard, cast

import numpy as np

from common.arrays import scores, sigmoid
from models.tokenizer import Token, TruncationSide

from .backends.base import Output
from .checks import (
    check_count,
    check_dimensions,
    check_pairs,
    check_texts,
    count_limit,
    cut,
    reject_long,
    token_arrays,
)
from .chunking import Windows
from .compact import EmbeddingType, shaped
from .errors import ApiError
from .metrics import StageMetrics
from .model import Result, ServedModel

Task = Literal["embed", "embed_tokens", "rerank", "predict"]
Outputs = np.ndarray | list[np.ndarray]
Pair = tuple[str, str]  # (query, document), or TEI's (text, text) for /predict
Inputs = list[str] | list[list[int]] | list[Pair] | list[str | Pair]


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A request as a route parsed it: the inputs and what the caller asked of them."""

    inputs: Inputs  # texts or token ids (embed); texts or pairs (rerank, predict)
    truncate: bool
    side: TruncationSide = "right"
    normalize: bool = True
    dimensions: int | None = None  # cut pooled vectors to this many (OpenAI)
    deadline: float | None = None  # time.perf_counter() seconds; queued inputs then fail (504)
    prompt_name: str | None = None  # None: the model's default prompt, if it has one
    raw_scores: bool = False  # rerank, predict: the logits, not their sigmoid or softmax
    chunk: bool = False  # embed: a text over the window embedded whole (service.chunking)
    embedding_type: EmbeddingType = "float"  # embed: compact vectors (service.compact)


def are_texts(inputs: Inputs) -> TypeGuard[list[str]]:
    """Texts rather than token ids (called after ``check_count``: never empty)."""
    return isinstance(inputs[0], str)


def are_texts_or_pairs(inputs: Inputs) -> TypeGuard[list[str | Pair]]:
    return all(isinstance(item, str | tuple) for item in inputs)


def pooled(vectors: list[np.ndarray], request: TaskRequest) -> np.ndarray:
    """``(n, D)`` pooled vectors → cut to ``dimensions``, then optionally unit length."""
    return shaped(np.stack(vectors), request.dimensions, request.normalize)


def per_token(vectors: list[np.ndarray], request: TaskRequest) -> list[np.ndarray]:
    """Every input's ``(T, D)`` token vectors, as the backend gave them."""
    return vectors


def relevance(vectors: list[np.ndarray], request: TaskRequest) -> np.ndarray:
    """``(n,)``: each pair's single logit, through a sigmoid unless ``raw_scores``
    (text-embeddings-inference's /rerank, core/src/infer.rs)."""
    logits = np.stack(vectors)[:, 0]  # (n, 1) -> (n,)
    return logits if request.raw_scores else sigmoid(logits)


def label_scores(vectors: list[np.ndarray], request: TaskRequest) -> np.ndarray:
    """``(n, L)``: each input's logits as TEI's /predict scores them: a softmax over the labels,
    a sigmoid for a single label, the logits themselves with ``raw_scores``."""
    logits = np.stack(vectors)  # (n, L)
    return logits if request.raw_scores else scores(logits)


@dataclass(frozen=True)
class TaskSpec:
    output: Output
    post: Callable[[list[np.ndarray], TaskRequest], Outputs]
    pairs: bool = False  # inputs are texts or (query, document) pairs; never token ids


TASKS: dict[Task, TaskSpec] = {
    "embed": TaskSpec("sentence_embedding", pooled),
    "embed_tokens": TaskSpec("token_embeddings", per_token),
    "rerank": TaskSpec("logits", relevance, pairs=True),
    "predict": TaskSpec("logits", label_scores, pairs=True),
}


class Pipeline:
    """One task of one model: ``await pipeline(request)`` runs pre, core and post."""

    def __init__(self, model: ServedModel, task: Task, metrics: StageMetrics) -> None:
        self.model = model
        self.task = task
        self.spec = TASKS[task]
        self.metrics = metrics

    async def __call__(self, request: TaskRequest) -> Result[Outputs]:
        metrics = self.metrics
        start = time.perf_counter()
        sequences = await self.pre(request)
        windows = self.windows(sequences, request) if request.chunk else None
        if windows is not None:
            sequences = windows.sequences
        metrics.tokenize.observe(time.perf_counter() - start)
        metrics.request_inputs.observe(len(sequences))
        ran = await self.core(sequences, request.deadline)
        if ran.cached < len(sequences):  # some ran: an all-cached request never queued
            metrics.queue.observe(ran.queue_s)
            metrics.inference.observe(ran.inference_s)
        metrics.input_tokens.inc(ran.token_count)
        vectors = ran.outputs if windows is None else windows.pool(ran.outputs)
        outputs = self.spec.post(vectors, request)
        if request.embedding_type != "float":
            outputs = self.model.compactor.encode(
                cast("np.ndarray", outputs),
                request.embedding_type,
                request.dimensions,
                request.normalize,
            )
        return Result(outputs, ran.token_count, ran.queue_s, ran.inference_s, ran.cached)

    def windows(self, sequences: list[np.ndarray], request: TaskRequest) -> Windows:
        """The windows of a ``chunk`` request's inputs (``service.chunking``)."""
        framing = self.model.framing(self.model.prompt(request.prompt_name))
        return self.model.chunker.split(sequences, framing.frames(sequences))

    async def pre(self, request: TaskRequest) -> list[np.ndarray]:
        """Checked token ids per input: texts tokenized (on the tokenizer thread) after the
        prompt, ids taken as they are (a client that tokenized chose its prompt: only an
        explicit ``prompt_name`` is refused for them); over-long inputs cut, refused with 413
        when truncation is off, or kept whole for ``chunk`` (texts read no further than its
        windows may hold). The prompt's tokens count as the input's, as in TEI."""
        model, inputs = self.model, request.inputs
        check_dimensions(request.dimensions, model.dimension)
        check_count(len(inputs), model.max_inputs)
        if self.spec.pairs:
            return await self.pre_pairs(request)
        prompt = model.prompt(request.prompt_name)
        if are_texts(inputs):
            check_texts(inputs)
            texts = [prompt + text for text in inputs] if prompt else inputs
            limit = count_limit(model.max_length, request.truncate)
            if request.chunk:  # read as much as the windows may hold, and no more
                limit = model.chunker.token_limit(model.framing(prompt).most)
            ids = await model.tokenize(texts, request.side, limit)
            if not (request.truncate or request.chunk):
                reject_long(ids, model.max_length)
            return [np.asarray(seq, dtype=np.int64) for seq in ids]
        if request.prompt_name is not None:
            raise ApiError(
                400, "prompt_name applies to texts; send token ids with the prompt's in them",
                "prompt_name", "prompt_with_token_ids",
            )  # fmt: skip
        arrays = token_arrays(cast("list[list[int]]", inputs), model.vocab_size)
        if request.chunk:  # windowed whole (``windows``)
            return arrays
        if not request.truncate:
            reject_long(arrays, model.max_length)
            return arrays
        return cut(arrays, model.max_length, request.side)

    async def pre_pairs(self, request: TaskRequest) -> list[np.ndarray]:
        """Token ids of texts and (query, document) pairs, each in the tokenizer's template;
        a pair over the model's length loses tokens from its longer side first (transformers'
        ``longest_first``, what sentence-transformers' CrossEncoder does), or is refused with
        413 when truncation is off."""
        model, inputs = self.model, request.inputs
        if not are_texts_or_pairs(inputs):
            raise ApiError(
                400, f"{self.task} takes texts, not token ids", "input", "token_ids_not_accepted"
            )
        check_pairs(inputs)
        singles = {i: item for i, item in enumerate(inputs) if isinstance(item, str)}
        pairs = {i: item for i, item in enumerate(inputs) if not isinstance(item, str)}
        limit = count_limit(model.max_length, request.truncate)
        side = request.side
        ids = dict(
            zip(singles, await model.tokenize([*singles.values()], side, limit), strict=True)
        )
        both = await model.tokenize_pairs([*pairs.values()], side, limit)
        ids.update(zip(pairs, both, strict=True))
        sequences = [ids[i] for i in range(len(inputs))]
        if not request.truncate:
            reject_long(sequences, model.max_length)
        return [np.asarray(seq, dtype=np.int64) for seq in sequences]

    async def core(
        self, sequences: list[np.ndarray], deadline: float | None
    ) -> Result[list[np.ndarray]]:
        depth = self.metrics.queue_depth
        depth.inc(len(sequences))
        try:
            return await self.model.run(sequences, self.spec.output, deadline)
        finally:
            depth.dec(len(sequences))


async def token_details(
    model: ServedModel, texts: list[str], add_special_tokens: bool
) -> list[list[Token]]:
    """``/tokenize``: each text's tokens with offsets, for no more than ``max_inputs`` texts."""
    check_count(len(texts), model.max_inputs)
    return await model.token_details(texts, add_special_tokens)
