"""Tiny random sentence-transformers folders of every family we serve, built offline.

Each folder is what a real checkpoint would be (``config.json``, ``model.safetensors``, the
tokenizer files, the sentence-transformers module list and configs), but of a 2-layer, width-64
``transformers`` model with random weights and a tokenizer trained here on the project's texts.
So our loader and sentence-transformers read the same files, and the tests need no download.

The tokenizer of each kind is trained once per process (``_trained_tokenizer``); a folder costs
what saving a ~1 MB model costs. Weights are drawn with a wider spread than ``transformers``'
0.02 (``INIT_RANGE``) so attention is far from uniform: a wrong mask, window or position rule
changes the vectors, and a parity test can fail.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing

from common.texts import corpus
from models.sentence_folder import LEGACY_POOLING_KEYS

KINDS = ("bert", "xlm-roberta", "mpnet", "modernbert", "qwen3")
PoolingFormat = Literal["v6", "legacy"]

VOCAB_SIZE = 1000
HIDDEN = 64
HEADS = 4
LAYERS = 2
FFN = 128
MAX_POSITIONS = 512
MAX_SEQ_LENGTH = 128  # sentence_bert_config.json: below the passages' length, so they truncate
SLIDING_WINDOW = 16  # ModernBERT's local window, in tokens: most texts are longer
INIT_RANGE = 0.2


@dataclass(frozen=True)
class TokenizerKind:
    """How one family tokenizes: the model, its specials (first = pad) and its template."""

    model: Literal["wordpiece", "unigram", "byte-bpe"]
    specials: dict[str, str]  # tokenizer_config.json role -> token; "pad_token" always present
    template: str  # TemplateProcessing single-sequence template
    pair: str  # and the pair template, as the family's real tokenizer.json has it
    padding_side: Literal["right", "left"] = "right"
    lowercase: bool = False
    token_types: bool = False  # the tokenizer returns token types (BERT's: 1 from $B on)


_BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
_ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
TOKENIZERS: dict[str, TokenizerKind] = {
    "bert": TokenizerKind(
        "wordpiece",
        _BERT_SPECIALS,
        "[CLS] $A [SEP]",
        "[CLS] $A [SEP] $B:1 [SEP]:1",
        lowercase=True,
        token_types=True,
    ),
    "mpnet": TokenizerKind(
        "wordpiece", _ROBERTA_SPECIALS, "<s> $A </s>", "<s> $A </s> </s> $B </s>", lowercase=True
    ),
    "xlm-roberta": TokenizerKind(
        "unigram", _ROBERTA_SPECIALS, "<s> $A </s>", "<s> $A </s> </s> $B </s>"
    ),
    "modernbert": TokenizerKind(
        "byte-bpe", _BERT_SPECIALS, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]"
    ),
    "qwen3": TokenizerKind(
        "byte-bpe",
        {"pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
        "$A <|endoftext|>",
        "$A <|endoftext|> $B:1 <|endoftext|>:1",
        padding_side="left",
    ),
}
USUAL_POOLING = {kind: "lasttoken" if kind == "qwen3" else "mean" for kind in KINDS}


def _new_tokenizer(kind: TokenizerKind) -> tuple[Tokenizer, trainers.Trainer]:
    specials = list(dict.fromkeys(kind.specials.values()))
    unk = kind.specials.get("unk_token")
    tok: Tokenizer
    trainer: trainers.Trainer
    if kind.model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=kind.lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials)
    elif kind.model == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token=unk
        )
    else:
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    return tok, trainer


@functools.cache
def _trained_tokenizer(kind: str) -> str:
    """``tokenizer.json`` of ``kind``, trained on the project's texts (once per process)."""
    spec = TOKENIZERS[kind]
    tok, trainer = _new_tokenizer(spec)
    tok.train_from_iterator(corpus(), trainer=trainer)
    pieces = spec.template.split()
    tok.post_processor = TemplateProcessing(
        single=spec.template,
        pair=spec.pair,
        special_tokens=[(p, tok.token_to_id(p)) for p in dict.fromkeys(pieces) if p != "$A"],
    )
    return tok.to_str()


