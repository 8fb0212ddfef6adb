"""Sending: 429s and 503s waited out through a real proxy, a 4xx failing fast with the
server's message, and the pieces of the retry policy."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import numpy as np
import pytest

from bulk.client import BatchFailed, backoff_s, error_message, parse_embeddings, retry_after_s
from bulk.config import RetryPolicy

from .conftest import Answer, Proxy, bulk, numbered_texts, write_lines

THROTTLED = 640  # 10 batches of 64: the one-shot file's first lines
CONCURRENCY = 3  # below the client's default 4, so the bound seen is the one given
JSON = {"content-type": "application/json"}


def throttle(n: int) -> Answer | None:
    """Every third request: 429 (Retry-After 1 s the first time, 0 after); the fourth: 503
    with Retry-After as an HTTP date (now); the rest are forwarded."""
    if n % 3 == 0:
        body = b'{"error": {"message": "slow down", "code": "rate_limited"}}'
        return 429, {**JSON, "retry-after": "1" if n == 3 else "0"}, body
    if n == 4:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return 503, {**JSON, "retry-after": now}, b'{"error": {"message": "replica gone"}}'
    return None


def test_429s_and_503s_are_waited_out(
    service_url: str, tmp_path: Path, one_shot: np.ndarray
) -> None:
    """Three requests in flight through a proxy that refuses a third of them: the run finishes,
    every row within 1e-5 of the one-shot run's (one batch at a time, no proxy; the server
    gathers concurrent requests into its batches, which moves last bits only)."""
    texts = numbered_texts(THROTTLED)
    source = write_lines(tmp_path / "texts.txt", texts)
    with Proxy(service_url, throttle) as proxy:
        args = ("--url", proxy.url, "--concurrency", CONCURRENCY)
        done = bulk(source, "--output", tmp_path / "throttled.npy", *args)
    assert done.returncode == 0, done.stderr
    assert proxy.statuses[429] >= THROTTLED // 64 // 3 and proxy.statuses[503] == 1
    assert 2 <= proxy.most_in_flight <= CONCURRENCY  # bounded, and more than one at a time
    assert "429×" in done.stderr and "503×1" in done.stderr
    throttled = np.load(tmp_path / "throttled.npy")
    assert throttled.shape == (THROTTLED, 384)
    assert np.abs(throttled - one_shot[:THROTTLED]).max() <= 1e-5


def test_a_4xx_fails_fast_with_the_servers_message(service_url: str, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "texts.txt", numbered_texts(10))
    with Proxy(service_url, lambda n: None) as proxy:
        args = ("--url", proxy.url, "--model", "nope", "--api-key", "key-19")
        done = bulk(source, "--output", tmp_path / "v.npy", *args)
    assert done.returncode == 1
    assert "HTTP 404" in done.stderr and "model 'nope' is not served here" in done.stderr
    assert proxy.authorizations == ["Bearer key-19"]  # one request: not retried
    assert not (tmp_path / "v.npy").exists()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("0", now) == 0.0
    assert retry_after_s(" 7 ", now) == 7.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_s(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0
    assert retry_after_s(None, now) is None
    assert retry_after_s("soon", now) is None


def test_backoff_doubles_within_its_cap_with_jitter() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0)
    rng = random.Random(19)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        waits = [backoff_s(policy, attempt, rng) for _ in range(50)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert len(set(waits)) > 1


def test_answers_are_parsed_by_index_in_either_encoding() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
    data = [
        {"index": 2, "embedding": base64.b64encode(rows[2].astype("<f4").tobytes()).decode()},
        {"index": 0, "embedding": rows[0].tolist()},
        {"index": 1, "embedding": base64.b64encode(rows[1].astype("<f4").tobytes()).decode()},
    ]
    parsed = parse_embeddings(json.dumps({"data": data}).encode(), 3)
    np.testing.assert_array_equal(parsed, rows)
    with pytest.raises(BatchFailed, match="asked for 4 embeddings"):
        parse_embeddings(json.dumps({"data": data}).encode(), 4)
    with pytest.raises(BatchFailed, match="not OpenAI's embeddings list"):
        parse_embeddings(b"<html>", 3)


def test_error_messages_are_the_servers_own() -> None:
    assert error_message(b'{"error": {"message": "bad key", "type": "x"}}') == "bad key"
    assert error_message(b'{"error": "Input validation error", "error_type": "Validation"}') == (
        "Input validation error"
    )
    assert error_message(b"upstream connect error") == "upstream connect error"
