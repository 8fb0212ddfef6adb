"""Calibration vectors for compact embeddings: the model's own vectors of real text, stored.

The service answers ``embedding_type`` int8 and uint8 as sentence-transformers'
``quantize_embeddings`` does (``service.compact``): each dimension's [min, max] over calibration
embeddings is cut into 256 buckets. Those ranges must come from the model's vectors of real
text, so the export computes them once, here, with the graph it writes. The file holds the raw
vectors, not the ranges: a request's ``dimensions`` and ``normalize`` change every value (a cut
vector at unit length is another vector), and the ranges must be those of the calibration
vectors shaped the same way, so the service derives them per (dimensions, normalize).

The texts are the int8 export's calibration split (``export.quantize.calibration_texts``: every
other text of ``common.texts``), so the odd-indexed texts stay held out for agreement numbers.
The vectors are the fp32 graph's through ONNX Runtime on the CPU, whatever ``--device`` or
``--fp16`` say: the graph whose parity with PyTorch the grid checked. For all-MiniLM-L6-v2 on
2 cores it costs ~1.5 s of an export's ~60 s, and 357 x 384 float32 is 548 kB on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models import Tokenizer

from .artifact import CALIBRATION_FILE
from .parity import embed_texts
from .quantize import CALIBRATION_STRIDE, calibration_texts
from .validate import open_session

SOURCE = (
    f"common.texts.corpus()[::{CALIBRATION_STRIDE}] (sentences, then passages), raw "
    "sentence_embedding of the fp32 graph, ONNX Runtime CPU"
)


def calibration_vectors(model_path: Path, tokenizer: Tokenizer) -> np.ndarray:
    """``(N, D)`` float32: the raw (not normalised) ``sentence_embedding`` of the fp32 graph at
    ``model_path`` for each calibration text, in text order."""
    session = open_session(model_path)  # CPU
    vectors = embed_texts(session, tokenizer, calibration_texts())  # (N, D)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def write_calibration(model_path: Path, tokenizer: Tokenizer, folder: Path) -> dict[str, Any]:
    """Write ``calibration.npy`` into ``folder``; returns the manifest's ``extras`` entry."""
    vectors = calibration_vectors(model_path, tokenizer)
    np.save(folder / CALIBRATION_FILE, vectors, allow_pickle=False)
    rows, dimension = vectors.shape
    return {"file": CALIBRATION_FILE, "texts": rows, "source": SOURCE, "dimension": dimension}
