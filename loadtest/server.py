"""What the server says about itself: ``/info`` and a before/after diff of ``/metrics``.

The client sees one latency; the server's Prometheus histograms tell where it went. Scraping
before and after the measured phase and subtracting ``_sum``/``_count`` gives the mean queue,
tokenization and inference time per request of exactly this run, with no server changes.
Servers without these endpoints (any peer) simply get no split.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

log = logging.getLogger(__name__)

PREFIX = "embedserve_"
STAGES = {
    "queue": "embedserve_queue_duration_seconds",
    "tokenize": "embedserve_tokenize_duration_seconds",
    "inference": "embedserve_inference_duration_seconds",
}


class Scrape(BaseModel):
    """Totals of one scrape: histogram sum/count by name (and route), counters by labels."""

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    requests: dict[str, float] = {}  # "route status" -> answered


class ServerSplit(BaseModel):
    """Means per request from the server's view, over the measured phase only (ms)."""

    requests: dict[str, int]
    request_ms: float | None  # embedding routes, receipt to response ready
    queue_ms: float | None
    tokenize_ms: float | None
    inference_ms: float | None
    other_ms: float | None  # request − (queue + tokenize + inference): parsing, JSON, waiting
    batch_size_mean: float | None
    padding_ratio_mean: float | None
    input_tokens: int | None


async def fetch_info(session: aiohttp.ClientSession, base_url: str) -> dict | None:
    try:
        async with session.get(f"{base_url}/info") as response:
            if response.status != 200:
                return None
            data = await response.json(content_type=None)
            return data if isinstance(data, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.debug("no /info: %s", exc)
        return None


async def scrape(session: aiohttp.ClientSession, base_url: str) -> Scrape | None:
    try:
        async with session.get(f"{base_url}/metrics") as response:
            if response.status != 200:
                return None
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.debug("no /metrics: %s", exc)
        return None
    return parse_metrics(text)


def parse_metrics(text: str) -> Scrape | None:
    """Sum each embedserve histogram over its labels; keep request counts by route and status."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    requests: dict[str, float] = defaultdict(float)
    found = False
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(PREFIX):
            continue
        found = True
        for sample in family.samples:
            route = sample.labels.get("route")
            key = f"{family.name}{{{route}}}" if route is not None else family.name
            if sample.name.endswith("_sum"):
                sums[key] += sample.value
            elif sample.name.endswith("_count"):
                counts[key] += sample.value
            elif sample.name == "embedserve_requests_total":
                requests[f"{route} {sample.labels.get('status')}"] += sample.value
            elif sample.name == "embedserve_input_tokens_total":
                sums[sample.name] += sample.value
    return Scrape(sums=sums, counts=counts, requests=requests) if found else None


def _mean(before: Scrape, after: Scrape, key: str) -> float | None:
    """Mean observation of one histogram between two scrapes (None when nothing was seen)."""
    n = after.counts.get(key, 0.0) - before.counts.get(key, 0.0)
    if n <= 0:
        return None
    return (after.sums.get(key, 0.0) - before.sums.get(key, 0.0)) / n


def _mean_ms(before: Scrape, after: Scrape, key: str) -> float | None:
    seconds = _mean(before, after, key)
    return None if seconds is None else 1000.0 * seconds


def split(before: Scrape, after: Scrape, route: str | None) -> ServerSplit:
    """The measured phase's server-side means; ``route`` picks the request-duration series."""
    requests = {
        key: int(after.requests.get(key, 0.0) - before.requests.get(key, 0.0))
        for key in after.requests
    }
    requests = {key: n for key, n in requests.items() if n > 0}
    stages = {name: _mean_ms(before, after, metric) for name, metric in STAGES.items()}
    request_ms = _mean_ms(before, after, f"embedserve_request_duration_seconds{{{route}}}")
    other = None
    if request_ms is not None and all(v is not None for v in stages.values()):
        other = request_ms - sum(v for v in stages.values() if v is not None)
    tokens = after.sums.get("embedserve_input_tokens_total", 0.0) - before.sums.get(
        "embedserve_input_tokens_total", 0.0
    )
    return ServerSplit(
        requests=requests,
        request_ms=request_ms,
        queue_ms=stages["queue"],
        tokenize_ms=stages["tokenize"],
        inference_ms=stages["inference"],
        other_ms=other,
        batch_size_mean=_mean(before, after, "embedserve_batch_size"),
        padding_ratio_mean=_mean(before, after, "embedserve_padding_ratio"),
        input_tokens=int(tokens) if tokens > 0 else None,
    )
