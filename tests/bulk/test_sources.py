"""Inputs and outputs: .txt, .jsonl and .parquet give the same vectors for the same texts,
parquet output holds them with their row index, and a bad input is refused before anything is
sent, naming its line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulk.config import BulkConfig
from bulk.sources import InputError, jsonl_texts, txt_texts

from .conftest import Proxy, bulk, numbered_texts, write_lines

SMALL = 40
DIMS = 128


def test_jsonl_parquet_float_dimensions_and_parquet_output(
    service_url: str, tmp_path: Path
) -> None:
    texts = numbered_texts(SMALL)
    common = ("--url", service_url, "--batch-size", 16, "--concurrency", 1)
    write_lines(tmp_path / "texts.txt", texts)
    records = [json.dumps({"id": i, "body": t}) for i, t in enumerate(texts)]
    records.insert(5, "")  # a blank line between records holds no record
    (tmp_path / "texts.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"sentence": texts, "n": range(SMALL)}), tmp_path / "texts.parquet")

    jsonl = ("--field", "body", "--encoding", "float")
    parquet = ("--column", "sentence", "--dimensions", DIMS)
    runs = [
        bulk(tmp_path / "texts.txt", "--output", tmp_path / "txt.npy", *common),
        bulk(tmp_path / "texts.jsonl", "--output", tmp_path / "jsonl.npy", *jsonl, *common),
        bulk(tmp_path / "texts.parquet", "--output", tmp_path / "out.parquet", *parquet, *common),
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    from_txt = np.load(tmp_path / "txt.npy")
    assert from_txt.shape == (SMALL, 384)
    # JSON floats are float32's shortest decimal form: as exact as base64.
    np.testing.assert_array_equal(np.load(tmp_path / "jsonl.npy"), from_txt)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    assert table.column("index").to_pylist() == list(range(SMALL))
    # dimensions: the first DIMS, re-normalised (the server's rule).
    truncated = from_txt[:, :DIMS] / np.linalg.norm(from_txt[:, :DIMS], axis=1, keepdims=True)
    stored = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert stored.shape == (SMALL, DIMS)
    assert np.abs(stored - truncated).max() <= 1e-6


def test_an_empty_line_is_refused_before_sending(service_url: str, tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    source.write_text("one\ntwo\n\nfour\n", encoding="utf-8")
    with Proxy(service_url, lambda n: None) as proxy:
        done = bulk(source, "--output", tmp_path / "v.npy", "--url", proxy.url)
    assert done.returncode == 2
    assert f"{source}:3: empty line" in done.stderr
    assert proxy.requests == 0
    assert not (tmp_path / "v.npy.parts").exists()


def test_txt_lines_are_the_rows(tmp_path: Path) -> None:
    """\\r\\n and \\n end lines, the last newline is optional, a BOM is dropped, a line of
    spaces is a text (servers embed it)."""
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffalpha\r\nbeta\n  \ngamma".encode())
    assert txt_texts(path) == ["alpha", "beta", "  ", "gamma"]
    path.write_bytes(b"alpha\nbeta\n")
    assert txt_texts(path) == ["alpha", "beta"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"title": "x"}', "expected an object with a 'text' field"),
        ('{"text": ""}', "'text' must be a non-empty string"),
        ('{"text": 3}', "'text' must be a non-empty string"),
    ],
)
def test_bad_jsonl_records_are_refused_with_their_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(f'{{"text": "fine"}}\n{line}\n', encoding="utf-8")
    with pytest.raises(InputError, match=f"t.jsonl:2: {message}"):
        jsonl_texts(path, "text")


def test_config_refuses_unknown_formats_and_finds_the_route() -> None:
    with pytest.raises(ValueError, match="unsupported input type '.csv'"):
        BulkConfig(input=Path("a.csv"), output=Path("v.npy"))
    with pytest.raises(ValueError, match="must end in .npy or .parquet"):
        BulkConfig(input=Path("a.txt"), output=Path("v.h5"))
    for url in (
        "http://h:8000",
        "http://h:8000/",
        "http://h:8000/v1",
        "http://h:8000/v1/embeddings",
    ):
        config = BulkConfig(input=Path("a.txt"), output=Path("v.npy"), url=url)
        assert config.endpoint == "http://h:8000/v1/embeddings"
