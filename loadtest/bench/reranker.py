"""The cross-encoder the bench serves beside all-MiniLM-L6-v2, assembled once into artifacts/.

No reranker weights are on the package index (the only network here; ms-marco-MiniLM-L-6-v2
and the names around it were looked for), so the bench builds one of ms-marco-MiniLM-L-6-v2's
exact shape: a ``BertForSequenceClassification`` of 6 layers, 384 wide, 12 heads, 1536
intermediate, vocabulary 30522, 512 positions, one label. Its encoder and pooler are
all-MiniLM-L6-v2's weights (that model's checkpoint has that shape, and trained weights give
real activations, so the bf16 and fp32 differences measured are those of a real model, which
a random encoder's are not); only the one-logit classifier is random, from a fixed seed, drawn
at ``HEAD_STD`` so that logits spread over a few units as a trained reranker's do (transformers'
0.02 puts every sigmoid score within 0.01 of 0.5, which would hide score errors). The
tokenizer is all-MiniLM-L6-v2's, the uncased WordPiece vocabulary ms-marco-MiniLM-L-6-v2 also
uses, whose ``tokenizer.json`` carries BERT's pair template (``[CLS] q [SEP] d [SEP]``).

Throughput depends on the shape alone; the scores mean nothing for relevance, and the report
says so.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from . import served

log = logging.getLogger(__name__)

NAME = "minilm-l6-reranker"
CHECKPOINT = Path("artifacts/checkpoints") / NAME  # the transformers folder
ARTIFACT = Path("artifacts") / NAME  # its export
SEED = 0
HEAD_STD = 1.0
DESCRIPTION = (
    "ms-marco-MiniLM-L-6-v2's shape (BertForSequenceClassification, 6 layers, 384 wide, one "
    f"label): all-MiniLM-L6-v2's encoder with a random classifier (seed {SEED}); no reranker "
    "weights are on the package index, so its scores mean nothing for relevance"
)
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def checkpoint(folder: Path = CHECKPOINT) -> Path:
    """The transformers folder, built unless already there (in a temporary folder renamed into
    place when complete, so an interrupted build never looks like a model)."""
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import BertForSequenceClassification

    from models import get_model_path

    source = Path(get_model_path())
    log.info("building %s: %s's encoder, a random classifier (seed %d)", folder, source, SEED)
    torch.manual_seed(SEED)
    model = BertForSequenceClassification.from_pretrained(source, num_labels=1)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, HEAD_STD)
        model.classifier.bias.zero_()
    model.config.architectures = ["BertForSequenceClassification"]
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{folder.name}-", dir=folder.parent))
    model.save_pretrained(partial)
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, partial / name)
    untruncated_tokenizer(partial / "tokenizer.json")
    partial.rename(folder)
    return folder


def untruncated_tokenizer(path: Path) -> None:
    """Drop the 128-token truncation and padding all-MiniLM-L6-v2's file carries: a
    cross-encoder reads 512 tokens, and callers set their own limits."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["truncation"] = data["padding"] = None
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def artifact() -> Path:
    """The exported reranker, exported on first use (kept across runs, as operators do)."""
    served.ensure_artifact(ARTIFACT, str(checkpoint()))
    return ARTIFACT
