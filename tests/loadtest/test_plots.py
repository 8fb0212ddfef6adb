"""The PNGs are written (and are PNGs), for runs, sweeps and comparisons; compare's table."""

from __future__ import annotations

from pathlib import Path

from loadtest.compare import main as compare_main
from loadtest.config import LoadConfig
from loadtest.driver import RunResult, write_outputs
from loadtest.stats import latency_stats
from loadtest.summary import SweepResult, SweepStep, now, summarize

from .test_summary import synthetic_phase

PNG = b"\x89PNG\r\n\x1a\n"


def _result(**config) -> RunResult:
    phase = synthetic_phase()
    cfg = LoadConfig(url="http://127.0.0.1:9", **config).public()
    return RunResult(summarize(phase, cfg, now()), phase.samples)


def test_run_outputs(tmp_path: Path) -> None:
    files = write_outputs(_result(mode="open", rate=10.3), tmp_path)
    names = {f.name for f in files}
    assert names == {"summary.json", "requests.csv", "latency_over_time.png", "latency_cdf.png"}
    for name in ("latency_over_time.png", "latency_cdf.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert len((tmp_path / "requests.csv").read_text().splitlines()) == 1 + 103


def test_sweep_plot(tmp_path: Path) -> None:
    result = _result(sweep=True, rate=5)
    steps = [
        SweepStep(
            offered_rps=r,
            throughput_rps=r,
            inputs_per_s=r,
            errors=0,
            held=r < 20,
            reason="",
            latency_ms=latency_stats([r, 2 * r, 3 * r]),
        )
        for r in (5, 10, 20)
    ]
    result.summary.sweep = SweepResult(slo_p99_ms=50, max_rate_rps=10, steps=steps)
    files = write_outputs(result, tmp_path)
    assert (tmp_path / "sweep.png") in files
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG


def test_compare_renders_one_table_and_one_plot(tmp_path: Path, capsys) -> None:
    for name, workload in (("alpha", "short"), ("beta", "batch")):
        _result(workload=workload).summary.write(tmp_path / name)
    out = tmp_path / "cmp"
    code = compare_main(
        [str(tmp_path / "alpha"), f"peer={tmp_path / 'beta' / 'summary.json'}", "--out", str(out)]
    )
    assert code == 0
    table = (out / "compare.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("| run | mode | workload | req/s")
    assert lines[2].startswith("| alpha | closed ×1 | short | 10.0 |")
    assert lines[3].startswith("| peer | closed ×1 | batch |")
    assert table in capsys.readouterr().out
    assert (out / "compare.png").read_bytes()[:8] == PNG
