"""``python -m bulk INPUT --output OUT``: embed a whole file of texts through any
OpenAI-compatible ``/v1/embeddings`` server, resumably.

Exit status: 0 done; 1 the server refused or kept failing, or a file could not be written (the
message is printed; finished batches stay for a resume); 2 the input, the options or the parts
folder (nothing was sent); 130 interrupted (Ctrl-C; finished batches stay too).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from .client import BatchFailed
from .config import ENCODINGS, BulkConfig, RetryPolicy
from .runner import run
from .sources import InputError

# The key's environment variables, first set wins: ours (the server's may be a comma list of
# several; the first is used), then the one OpenAI's own clients read.
KEY_ENV = ("EMBEDSERVE_API_KEY", "OPENAI_API_KEY")


def _default(name: str, cls: type = BulkConfig) -> object:
    """A field's default, so that the help and the dataclass never disagree."""
    return next(f.default for f in fields(cls) if f.name == name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bulk",
        description="Embed every text of a file through an OpenAI-compatible /v1/embeddings "
        "server; vectors in input order, resumable after a kill (run the same command again).",
    )
    add = p.add_argument
    add("input", type=Path, help=".txt (one text a line), .jsonl or .parquet")
    add("--output", "-o", type=Path, required=True, help=".npy or .parquet (the suffix decides)")
    add("--url", default=_default("url"), help="server base URL (default %(default)s)")
    add("--model", default=None, help="model name to send (default: the server's default)")
    add("--dimensions", type=int, default=None, help="ask the server for this many dimensions")
    add(
        "--encoding",
        choices=ENCODINGS,
        default=_default("encoding"),
        help="base64: exact float32, a third of the bytes; float: for servers without base64",
    )
    add("--field", default=_default("field"), help=".jsonl key of the text (%(default)s)")
    add("--column", default=_default("column"), help=".parquet column (%(default)s)")
    add("--batch-size", type=int, default=_default("batch_size"), help="texts per request")
    add("--concurrency", type=int, default=_default("concurrency"), help="requests in flight")
    add(
        "--timeout",
        dest="timeout_s",
        type=float,
        default=_default("timeout_s"),
        help="seconds per request (default %(default)s)",
    )
    add(
        "--max-retries",
        type=int,
        default=_default("max_retries", RetryPolicy),
        help="retries per batch on 408/429/5xx, timeouts and dropped connections",
    )
    add(
        "--api-key",
        default=None,
        help=f"sent as Authorization: Bearer (default: ${' else $'.join(KEY_ENV)})",
    )
    add(
        "--restart",
        action="store_true",
        help="discard the finished batches of an earlier run instead of resuming it",
    )
    add("--no-progress", action="store_true", help="no progress bar")
    return p


def api_key(given: str | None, env: Mapping[str, str]) -> str | None:
    """``--api-key``, else the first of ``KEY_ENV`` that is set (its first comma item)."""
    if given:
        return given
    for name in KEY_ENV:
        keys = [k.strip() for k in env.get(name, "").split(",") if k.strip()]
        if keys:
            return keys[0]
    return None


def config_from(args: argparse.Namespace, env: Mapping[str, str]) -> BulkConfig:
    """The config from the flags: each flag's dest is the field it sets."""
    given = vars(args)
    settable = {f.name for f in fields(BulkConfig)} - {"retry", "api_key"}
    return BulkConfig(
        **{name: given[name] for name in settable if name in given},
        retry=RetryPolicy(max_retries=args.max_retries),
        api_key=api_key(args.api_key, env),
    )


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = config_from(args, os.environ)
    except ValueError as err:
        p.error(str(err))
    if not args.input.is_file():
        p.error(f"{args.input}: no such file")
    try:
        summary = run(config, progress=not args.no_progress)
    except InputError as err:
        sys.stderr.write(f"bulk: {err}\n")
        return 2
    except (BatchFailed, OSError, KeyboardInterrupt) as err:
        what = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
        sys.stderr.write(f"bulk: {what}\nbulk: finished batches are kept in {config.parts}; "
                         "run the same command again to resume\n")  # fmt: skip
        return 130 if isinstance(err, KeyboardInterrupt) else 1
    sys.stderr.write(summary.line() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
