"""The command line: where the API key comes from, and the progress line's content."""

from __future__ import annotations

import io

from bulk.__main__ import api_key, config_from, parser
from bulk.progress import ProgressBar, render


def test_the_key_comes_from_the_flag_then_our_variable_then_openais() -> None:
    env = {"EMBEDSERVE_API_KEY": " k1, k2", "OPENAI_API_KEY": "sk-openai"}
    assert api_key("flag", env) == "flag"
    assert api_key(None, env) == "k1"  # the server's comma list: its first key
    assert api_key(None, {"OPENAI_API_KEY": "sk-openai"}) == "sk-openai"
    assert api_key(None, {}) is None


def test_flags_build_the_config_and_defaults_come_from_it() -> None:
    args = parser().parse_args(["in.jsonl", "-o", "out.parquet", "--field", "body"])
    config = config_from(args, {})
    assert (config.field, config.batch_size, config.concurrency, config.encoding) == (
        "body",
        64,
        4,
        "base64",
    )
    assert config.api_key is None and "api_key" not in repr(config)


def test_the_progress_line_has_counts_rate_and_eta() -> None:
    line = render(done=2560, total=5000, sent=2000, elapsed_s=4.0, retries=3)
    assert "2,560/5,000" in line and "51%" in line and "500 texts/s" in line
    assert "ETA 0:05" in line and "retries 3" in line
    assert "ETA ?" in render(done=64, total=5000, sent=0, elapsed_s=0.0, retries=0)


def test_progress_into_a_pipe_writes_whole_lines() -> None:
    stream = io.StringIO()  # not a TTY: no carriage returns, a line per report
    bar = ProgressBar(total=128, done=64, every_s=0.0, stream=stream)
    bar.advance(64)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all("128/128" in line for line in lines)
    assert "\r" not in stream.getvalue()
