"""The bench section ``loadtest.bench.bulk``: its file is W2's sentences and its Markdown shows
every pair and the median ratio."""

from __future__ import annotations

from pathlib import Path

from common import texts as corpus
from loadtest.bench import bulk as bench_bulk


def test_the_file_is_w2s_sentences_in_order(tmp_path: Path) -> None:
    sentences = corpus.sentences()
    path = bench_bulk.sentences_file(tmp_path / "s.txt", len(sentences) + 3)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [*sentences, *sentences[:3]]


def test_section_shows_each_pair_and_the_median_ratio() -> None:
    found = {
        "model": "all-MiniLM-L6-v2",
        "backend": {"name": "openvino", "precision": "bf16"},
        "threads": 2,
        "lines": 6236,
        "batch_size": 64,
        "concurrency": 4,
        "encoding": "base64",
        "w2_inputs": 32,
        "w2_clients": 4,
        "seconds_per_run": 20.0,
        "pairs": [{"w2": 300.0, "bulk": 285.0}, {"w2": 280.0, "bulk": 290.0}],
        "ratio_median": 0.993,
        "ratio_range": (0.95, 1.036),
        "load_avg": ((1.5, 1.0, 1.0), (2.0, 1.5, 1.0)),
    }
    markdown = "\n".join(bench_bulk.section(found, cores=2))
    assert "| 1 | 300.0 | 285.0 | 0.95x |" in markdown
    assert "| 2 | 280.0 | 290.0 | 1.04x |" in markdown
    assert "Median **0.99x** of W2's throughput (range 0.95-1.04x)" in markdown
    assert "6,236 sentences" in markdown and "2 cores" in markdown
