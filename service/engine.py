"""Everything a replica serves, keyed by (model, task): the routes' one way in.

Each served artifact is a :class:`ServedModel`; each task it serves a :class:`Pipeline` over it
(``service.tasks``). A route looks up the pipeline for the model a request names (or the
default, the first) and calls it; checks, batching and metrics all happen behind that call.
``Registry.from_settings`` builds it the same way in a replica and in a test's process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import get_args

from export.artifact import load_artifact

from . import metrics as metrics_module
from .errors import ApiError
from .metrics import Metrics
from .model import ServedModel
from .settings import BatchingConfig, ServiceSettings
from .tasks import Pipeline, Task


class Registry:
    def __init__(
        self, settings: ServiceSettings, models: Sequence[ServedModel], metrics: Metrics
    ) -> None:
        if not models:
            raise ValueError("a registry serves at least one model")
        self.settings = settings
        self.models = list(models)
        self.metrics = metrics
        self.default = self.models[0]
        self.pipelines: dict[tuple[str, Task], Pipeline] = {
            (model.name, task): Pipeline(model, task, metrics.stage(model.name, task))
            for model in self.models
            for task in get_args(Task)
        }
        # A model answers to its own name and its artifact's; a name two models share is the
        # first one's.
        self._by_alias: dict[str, ServedModel] = {}
        for model in self.models:
            for alias in sorted(model.aliases, key=lambda a: a != model.name):
                self._by_alias.setdefault(alias, model)

    @classmethod
    def from_settings(cls, settings: ServiceSettings, metrics: Metrics | None = None) -> Registry:
        """The model the settings name; metrics of its own unless a replica passes its set."""
        metrics = metrics_module.init(None) if metrics is None else metrics
        model = ServedModel(settings, load_artifact(settings.artifact), metrics)
        return cls(settings, [model], metrics)

    def model(self, name: str | None) -> ServedModel:
        """The model called ``name``; the default one for None; 404 for one not served."""
        if name is None:
            return self.default
        found = self._by_alias.get(name)
        if found is None:
            served = ", ".join(repr(m.name) for m in self.models)
            raise ApiError(
                404, f"the requested model is not served here; use {served}",
                "model", "model_not_found",
            )  # fmt: skip
        return found

    def lookup(self, model: str | None, task: Task) -> Pipeline:
        """The pipeline of ``task`` on ``model``: 404 for a model not served, 400 for a task
        the model does not serve."""
        served = self.model(model)
        pipeline = self.pipelines.get((served.name, task))
        if pipeline is None:
            tasks = ", ".join(t for name, t in self.pipelines if name == served.name)
            raise ApiError(
                400, f"model {served.name!r} does not serve {task}; it serves {tasks}",
                "model", "task_not_served",
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
