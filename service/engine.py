"""Everything a replica serves, keyed by (model, task): the routes' one way in.

Each served artifact is a :class:`ServedModel`; each task it serves a :class:`Pipeline` over it
(``service.tasks``). A route looks up the pipeline for the model a request names (or the
default, the first) and calls it; checks, batching and metrics all happen behind that call.
``Registry.from_settings`` builds it the same way in a replica and in a test's process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from export.artifact import load_artifact

from . import metrics as metrics_module
from .errors import ApiError
from .metrics import Metrics
from .model import ServedModel
from .settings import BatchingConfig, ServiceSettings
from .tasks import Pipeline, Task

# What a model of each artifact task is, for the error of a route it cannot serve.
# TEI answers that with 424 (TextEmbeddingsError::Backend); 400 on our own routes.
DOES = {
    "embedding": "an embedding model: it serves /v1/embeddings, /embed, /embed_all",
    "rerank": "a reranker: it serves /rerank, /v1/rerank, /predict",
    "classify": "a classifier: it serves /predict",
}
TEI_TASK_NOT_SERVED = 424


class Registry:
    def __init__(
        self, settings: ServiceSettings, models: Sequence[ServedModel], metrics: Metrics
    ) -> None:
        if not models:
            raise ValueError("a registry serves at least one model")
        names = [model.name for model in models]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two models are served as {twice[0]!r}: give each its own name")
        self.settings = settings
        self.models = list(models)
        self.metrics = metrics
        self.default = self.models[0]
        self.pipelines: dict[tuple[str, Task], Pipeline] = {
            (model.name, task): Pipeline(model, task, metrics.stage(model.name, task))
            for model in self.models
            for task in model.tasks
        }
        # A model answers to its own name and its artifact's; an artifact's name is never
        # another model's own, and one two artifacts share is the first one's.
        self._by_alias: dict[str, ServedModel] = {model.name: model for model in self.models}
        for model in self.models:
            for alias in sorted(model.aliases):
                self._by_alias.setdefault(alias, model)

    @classmethod
    def from_settings(cls, settings: ServiceSettings, metrics: Metrics | None = None) -> Registry:
        """The models the settings name, the default first; metrics of their own unless a
        replica passes its set.

        Every model's backends get the replica's whole ``intra_op_threads``, not a share:
        usually one model is busy at a time (an embedder at indexing, a reranker at query time)
        and a share would leave it the fraction of the cores. When both are busy at once they
        oversubscribe the cores; each model's batcher still bounds its own queue.
        """
        metrics = metrics_module.init(None) if metrics is None else metrics
        models: list[ServedModel] = []
        try:
            for entry in settings.served_models:
                artifact = load_artifact(entry.artifact)
                models.append(ServedModel(settings, artifact, metrics, name=entry.name))
            return cls(settings, models, metrics)
        except BaseException:
            for model in models:  # a replica that fails to start leaves no threads behind
                model.close()
            raise

    def model(self, name: str | None) -> ServedModel:
        """The model called ``name``; the default one for None; 404 for one not served."""
        if name is None:
            return self.default
        found = self._by_alias.get(name)
        if found is None:
            served = ", ".join(repr(m.name) for m in self.models)
            raise ApiError(
                404, f"model {name[:100]!r} is not served here; use {served}",
                "model", "model_not_found",
            )  # fmt: skip
        return found

    def lookup(self, model: str | None, task: Task) -> Pipeline:
        """The pipeline of ``task`` on ``model``: 404 for a model not served, 400 (TEI: 424)
        for a task the model does not serve, naming what it does."""
        served = self.model(model)
        pipeline = self.pipelines.get((served.name, task))
        if pipeline is None:
            raise ApiError(
                400, f"model {served.name!r} is {DOES[served.task]}", "model", "task_not_served",
                tei_status=TEI_TASK_NOT_SERVED,
            )  # fmt: skip
        return pipeline

    def reconfigure(self, batching: BatchingConfig) -> None:
        for model in self.models:
            model.reconfigure(batching)

    def close(self) -> None:
        for model in self.models:
            model.close()

    async def healthy(self, timeout_s: float = 10.0) -> bool:
        """Whether every model answers (``ServedModel.healthy``), probed at the same time."""
        answers = await asyncio.gather(*(m.healthy(timeout_s) for m in self.models))
        return all(answers)
