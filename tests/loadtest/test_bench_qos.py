"""Quality of service under load: throughput counting, recovery detection, the summaries, the
report section and the plots, on synthetic samples (no server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench.qos import (
    HUGE_BYTES,
    bulk_plot,
    huge_text,
    overload_plot,
    prorated_inputs_per_s,
    recovery_s,
    server_rss,
    summarise_bulk,
    summarise_overload,
)
from loadtest.bench.report import render
from loadtest.bench.results import BenchResults, HugeInputQos, QosResults, Rss
from loadtest.runner import Sample
from loadtest.stats import latency_stats

from .test_bench import _results

PNG = b"\x89PNG\r\n\x1a\n"
SECONDS = {"interactive alone": 10.0, "bulk alone": 30.0, "bulk + interactive": 30.0}


def ok(t: float, ms: float, inputs: int = 1, status: int = 200) -> Sample:
    """A request sent at ``t`` s that took ``ms``; a non-200 status makes it an HTTP error."""
    outcome = "ok" if status == 200 else "http_error"
    return Sample(0, t, t, t + ms / 1000, status, outcome, inputs)


def test_prorated_throughput_spreads_each_request_over_its_time_in_flight() -> None:
    bulk = [ok(0, 4000, 256), ok(4, 4000, 256), ok(8, 0, 7), ok(1, 1000, 99, status=429)]
    # [2, 6): half of the first request and half of the second; the refused one never counts.
    assert prorated_inputs_per_s(bulk, 2, 6) == pytest.approx(256 / 4)
    assert prorated_inputs_per_s(bulk, 0, 8) == pytest.approx(512 / 8)
    assert prorated_inputs_per_s(bulk, 8, 9) == pytest.approx(7)  # answered at once: counted
    assert prorated_inputs_per_s(bulk, 20, 30) == 0


def test_recovery_needs_a_run_of_fast_ok_probes() -> None:
    probes = [ok(60, 9000), ok(69, 10), ok(69.1, 10), ok(69.2, 1, status=429)]
    probes += [ok(69.3 + 0.1 * i, 10) for i in range(5)]
    # The 429 broke the first streak; the fifth of the next one came in at 69.7 + 0.01.
    assert recovery_s(probes, since=60, threshold_ms=20) == pytest.approx(9.71)
    assert recovery_s(probes, since=60, threshold_ms=5) is None
    assert recovery_s(probes[:-1], since=60, threshold_ms=20) is None


def bulk_clients() -> dict[str, list[Sample]]:
    return {
        "interactive alone": [ok(0.1 * i, 10 + i) for i in range(90)],
        "interactive beside bulk": [ok(40, 18000), ok(58, 9000), ok(67, 100, status=504)],
        "bulk": [ok(10 + 5 * i, 5000, 256) for i in range(12)],  # 10 s to 70 s, 51.2/s
    }


def test_summarise_bulk() -> None:
    b = summarise_bulk(bulk_clients(), SECONDS)
    assert b.bulk_inputs_per_request == 256
    assert b.interactive_alone.count == 90 and b.interactive_alone.p50 == pytest.approx(54.5)
    assert b.interactive_beside_bulk.count == 2  # the 504 is no latency, only a status
    assert b.interactive_beside_bulk.max == pytest.approx(18000)
    assert b.bulk_alone_inputs_per_s == pytest.approx(51.2)
    assert b.ratio == pytest.approx(1.0)
    assert b.statuses["interactive beside bulk"] == {"200": 2, "504": 1}


def overload_clients() -> dict[str, list[Sample]]:
    flood = [ok(0.02 * i, 15000, 32) for i in range(100)]
    flood += [ok(2 + 0.02 * i, 3, 32, status=429) for i in range(50)]
    flood += [ok(3, 30, 32, status=503), ok(3.1, 60000, 32, status=504), ok(3.2, 5, 32, 413)]
    flood += [Sample(0, 4, 4, 64, 0, "timeout", 32), Sample(0, 5, 5, 5, 0, "dropped", 0, None)]
    return {
        "idle": [ok(-5 + 0.01 * i, 8) for i in range(100)],
        "flood": flood,
        "recovery": [ok(60, 12000), *(ok(72 + 0.01 * i, 9) for i in range(5))],
    }


def overload() -> tuple[dict[str, list[Sample]], QosResults]:
    clients = overload_clients()
    rss = {k: Rss(replica_mib=900 + i, tree_mib=2000.0) for i, k in
           enumerate(("before", "right after", "after recovery"))}  # fmt: skip
    o = summarise_overload(clients, capacity_rps=15.0, offered_rps=45.0, seconds=60, rss=rss)
    huge = HugeInputQos(
        seconds=20,
        input_bytes=HUGE_BYTES,
        interactive=latency_stats([12, 18000]),
        huge=latency_stats([2500, 2600, 2700]),
        statuses={"interactive": {"200": 2}, "huge input": {"200": 3}},
    )
    bulk = summarise_bulk(bulk_clients(), SECONDS)
    plots = ["benchmarks/qos/bulk.png", "benchmarks/qos/overload.png"]
    return clients, QosResults(bulk=bulk, huge_input=huge, overload=o, plots=plots, seconds=210)


def test_summarise_overload_counts_every_status() -> None:
    o = overload()[1].overload
    assert o.statuses == {"200": 100, "429": 50, "503": 1, "504": 1, "413": 1, "timeout": 1,
                          "dropped": 1}  # fmt: skip
    assert (o.admitted.count, o.refused.count) == (100, 50)
    assert o.refused.p99 == pytest.approx(3) and o.admitted.p50 == pytest.approx(15000)
    assert (o.server_errors, o.other_errors) == (2, 3)  # 503, 504 | 413, timeout, dropped
    assert o.inputs_per_request == 32 and o.idle_p50_ms == pytest.approx(8)
    # Under 2 × 8 ms from the fifth fast probe on: 72.04 + 0.009 s, from the flood's end at 60.
    assert o.recovery_s == pytest.approx(12.049) and o.recovery_probes == 6


def test_report_renders_the_qos_section() -> None:
    results = _results()
    assert results.qos is None and "Quality of service" not in render(results)
    older = BenchResults.model_validate_json(results.model_dump_json(exclude={"qos"}))
    assert older.qos is None  # a results.json from before this section still loads
    results.qos = overload()[1]
    text = render(results)
    expected = (
        "## Quality of service under load",
        "(210 s in all)",
        "| alone | 90 | 54.5 | 98.1 | 99.0 |",
        "| beside bulk | 2 | 13,500.0 | 17,910.0 | 18,000.0 |",
        "| target beside bulk | | ≤ 150 | ≤ 400 | |",
        "| alone | 51.2 |",
        "| beside ÷ alone (target ≥ 0.85×) | 1.00× |",
        "interactive p50 13,500.0 ms **misses** the ≤ 150 ms target",
        "bulk kept 1.00× of its throughput alone, which meets the ≥ 0.85× target",
        "interactive beside bulk: 2 × 200, 1 × 504",
        "### A 5 MiB input beside interactive",
        "| 5 MiB input | 3 | 2,600.0 |",
        "at 45.0 requests/s, 3× the 15.0 requests/s W2 achieved in this run, for 60 s: 155 "
        "requests",
        "5xx: 2, which **misses** the target of 0",
        "| refused (429) | 50 | 3.0 | 3.0 | 3.0 |",
        "(8.0 ms): **12.0 s**, after 6 probes",
        "| 900 / 2,000 | 901 / 2,000 | 902 / 2,000 |",
        "![overload](benchmarks/qos/overload.png)",
    )
    for line in expected:
        assert line in text, line
    again = BenchResults.model_validate_json(results.model_dump_json())
    assert render(again) == text


def test_plots_write_pngs(tmp_path: Path) -> None:
    clients = overload()[0]
    path = overload_plot(clients, 60, tmp_path / "qos" / "overload.png")
    assert path.read_bytes()[:8] == PNG
    path = bulk_plot(bulk_clients(), SECONDS, tmp_path / "qos" / "bulk.png")
    assert path.read_bytes()[:8] == PNG


def test_huge_text_is_real_words_of_the_size_asked() -> None:
    text = huge_text(100_000)
    assert 100_000 - 4 < len(text.encode()) <= 100_000
    assert len(text.split()) > 10_000 and text.split()[0][0].isupper()


def test_server_rss_reads_the_process_tree() -> None:
    # A child of its own (this process may have Ray replicas below it): no replica in its tree.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rss = server_rss(child.pid)
    finally:
        child.kill()
        child.wait()
    assert rss.replica_mib is None and rss.tree_mib > 1