def _model_config(kind: str, tok: Tokenizer, specials: dict[str, str] | None = None) -> Any:
    """The ``transformers`` config of a tiny model of ``kind`` that fits tokenizer ``tok``
    (whose special tokens are ``specials``, by default the kind's)."""
    from transformers import (
        BertConfig,
        ModernBertConfig,
        MPNetConfig,
        Qwen3Config,
        XLMRobertaConfig,
    )

    specials = TOKENIZERS[kind].specials if specials is None else specials
    ids = {role: tok.token_to_id(token) for role, token in specials.items()}
    size: dict[str, Any] = {
        "vocab_size": tok.get_vocab_size(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "initializer_range": INIT_RANGE,
        "pad_token_id": ids["pad_token"],
    }
    if kind == "bert":
        return BertConfig(**size, max_position_embeddings=MAX_POSITIONS)
    if kind == "xlm-roberta":
        # Positions start after the pad id (XLM-R's offset), hence the 2 extra rows.
        return XLMRobertaConfig(
            **size,
            max_position_embeddings=MAX_POSITIONS + 2,
            type_vocab_size=1,
            bos_token_id=ids["bos_token"],
            eos_token_id=ids["eos_token"],
        )
    if kind == "mpnet":
        return MPNetConfig(
            **size,
            max_position_embeddings=MAX_POSITIONS + 2,
            bos_token_id=ids["bos_token"],
            eos_token_id=ids["eos_token"],
        )
    if kind == "modernbert":
        return ModernBertConfig(
            **size,
            max_position_embeddings=MAX_POSITIONS,
            layer_types=["full_attention", "sliding_attention"],
            local_attention=SLIDING_WINDOW,
            cls_token_id=ids["cls_token"],
            sep_token_id=ids["sep_token"],
            bos_token_id=ids["cls_token"],
            eos_token_id=ids["sep_token"],
        )
    if kind == "qwen3":
        return Qwen3Config(
            **size,
            num_key_value_heads=2,
            head_dim=HIDDEN // HEADS,
            max_position_embeddings=MAX_POSITIONS,
            tie_word_embeddings=False,
            bos_token_id=ids["eos_token"],
            eos_token_id=ids["eos_token"],
        )
    raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _pooling_config(mode: str, pooling_format: PoolingFormat) -> dict[str, Any]:
    """``1_Pooling/config.json`` as sentence-transformers 6.x writes it, or as 2.x–5.x did."""
    if pooling_format == "v6":
        return {"embedding_dimension": HIDDEN, "pooling_mode": mode, "include_prompt": True}
    return {
        "word_embedding_dimension": HIDDEN,
        **{key: named == mode for key, named in LEGACY_POOLING_KEYS.items()},
        "include_prompt": True,
    }


def tiny_tokenizer(kind: str, folder: Path) -> Path:
    """Only the tokenizer files of :func:`tiny_checkpoint` (no ``transformers`` import)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(kind, folder)
    return folder / "tokenizer.json"


def _write_tokenizer(
    kind: str,
    folder: Path,
    specials: dict[str, str] | None = None,
    max_length: int = MAX_POSITIONS,
) -> Tokenizer:
    """tokenizer.json and the two files ``AutoTokenizer`` reads beside it; ``specials``
    (default: the kind's) may name tokens the trained vocabulary lacks: they are added."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    spec = TOKENIZERS[kind]
    specials = spec.specials if specials is None else specials
    tok = Tokenizer.from_str(_trained_tokenizer(kind))
    tok.add_special_tokens([t for t in specials.values() if tok.token_to_id(t) is None])
    tok.save(str(folder / "tokenizer.json"))
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": max_length,
            "padding_side": spec.padding_side,
            "clean_up_tokenization_spaces": False,
            # BERT's tokenizers return token types, which its models read.
            "model_input_names": [
                "input_ids",
                *(["token_type_ids"] if spec.token_types else []),
                "attention_mask",
            ],
            **specials,
        },
    )
    _write_json(folder / "special_tokens_map.json", specials)
    return tok


