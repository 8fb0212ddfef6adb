"""The texts of an input file, in the order their vectors will have.

Every problem is found here, before the first request: a run that fails on line 4,000,000 after
an hour of sending would waste the hour. Row ``i`` of the output is text ``i`` of this list:
line ``i + 1`` of a ``.txt`` file, the ``i``-th record of a ``.jsonl`` file, row ``i`` of a
``.parquet`` column.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from types import ModuleType

from .config import BulkConfig

HASH_CHUNK = 1 << 20


class InputError(ValueError):
    """The input cannot be embedded as it is; the message names the place and what to fix."""


def require_pyarrow(purpose: str) -> ModuleType:
    """pyarrow, imported only where parquet is read or written (it is an optional extra)."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise InputError(
            f"{purpose} needs pyarrow, which is not installed: "
            "pip install 'embedserve[parquet]' (or pip install 'pyarrow>=15,<27')"
        ) from None


def read_texts(config: BulkConfig) -> list[str]:
    """The input's texts; raises :class:`InputError` on anything a server would refuse."""
    suffix = config.input.suffix.lower()
    if suffix == ".parquet":
        texts = parquet_texts(config.input, config.column)
    elif suffix in (".jsonl", ".ndjson"):
        texts = jsonl_texts(config.input, config.field)
    else:
        texts = txt_texts(config.input)
    if not texts:
        raise InputError(f"{config.input}: no texts")
    return texts


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")  # a leading BOM is not part of text 1
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err})") from None


def txt_texts(path: Path) -> list[str]:
    """One text per line (``\\n`` or ``\\r\\n``; no other separators, so line numbers are what
    an editor shows). An empty line is refused with its number, not skipped: skipping would
    shift every later row away from its line, and servers refuse an empty input. A line of
    spaces is a text (servers embed it)."""
    lines = _decode(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    texts = [line.removesuffix("\r") for line in lines]
    for number, text in enumerate(texts, 1):
        if not text:
            raise InputError(
                f"{path}:{number}: empty line; every line is one text, and servers refuse an "
                "empty input: remove the line (rows of the output follow the lines)"
            )
    return texts


def jsonl_texts(path: Path, field: str) -> list[str]:
    """One JSON object per line, its text under ``field``. Blank lines hold no record and are
    skipped (rows follow records); anything else that is not a non-empty string is refused
    with its line number."""
    texts: list[str] = []
    for number, line in enumerate(_decode(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or field not in record:
            raise InputError(f"{where}: expected an object with a {field!r} field (--field)")
        text = record[field]
        if not isinstance(text, str) or not text:
            raise InputError(f"{where}: {field!r} must be a non-empty string, got {text!r:.60}")
        texts.append(text)
    return texts


def parquet_texts(path: Path, column: str) -> list[str]:
    """The string column ``column``; nulls and empty strings are refused with their row."""
    require_pyarrow(f"reading {path}")
    parquet = importlib.import_module("pyarrow.parquet")
    try:
        schema = parquet.read_schema(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid / OSError kinds
        raise InputError(f"{path}: not a parquet file ({err})") from None
    if column not in schema.names:
        raise InputError(f"{path}: no column {column!r} (--column); it has {schema.names}")
    values = parquet.read_table(path, columns=[column]).column(column).to_pylist()
    for row, text in enumerate(values):
        if not isinstance(text, str) or not text:
            raise InputError(f"{path}: row {row} of {column!r} is {text!r:.60}, not a text")
    return values


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file: what says that a resumed run reads the same texts. Hashing
    reads the file once more (about a second per GB), which is cheap beside embedding it."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
