"""One batch to any OpenAI-compatible ``/v1/embeddings`` server, retried until it succeeds or
the failure is the request's own.

Only OpenAI's request fields are sent (``input``, ``model``, ``encoding_format``,
``dimensions``), so the same client works against our service, OpenAI, TEI's OpenAI route,
vLLM or Infinity. What is retried: 408, 429 and every 5xx, timeouts and connection errors (a
batch is re-sent whole; embedding is idempotent). What is not: any other 4xx (a bad key, an
unknown model, a too-long input): retrying cannot fix it, so the run stops at once with the
server's own message.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import numpy as np

from .config import BulkConfig, RetryPolicy

RETRY_STATUSES = frozenset({408, 429})  # and every status >= 500
MESSAGE_LIMIT = 500  # characters of a non-JSON error body quoted in a failure


class BatchFailed(RuntimeError):
    """A batch that cannot succeed: a 4xx other than 408/429, an answer that is not
    embeddings, or retries exhausted. The message is what the user must read."""


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable, a date in the past is 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a zone-less one is read as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: base·2^attempt capped, then a uniform half to all of
    it, so that workers that failed together come back apart but never at once."""
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2**attempt)
    return ceiling * rng.uniform(0.5, 1.0)


def error_message(body: bytes) -> str:
    """The server's own words: OpenAI's ``{"error": {"message"}}``, TEI's ``{"error"}``, or the
    start of whatever else it sent."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:MESSAGE_LIMIT].strip() or "(empty body)"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return json.dumps(parsed)[:MESSAGE_LIMIT]


def parse_embeddings(body: bytes, count: int) -> np.ndarray:
    """``(count, D)`` float32 rows in input order from an embeddings answer. Each item may be
    base64 (little-endian float32) or a list of floats whatever was asked, since some servers
    ignore ``encoding_format``; items are placed by their ``index``."""
    try:
        data = json.loads(body)["data"]
        by_index: dict[int, np.ndarray] = {}
        for item in data:
            vector = item["embedding"]
            if isinstance(vector, str):
                by_index[int(item["index"])] = np.frombuffer(base64.b64decode(vector), "<f4")
            else:
                by_index[int(item["index"])] = np.asarray(vector, dtype=np.float32)
    except (ValueError, KeyError, TypeError) as err:
        raise BatchFailed(f"the answer is not OpenAI's embeddings list ({err!r})") from None
    if sorted(by_index) != list(range(count)) or len(data) != count:
        raise BatchFailed(f"asked for {count} embeddings, the answer holds {len(data)}")
    rows = [by_index[i] for i in range(count)]
    if len({row.shape for row in rows}) != 1:
        raise BatchFailed("the answer's embeddings differ in length")
    return np.stack(rows).astype(np.float32, copy=False)


class EmbeddingsClient:
    """Sends batches over one ``aiohttp`` session; counts what it retried and why."""

    def __init__(
        self,
        config: BulkConfig,
        session: aiohttp.ClientSession,
        rng: random.Random | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.rng = rng or random.Random()
        self.on_retry = on_retry
        self.retries: Counter[str] = Counter()  # reason ("429", "503", "timeout", ...) -> count
        self.headers = {"content-type": "application/json"}
        if config.api_key:
            self.headers["authorization"] = f"Bearer {config.api_key}"

    def body(self, texts: list[str]) -> bytes:
        fields: dict[str, object] = {"input": texts, "encoding_format": self.config.encoding}
        if self.config.model is not None:
            fields["model"] = self.config.model
        if self.config.dimensions is not None:
            fields["dimensions"] = self.config.dimensions
        return json.dumps(fields, ensure_ascii=False).encode()

    async def embed(self, texts: list[str], label: str) -> np.ndarray:
        """``(len(texts), D)`` float32 vectors of ``texts``; ``label`` names the batch in a
        failure ("batch 12 (texts 768-831)")."""
        policy = self.config.retry
        body = self.body(texts)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        for attempt in range(policy.max_retries + 1):
            wait: float | None = None
            try:
                async with self.session.post(
                    self.config.endpoint, data=body, headers=self.headers, timeout=timeout
                ) as response:
                    payload = await response.read()
                    status = response.status
                    if status == 200:
                        return self._checked(parse_embeddings(payload, len(texts)), label)
                    if status not in RETRY_STATUSES and status < 500:
                        raise BatchFailed(
                            f"{label}: HTTP {status} from {self.config.endpoint}: "
                            f"{error_message(payload)}"
                        )
                    reason = str(status)
                    if status in (429, 503):
                        wait = retry_after_s(response.headers.get("retry-after"))
                        if wait is not None:
                            wait = min(wait, policy.retry_after_max_s)
                            wait += self.rng.uniform(0, wait / 10)  # spread those told alike
            except (aiohttp.ClientError, TimeoutError) as err:
                reason = "timeout" if isinstance(err, TimeoutError) else type(err).__name__
            if attempt == policy.max_retries:
                break
            self.retries[reason] += 1
            if self.on_retry is not None:
                self.on_retry()
            await asyncio.sleep(backoff_s(policy, attempt, self.rng) if wait is None else wait)
        raise BatchFailed(
            f"{label}: still failing after {policy.max_retries} retries (last: {reason}) "
            f"at {self.config.endpoint}"
        )

    def _checked(self, vectors: np.ndarray, label: str) -> np.ndarray:
        wanted = self.config.dimensions
        if wanted is not None and vectors.shape[1] != wanted:
            raise BatchFailed(
                f"{label}: asked for {wanted} dimensions, the server answered "
                f"{vectors.shape[1]} (it may ignore 'dimensions')"
            )
        return vectors
