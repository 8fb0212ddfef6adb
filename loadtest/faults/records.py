"""What a client saw of each request during a fault, and whether it could act on it.

A fault is survivable for a client when every request ends within a bound it can wait for, and
every failure says what to do: a 5xx (or a 429 under overload) with a JSON body, and for 429 and
503 a ``Retry-After``. ``Record`` has the field names of ``tests/deploy/multinode_scenario.py``'s
records, so the node-loss scenario's result is judged by the same functions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# A request that takes longer than this has hung: a client would have given up on it. It is the
# load's client timeout, so "no answer within HANG_S" and "hung" are the same event.
HANG_S = 60.0
RETRY_STATUSES = (429, 503)  # a client is told when to come back
# A connection closed before any byte of an answer. HAProxy does this on purpose to a request
# that came on a reused keep-alive connection and that no server processed (a replica killed
# as it arrived): HTTP's signal to send it again (haproxy/haproxy issues 2375, 3414). Embedding
# is idempotent, and clients such as OpenAI's retry it; README, "HTTP ingress".
CLOSED_UNANSWERED = ("ServerDisconnectedError", "RemoteProtocolError")
BODY_CHARS = 2000


@dataclass
class Record:
    """One request as the client saw it (times in seconds from the load's start)."""

    start_s: float
    seconds: float
    status: int | None  # None: no HTTP answer (timeout, connection error)
    error: str | None = None  # why there was no answer
    content_type: str | None = None  # non-200 only, as every field below
    body: str | None = None  # first BODY_CHARS characters
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def retry_after(self) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get("retry-after")

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        """A record from JSON (ours, or the multinode scenario's, which has extra fields)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def is_json(record: Record) -> bool:
    """Declared ``application/json`` and parses to a non-empty object."""
    if not (record.content_type or "").startswith("application/json"):
        return False
    try:
        return bool(json.loads(record.body or ""))
    except ValueError:
        return False


def failure_problem(record: Record, allowed: Sequence[int] = range(500, 600)) -> str | None:
    """Why a failed request leaves its client unable to act on it; None when it can (or the
    request succeeded). ``allowed``: the failure statuses acceptable in this scenario."""
    if record.status is not None and record.error is not None:  # a body cut short, or wrong
        return f"{record.status} whose body broke off or was wrong ({record.error})"
    if record.status is not None and 200 <= record.status < 300:
        return None
    if record.status is None:  # how long it took is the hang check's business
        kind = (record.error or "?").split(":")[0]
        return None if kind in CLOSED_UNANSWERED else f"no HTTP answer ({kind})"
    if record.status not in allowed:
        return f"status {record.status} is not one this fault may cause"
    if not is_json(record):
        return f"{record.status} with a {record.content_type or 'missing'} body, not JSON"
    if record.status in RETRY_STATUSES and record.retry_after is None:
        return f"{record.status} without Retry-After"
    return None


def problems(
    records: Sequence[Record], allowed: Sequence[int] = range(500, 600), hang_s: float = HANG_S
) -> list[str]:
    """Every broken property of a run, one line each with a count and one example."""
    out: list[str] = []
    if not records:
        return ["no request was recorded"]
    hung = [r for r in records if r.seconds >= hang_s]
    if hung:
        out.append(f"{len(hung)} requests hung (≥ {hang_s:g} s), e.g. started at "
                   f"{hung[0].start_s:.1f} s")  # fmt: skip
    found = Counter(p for r in records if (p := failure_problem(r, allowed)) is not None)
    out += [f"{n}× {problem}" for problem, n in found.items()]
    return out


def status_label(record: Record) -> str:
    if record.status is None:
        return "no answer"
    return f"{record.status} broken off" if record.error is not None else str(record.status)


def describe_statuses(records: Iterable[Record]) -> str:
    """``200×61, 503×4 (JSON, Retry-After 1)``: each status with what its failures carried."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(status_label(r), []).append(r)
    parts = []
    for label in sorted(groups, key=lambda s: (s == "no answer", s)):
        group = groups[label]
        part = f"{label}×{len(group)}"
        if label == "no answer" or label.endswith("broken off"):
            errors = sorted({(r.error or "?").split(":")[0] for r in group})
            part += f" ({', '.join(errors)})"
        elif not label.startswith("2"):
            kinds = sorted({"JSON" if is_json(r) else r.content_type or "no body" for r in group})
            retry = sorted({r.retry_after for r in group if r.retry_after is not None})
            part += f" ({', '.join(kinds)}"
            part += f", Retry-After {'/'.join(retry)})" if retry else ")"
        parts.append(part)
    return ", ".join(parts)


def failure_examples(records: Iterable[Record], limit: int = 3) -> list[dict]:
    """One record per distinct (status, body) of the failures: what a client actually got."""
    seen: dict[tuple, dict] = {}
    for r in records:
        if r.status is not None and 200 <= r.status < 300:
            continue
        key = (r.status, r.content_type, (r.body or r.error or "")[:200])
        if key not in seen:
            seen[key] = {
                "status": r.status,
                "content_type": r.content_type,
                "retry_after": r.retry_after,
                "body": (r.body or "")[:300] or None,
                "error": r.error,
                "seconds": round(r.seconds, 2),
            }
    return list(seen.values())[:limit]
