"""The reliability harness (``loadtest.faults``): a replica killed (``kill -9``) and then wedged
(``kill -STOP``) under load, for real, judged on every request; and the judging and the report
writer on their own, fast.

One real ``python -m service`` server with the service's defaults (HAProxy in front; a start is
over half a minute here): the kill, then the wedge (a wedged replica is only replaced after its
health checks time out). Behind Ray's Python proxy, a replica killed mid-request and a silent
one are tests/service/test_errors.py's, on the session's Ray instance, and the harness kills
one under load there too (``crash-proxy``, ``make reliability``). Bounds are the harness's own
and generous: a request slower than ``HANG_S`` (60 s) hung; not healthy again within the
scenario's bound (60 s killed, 90 s wedged) is not recovered.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.faults import harness, multinode, replica
from loadtest.faults.records import (
    HANG_S,
    Record,
    describe_statuses,
    failure_problem,
    problems,
)
from loadtest.faults.report import Outcome, from_records, load, merge, render, results_path, write
from loadtest.faults.target import ServerSpec, Target, started

pytestmark = pytest.mark.ray  # a server of its own, started as `python -m service`


@pytest.fixture(scope="module")
def server(minilm_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with started(ServerSpec("haproxy"), minilm_artifact, tmp_path_factory.mktemp("faults")) as t:
        yield t


@pytest.fixture(scope="module")
def killed(server: Target) -> replica.Run:
    """``kill -9`` of the replica under W2 load."""
    return asyncio.run(replica.fault(server, signal.SIGKILL, replica.RECOVERY_BOUND_S))


@pytest.fixture(scope="module")
def wedged(server: Target, killed: replica.Run) -> replica.Run:
    """``kill -STOP`` of the replica that replaced the killed one, under W2 load."""
    return asyncio.run(replica.fault(server, signal.SIGSTOP, replica.WEDGE_RECOVERY_BOUND_S))


def assert_recovered(run: replica.Run, bound_s: float) -> None:
    assert run.recovered_at is not None, f"/health not 200 within {bound_s} s: {run.probes[-3:]}"
    assert run.recovered_at - run.fault_at < bound_s
    assert run.new_pid not in (None, run.old_pid)
    after = [r for r in run.records if r.start_s >= run.recovered_at]
    assert len(after) >= replica.AFTER_RECOVERY
    assert all(r.status == 200 and r.error is None for r in after), describe_statuses(after)


def assert_no_hang(run: replica.Run) -> None:
    """Every request ended (answered, or failed) before the clients' timeout."""
    slowest = max(run.records, key=lambda r: r.seconds)
    assert slowest.seconds < HANG_S, slowest


def assert_failures_are_json_5xx(run: replica.Run) -> None:
    bad = [(r, p) for r in run.records if (p := failure_problem(r)) is not None]
    assert not bad, json.dumps([{"problem": p, **r.__dict__} for r, p in bad[:3]], indent=1)


def test_a_killed_replica_is_replaced(killed: replica.Run) -> None:
    assert_recovered(killed, replica.RECOVERY_BOUND_S)


def test_no_request_hangs_when_a_replica_is_killed(killed: replica.Run) -> None:
    assert_no_hang(killed)


def test_every_failure_of_a_killed_replica_is_a_json_5xx(killed: replica.Run) -> None:
    # Ray's own error file answers a plain-text `500 Internal Server Error` when a replica dies
    # mid-request behind HAProxy; service/haproxy.py replaces it with a JSON 503. A request
    # that arrived on a reused connection as the replica died may instead see the connection
    # closed unanswered, HAProxy's deliberate "send it again" (records.CLOSED_UNANSWERED).
    assert_failures_are_json_5xx(killed)


def test_a_wedged_replica_is_replaced(wedged: replica.Run) -> None:
    assert_recovered(wedged, replica.WEDGE_RECOVERY_BOUND_S)
    assert not wedged.harness_killed  # Ray ended the stopped process, not the harness


def test_no_request_hangs_on_a_wedged_replica(wedged: replica.Run) -> None:
    assert_no_hang(wedged)


def test_every_failure_of_a_wedged_replica_is_a_json_5xx(wedged: replica.Run) -> None:
    assert_failures_are_json_5xx(wedged)


# The judging and the report, on made-up records (no server).


def rec(status: int | None, ctype: str | None = "application/json", body: str = '{"e": 1}',
        seconds: float = 0.1, **headers: str) -> Record:  # fmt: skip
    return Record(0.0, seconds, status, None if status else "TimeoutError", ctype, body, headers)


