"""Long documents embedded whole (``long_input: "chunk"``, ``service.chunking``) against
truncated to the model's window: what retrieval gains (issue 19).

Documents: ``common.texts``' passages (~250 tokens each) joined ``PER_DOCUMENT`` at a time, no
passage in two documents, so each runs past MiniLM's 256-token window and truncation keeps
about its first paragraph. Queries: each document's paragraphs embedded alone. For each
document, the cosine between its vector and its last paragraph's, chunked vs truncated (the
paragraph truncation drops), and the first paragraph's (the one truncation keeps); then each
paragraph as a query over all documents: how often its own document ranks first.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import texts as corpus

from . import served
from .served import exact_vectors

KEY = "long"  # the name ``--only`` takes
PER_DOCUMENT = 3
BATCH = 4


def documents() -> tuple[list[str], list[list[str]]]:
    """The joined documents and each one's paragraphs."""
    passages = corpus.passages()
    groups = [
        passages[i : i + PER_DOCUMENT]
        for i in range(0, len(passages) - PER_DOCUMENT + 1, PER_DOCUMENT)
    ]
    return [" ".join(group) for group in groups], groups


def recall_at_1(queries: np.ndarray, owners: np.ndarray, docs: np.ndarray) -> float:
    """Share of queries (unit rows) whose own document (``owners``) has the highest cosine."""
    return float(np.mean(np.argmax(queries @ docs.T, axis=1) == owners))


def tokens(url: str, texts: list[str], **fields: object) -> int:
    """The tokens the service counts (``usage``) for embedding ``texts``."""
    answer = served.post_embeddings(url, {"input": texts, **fields})
    return int(json.loads(answer)["usage"]["prompt_tokens"])


def measure(artifact: Path, threads: int, scale: float, work: Path) -> dict[str, Any]:
    start, load_start = time.perf_counter(), os.getloadavg()
    docs, groups = documents()
    paragraphs = [p for group in groups for p in group]
    owners = np.repeat(np.arange(len(docs)), PER_DOCUMENT)
    with served.embedserve(artifact, threads, work / "long-input-server.log") as server:
        info = served.server_info(server.url) or {}
        chunked = exact_vectors(server.url, docs, BATCH, long_input="chunk")
        truncated = exact_vectors(server.url, docs, BATCH, long_input="truncate")
        queries = exact_vectors(server.url, paragraphs, BATCH * PER_DOCUMENT)
        spent = {mode: tokens(server.url, docs, long_input=mode) for mode in ("chunk", "truncate")}
    first, last = queries[0::PER_DOCUMENT], queries[PER_DOCUMENT - 1 :: PER_DOCUMENT]
    found: dict[str, Any] = {
        "model": info.get("model_id"),
        "max_input_length": info.get("max_input_length"),
        "backend": info.get("backend", {}),
        "overlap": (info.get("limits") or {}).get("chunk_overlap"),
        "threads": threads,
        "documents": len(docs),
        "per_document": PER_DOCUMENT,
        "tokens": spent,
        "seconds": time.perf_counter() - start,
        "load_avg": (load_start, os.getloadavg()),
    }
    for mode, vectors in (("chunk", chunked), ("truncate", truncated)):
        found[mode] = {
            "cos_last_mean": float(np.mean(np.sum(vectors * last, axis=1))),
            "cos_first_mean": float(np.mean(np.sum(vectors * first, axis=1))),
            "recall_at_1_all": recall_at_1(queries, owners, vectors),
            "recall_at_1_last": recall_at_1(last, np.arange(len(docs)), vectors),
        }
    return found


def section(found: dict[str, Any], cores: int) -> list[str]:
    """The Markdown of ``docs/benchmarks.md``'s long-input section."""
    backend = found.get("backend") or {}
    chunk, cut = found["chunk"], found["truncate"]
    rows = [
        f"| {name} | {chunk[key]:.3f} | {cut[key]:.3f} |"
        for name, key in (
            ("mean cosine, document vs its last paragraph", "cos_last_mean"),
            ("mean cosine, document vs its first paragraph", "cos_first_mean"),
            ("recall@1, last paragraph as the query", "recall_at_1_last"),
            ("recall@1, every paragraph as a query", "recall_at_1_all"),
        )
    ]
    spent = found["tokens"]
    return [
        "## Long inputs: embedded whole vs truncated",
        "",
        f"{found['model']} ({found['max_input_length']}-token window) on {backend.get('name')} "
        f"{backend.get('precision')}, {found['threads']} threads, {cores} cores. "
        f"{found['documents']} documents of {found['per_document']} `common.texts` passages "
        f'each (no passage in two), each past the window; `long_input: "chunk"` (windows '
        f'sharing {found["overlap"]} tokens, averaged by token count) against `"truncate"` '
        f"(the window's first tokens: about the first paragraph). Queries: each paragraph "
        f"embedded alone, ranked against the {found['documents']} documents.",
        "",
        "| | chunk | truncate |",
        "|---|---|---|",
        *rows,
        "",
        f"Tokens embedded for the documents: {spent['chunk']} chunked, {spent['truncate']} "
        f"truncated ({spent['chunk'] / spent['truncate']:.2f}x the work). A chunked vector "
        "stands for the whole document, about as close to each of its paragraphs; a truncated "
        "one is its first paragraph. The passages joined here are unrelated texts, so this is "
        "the far end: a real document's paragraphs share its topic, and truncation loses less "
        "of it.",
        "",
    ]
