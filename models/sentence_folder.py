"""What a sentence-transformers folder says beside the model: modules, pooling, prompts, length.

Read as sentence-transformers 6.x reads it (``SentenceTransformer.__init__``,
``models.Pooling``, ``models.Transformer``), without importing it. What it would run and we do
not (weighted-mean pooling, a Dense head, pooling that skips the prompt) is refused by name:
serving such a folder with our encoder would return other vectors than the model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .config import Pooling

# sentence-transformers' pooling modes -> ours; the rest of its modes we refuse.
POOLING_MODES: dict[str, Pooling] = {
    "mean": "mean",
    "cls": "cls",
    "max": "max",
    "lasttoken": "last",
}
# The 2.x-5.x format: one boolean per mode (sentence-transformers' _LEGACY_POOLING_MODE_KWARGS).
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# modules.json types we run, by class name: the encoder, its pooling and an L2 normalisation.
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
# transformers' "no limit" model_max_length is 1e30; anything this large says nothing.
UNSET_MAX_LENGTH = 10**9


@dataclass(frozen=True)
class SentenceFolder:
    """The sentence-transformers settings of a folder; defaults when its files are absent."""

    pooling: Pooling = "mean"
    normalize: bool = False  # a Normalize module follows pooling
    max_seq_length: int | None = None  # None: as long as the model's positions allow
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def _optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def _module_class(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _modules(folder: Path) -> list[dict[str, Any]]:
    """``modules.json``, every module one we run (none listed: a bare Transformer folder)."""
    path = folder / "modules.json"
    modules: list[dict[str, Any]] = read_json(path) if path.is_file() else []
    for module in modules:
        if _module_class(module) not in SUPPORTED_MODULES:
            raise CheckpointError(
                f"{path}: module {module.get('type')!r} is not supported; "
                f"we run {', '.join(SUPPORTED_MODULES)} only"
            )
    return modules


def _pooling_modes(cfg: dict[str, Any]) -> list[str]:
    """The modes a pooling config asks for, in either format, as sentence-transformers reads
    them: ``pooling_mode`` wins; legacy booleans with none set mean mean pooling."""
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        return [mode] if isinstance(mode, str) else list(mode)
    legacy = [mode for key, mode in LEGACY_POOLING_KEYS.items() if cfg.get(key)]
    return legacy or ["mean"]


def _pooling(folder: Path, modules: list[dict[str, Any]]) -> Pooling:
    paths = [m.get("path", "") for m in modules if _module_class(m) == "Pooling"]
    config_file = folder / (paths[0] if paths else "1_Pooling") / "config.json"
    if not config_file.is_file():
        return "mean"
    cfg = read_json(config_file)
    modes = _pooling_modes(cfg)
    supported = ", ".join(POOLING_MODES)
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise CheckpointError(
            f"{config_file}: pooling_mode {modes if len(modes) != 1 else modes[0]!r} is not "
            f"supported; use one of {supported}"
        )
    if not cfg.get("include_prompt", True):
        raise CheckpointError(
            f"{config_file}: include_prompt false (pooling without the prompt's tokens) is not "
            f"supported; we pool over every token, prompt included"
        )
    return POOLING_MODES[modes[0]]


def _max_seq_length(folder: Path) -> int | None:
    """``sentence_bert_config.json``'s ``max_seq_length``, else the tokenizer config's
    ``model_max_length`` (sentence-transformers caps both at the model's positions; so does the
    family's config reader)."""
    max_seq = _optional_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if max_seq is None:
        max_seq = _optional_json(folder / "tokenizer_config.json").get("model_max_length")
    return int(max_seq) if max_seq is not None and max_seq < UNSET_MAX_LENGTH else None


def _prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    path = folder / "config_sentence_transformers.json"
    cfg = _optional_json(path)
    prompts = {str(k): "" if v is None else str(v) for k, v in (cfg.get("prompts") or {}).items()}
    default = cfg.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise CheckpointError(
            f"{path}: default_prompt_name {default!r} is not one of the prompts {sorted(prompts)}"
        )
    return prompts, default


def read_sentence_folder(folder: Path) -> SentenceFolder:
    """The folder's sentence-transformers settings; a missing file keeps its default."""
    modules = _modules(folder)
    prompts, default_prompt_name = _prompts(folder)
    return SentenceFolder(
        pooling=_pooling(folder, modules),
        normalize=any(_module_class(m) == "Normalize" for m in modules),
        max_seq_length=_max_seq_length(folder),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
    )


def with_prompt(
    texts: list[str],
    prompts: dict[str, str],
    default_prompt_name: str | None,
    prompt_name: str | None = None,
) -> list[str]:
    """``texts`` with the prompt ``prompt_name`` (None: the default one, if any) before each,
    as sentence-transformers' ``encode(prompt_name=...)`` does; an unknown name is a
    ``ValueError`` that lists the known ones."""
    name = default_prompt_name if prompt_name is None else prompt_name
    if name is None:
        return texts
    if name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise ValueError(f"unknown prompt name {name!r}; this model's prompts: {known}")
    return [prompts[name] + text for text in texts]