def test_failures_a_client_can_act_on() -> None:
    assert failure_problem(rec(200, None, "")) is None
    assert failure_problem(rec(500)) is None  # a JSON 5xx
    assert failure_problem(rec(503, **{"Retry-After": "1"})) is None
    assert "Retry-After" in (failure_problem(rec(503)) or "")
    assert "not JSON" in (failure_problem(rec(500, "text/plain", "Internal Server Error")) or "")
    assert "not JSON" in (failure_problem(rec(502, "application/json", "")) or "")
    assert "no HTTP answer" in (failure_problem(rec(None, None, "", 60.0)) or "")
    closed = Record(0.0, 0.4, None, "ServerDisconnectedError: Server disconnected")
    assert failure_problem(closed) is None  # HAProxy's "send it again"
    assert "not one this fault" in (failure_problem(rec(404)) or "")
    assert failure_problem(rec(429, **{"retry-after": "2"}), allowed=(429,)) is None
    wrong = Record(0, 0.1, 200, "BadResponse: 3 vectors for 32 inputs")
    assert "broke off or was wrong" in (failure_problem(wrong) or "")


def test_problems_count_hangs_and_each_kind_of_failure() -> None:
    records = [rec(200, None, ""), rec(500, "text/plain", "x"), rec(500, "text/plain", "y"),
               rec(None, None, "", HANG_S)]  # fmt: skip
    found = problems(records)
    assert found[0].startswith("1 requests hung")
    assert "2× 500 with a text/plain body, not JSON" in found
    assert problems([]) == ["no request was recorded"]
    assert describe_statuses(records + [rec(503, **{"retry-after": "1"})]) == (
        "200×1, 500×2 (text/plain), 503×1 (JSON, Retry-After 1), no answer×1 (TimeoutError)"
    )


def outcome(name: str, scenario: str, records: list[Record] | None = None) -> Outcome:
    return from_records(records or [rec(200)], name=name, scenario=scenario,
                        fault=f"{name} fault", server="python -m service", recovery_s=12.5,
                        recovery_bound_s=60)  # fmt: skip


def test_a_row_says_what_was_tried_and_what_came_back() -> None:
    good = outcome("crash-haproxy", "crash-haproxy")
    bad = outcome("crash-proxy", "crash-proxy", [rec(200), rec(500, "text/plain", "Internal")])
    assert good.passed and not bad.passed and (bad.requests, bad.ok) == (2, 1)
    text = render([good, bad], cores=2)
    assert text.count("\n| ") == 3  # the header row and one row per outcome
    assert "`python -m loadtest.faults --only crash-proxy`" in text
    assert "12.5 s (bound 60 s)" in text and "| PASS |" in text
    assert "FAIL: 1× 500 with a text/plain body, not JSON" in text
    assert '"body": "Internal"' in text  # the failure as the client received it


def test_a_subset_run_replaces_only_its_own_rows(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    order = ("crash-haproxy", "hostile", "wedge")
    write([outcome("wedge", "wedge"), outcome("hostile-a", "hostile")], doc, order, 2)
    write([outcome("crash-haproxy", "crash-haproxy"), outcome("hostile-a", "hostile", [rec(400)])],
          doc, order, 2)  # fmt: skip
    rows = load(results_path(doc))
    assert [o.name for o in rows] == ["crash-haproxy", "hostile-a", "wedge"]
    assert rows[1].statuses == "400×1 (JSON)"  # the newer run's
    assert doc.read_text().count("`python -m loadtest.faults --only") == 3
    assert [o.name for o in merge(rows, [outcome("other", "x")], order)][-1] == "other"


def test_the_node_loss_result_becomes_a_row() -> None:
    records = [
        {"start_s": 1.0, "seconds": 0.2, "status": 200, "matches": True},
        {"start_s": 2.0, "seconds": 10.5, "status": 504, "content_type": "application/json",
         "body": '{"error": {"message": "deadline"}}', "headers": {"retry-after": "1"}},
        {"start_s": 3.0, "seconds": 0.2, "status": 200, "matches": False},
    ]  # fmt: skip
    result = {"records": records, "removed_at_s": 1.5, "dead_replica_gone_at_s": 9.0,
              "recovered_at_s": 40.0, "clients_stuck": 0}  # fmt: skip
    row = multinode.outcome(result, "multinode")
    assert row.recovery_s == pytest.approx(38.5) and row.requests == 3
    assert row.problems == ["1 answers 200 with vectors unlike the healthy cluster's"]
    assert row.how.startswith("python -m tests.deploy.multinode_scenario")


def test_servers_take_settings_as_the_services_environment() -> None:
    spec = harness.RAY_HEALTH
    assert spec.env()["EMBEDSERVE_HEALTH_CHECK_TIMEOUT_S"] == "30"
    assert spec.command().startswith("EMBEDSERVE_HEALTH_CHECK_PERIOD_S=10 ")
    assert spec.command().endswith("python -m service --ingress haproxy")
    assert harness.DEFAULTS.env() == {}


def test_scenarios_that_need_the_same_server_share_it() -> None:
    groups = harness.by_server(harness.select(None))
    assert len(groups) == 3  # three starts for the default run
    assert [s.name for s in groups[0][1]] == ["crash-haproxy", "disconnect", "hostile"]
    assert [s.name for s in harness.select(["multinode"])] == ["multinode"]
    with pytest.raises(ValueError, match="unknown"):
        harness.select(["nope"])