def tiny_checkpoint(
    kind: str,
    folder: Path,
    *,
    pooling: str | None = None,
    pooling_format: PoolingFormat = "v6",
    normalize: bool = True,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random sentence-transformers model of ``kind`` into ``folder``.

    ``pooling`` is a sentence-transformers pooling mode ("mean", "cls", "max", "lasttoken"...;
    None: the family's usual one); ``normalize`` adds the Normalize module.
    """
    from transformers import AutoModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _write_tokenizer(kind, folder)
    torch.manual_seed(seed)
    model = AutoModel.from_config(_model_config(kind, tok))
    model.save_pretrained(str(folder))
    mode = USUAL_POOLING[kind] if pooling is None else pooling
    _write_json(folder / "1_Pooling" / "config.json", _pooling_config(mode, pooling_format))
    _write_json(
        folder / "sentence_bert_config.json",
        {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False},
    )
    modules = [("0", "", "Transformer"), ("1", "1_Pooling", "Pooling")]
    if normalize:
        modules.append(("2", "2_Normalize", "Normalize"))
        (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        folder / "modules.json",
        [
            {"idx": i, "name": name, "path": path, "type": f"sentence_transformers.models.{t}"}
            for i, (name, path, t) in enumerate(modules)
        ],
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": dict(prompts or {}),
            "default_prompt_name": default_prompt_name,
            "similarity_fn_name": "cosine",
        },
    )
    return folder


# Label names of a tiny classifier by count (transformers' LABEL_i for any other count).
LABELS = {3: ("negative", "neutral", "positive")}
# Qwen3 pads with its end-of-text token, which its template also appends; transformers' Qwen3
# classifier takes the last token that is not the pad id, so a classifier needs a pad of its own.
CLASSIFIER_SPECIALS = {"qwen3": {**TOKENIZERS["qwen3"].specials, "pad_token": "<|pad|>"}}


def tiny_classifier(kind: str, folder: Path, *, num_labels: int, seed: int = 0) -> Path:
    """Write a tiny random ``<Arch>ForSequenceClassification`` folder of ``kind``: what a
    cross-encoder checkpoint is (config.json with id2label, weights, tokenizer files with a pair
    template), read alike by ``CrossEncoder``, ``AutoModelForSequenceClassification`` and us.

    Inputs are cut at ``MAX_SEQ_LENGTH`` tokens (the tokenizer's ``model_max_length``), so a
    query with a passage truncates. ModernBERT's head mean-pools (its other pooling, cls, is
    what every BERT-like head does).
    """
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = CLASSIFIER_SPECIALS.get(kind)
    tok = _write_tokenizer(kind, folder, specials, max_length=MAX_SEQ_LENGTH)
    config = _model_config(kind, tok, specials)
    names = LABELS.get(num_labels) or tuple(f"LABEL_{i}" for i in range(num_labels))
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    if kind == "modernbert":
        config.classifier_pooling = "mean"
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(folder))
    return folder


@functools.cache
def tiny_classifier_cached(kind: str, num_labels: int) -> Path:
    """:func:`tiny_classifier` written once per process for each (kind, num_labels)."""
    return tiny_classifier(
        kind, _cache_root() / f"{kind}-classifier-{num_labels}", num_labels=num_labels
    )


@functools.cache
def _cache_root() -> Path:
    root = tempfile.mkdtemp(prefix="tiny-models-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return Path(root)


def tiny_checkpoint_cached(kind: str, **options: Any) -> Path:
    """:func:`tiny_checkpoint` written once per process for each (kind, options)."""
    frozen = tuple(
        sorted(
            (k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in options.items()
        )
    )
    return _cached(kind, frozen)


@functools.cache
def _cached(kind: str, frozen: tuple[tuple[str, Any], ...]) -> Path:
    options: dict[str, Any] = {
        k: dict(v) if k == "prompts" and v is not None else v for k, v in frozen
    }
    name = f"{kind}-{hashlib.sha256(repr(frozen).encode()).hexdigest()[:12]}"
    return tiny_checkpoint(kind, _cache_root() / name, **options)
