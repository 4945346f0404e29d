"""loadgen compare: changes judged against each run's own noise (synthetic summaries), and two real runs
of a sleep-based model, unchanged and 30% slower."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from results import client, level, run, window

from loadgen.cli import main
from loadgen.compare import DEFAULT_CONFIDENCE_PCT, compare_runs, comparison_lines
from loadgen.config import parse_percent
from loadgen.errors import UsageError
from loadgen.histogram import LatencyHistogram
from loadgen.result import RunResult
from loadgen.server import EmbeddedServer
from loadgen.windows import STABLE_WINDOW_COUNT
from conftest import QUEUEING_REPOSITORY, ROOT

PERCENTILES = (50, 90, 95, 99)
CONFIDENCE = DEFAULT_CONFIDENCE_PCT


def old_level(value, throughput, latency_us, stable=True, label="Concurrency"):
    """A level of a summary before version 5, as upgraded: no histogram, and windows with their throughput but
    null latency figures (what a window's `latency_us` was depended on --percentile)."""
    windows = [replace(window(i, i + 1, 100, throughput * scale, latency_us), avg_latency_us=None)
               for i, scale in enumerate((0.98, 1.0, 1.02))]
    stats = client(300, 0, 3.0, throughput, latency_us, {p: latency_us * (1 + p / 100) for p in PERCENTILES})
    return level(value, label, client_stats=stats, level_windows=windows, stable=stable)


def measured_level(rng, value, latency_us, window_scales, per_window=1500, label="Concurrency"):
    """A closed-loop level measured as loadgen does: windows whose mean latencies are `latency_us`
    times each scale (the run's drift from window to window), the level's figures from all of them."""
    windows, samples = [], []
    for index, scale in enumerate(window_scales):
        ns = rng.gamma(8.0, latency_us * scale * 1e3 / 8.0, per_window).astype(np.int64)
        samples.append(ns)
        histogram = LatencyHistogram.of(ns)
        windows.append(window(index, index + 1, per_window, value * 1e9 / histogram.mean, histogram.mean / 1e3,  # Little's law
                              percentiles={p: histogram.percentile(p) / 1e3 for p in PERCENTILES}))  # fmt: skip
    merged = LatencyHistogram.of(np.concatenate(samples[-STABLE_WINDOW_COUNT:]))
    reported = windows[-STABLE_WINDOW_COUNT:]
    stats = client(merged.count, 0, float(len(reported)), sum(w.throughput_infer_per_s for w in reported) / len(reported),
                   merged.mean / 1e3, {p: merged.percentile(p) / 1e3 for p in PERCENTILES})  # fmt: skip
    return level(value, label, client_stats=stats, level_windows=windows, latency_histogram=merged)


def flagged(comparison):
    return {(lv.value, d.figure) for lv, d in comparison.regressions}


def test_percentages_are_read_with_or_without_the_sign():
    assert parse_percent("5%", "--max-regression") == 5.0
    assert parse_percent("2.5", "--max-regression") == 2.5
    for bad in ["five", "-1%"]:
        with pytest.raises(UsageError, match="--max-regression"):
            parse_percent(bad, "--max-regression")


def test_noisy_windows_make_a_change_beyond_the_limit_noise_not_a_regression():
    rng = np.random.default_rng(7)
    # Each run's windows wander by ±15%, as on a busy machine; the candidate is 8% slower overall.
    base = run(measured_level(rng, 2, 10_000, [1.3, 0.85, 1.15, 1.0]))
    cand = run(measured_level(rng, 2, 10_800, [1.0, 1.15, 0.85, 1.0]))
    comparison = compare_runs(base, cand, 5.0, CONFIDENCE)
    assert comparison.regressions == []
    avg = comparison.levels[0].deltas[1]
    assert avg.figure == "avg latency" and avg.tested and avg.change_pct > 5 and avg.within_noise
    assert avg.margin_pct > avg.change_pct - 5  # its lower confidence bound is inside the limit
    lines = comparison_lines(comparison)
    assert any(line.startswith("Concurrency 2  avg latency") and line.endswith("within noise") for line in lines)
    assert lines[-1].startswith("Result: no regression beyond 5%;") and lines[-1].endswith("within noise")


def test_tight_windows_make_a_30_percent_slowdown_a_regression():
    rng = np.random.default_rng(8)
    steady = [3.0, 1.0, 1.01, 0.99]  # the first window, before stability, is not among the reported ones
    base = run(measured_level(rng, 1, 10_000, steady), measured_level(rng, 4, 40_000, steady))
    cand = run(measured_level(rng, 1, 13_000, steady), measured_level(rng, 4, 52_000, steady))
    comparison = compare_runs(base, cand, 5.0, CONFIDENCE)
    assert flagged(comparison) == {(v, f) for v in (1, 4) for f in ("throughput", "avg latency", "p50 latency", "p90 latency",
                                                                     "p95 latency", "p99 latency")}  # fmt: skip
    for _, delta in comparison.regressions:
        assert delta.tested and delta.confidence_pct > CONFIDENCE and delta.surely_worse_pct > 5
    # The same two runs, the other way round, are an improvement.
    assert compare_runs(cand, base, 5.0, CONFIDENCE).regressions == []
    lines = comparison_lines(comparison)
    assert "Result: 12 regressions beyond 5%" == lines[-1]
    assert all("REGRESSION" in line and "(limit only)" not in line for line in lines[2:-2])


def test_the_passing_limit_is_the_smallest_limit_that_passes():
    rng = np.random.default_rng(14)
    base = run(measured_level(rng, 1, 10_000, [1.0, 1.01, 0.99]), measured_level(rng, 2, 20_000, [1.0, 1.01, 0.99]))
    cand = run(measured_level(rng, 1, 11_500, [1.0, 0.99, 1.01]), measured_level(rng, 2, 21_000, [1.0, 0.99, 1.01]))
    comparison = compare_runs(base, cand, 5.0, CONFIDENCE)
    passing = comparison.passing_limit_pct
    worse = lambda d: -d.change_pct if d.figure == "throughput" else d.change_pct  # noqa: E731
    assert passing == max(worse(d) - d.margin_pct for lv in comparison.levels for d in lv.deltas) > 5
    assert compare_runs(base, cand, passing, CONFIDENCE).regressions == []
    assert len(compare_runs(base, cand, passing - 0.05, CONFIDENCE).regressions) >= 1
    assert f"Passes with --max-regression {math.ceil(passing * 10) / 10:g}% or more." in comparison_lines(comparison)
    assert compare_runs(cand, base, 5.0, CONFIDENCE).passing_limit_pct < passing  # the other way round it improved


def test_the_same_runs_compared_with_each_other_change_nothing_and_are_not_sure_of_anything():
    rng = np.random.default_rng(9)
    base = run(measured_level(rng, 1, 10_000, [1.0, 1.05, 0.95, 1.0]))
    comparison = compare_runs(base, base, 5.0, CONFIDENCE)
    assert comparison.regressions == [] and comparison.notes == ()
    for delta in comparison.levels[0].deltas:
        assert delta.change_pct == 0 and delta.margin_pct > 0 and delta.confidence_pct < 50


def test_confidence_trades_false_alarms_for_sensitivity():
    rng = np.random.default_rng(10)
    base = run(measured_level(rng, 2, 10_000, [1.0, 1.04, 0.96, 1.0]))
    cand = run(measured_level(rng, 2, 11_400, [1.0, 0.96, 1.04, 1.0]))
    avg = lambda c: c.levels[0].deltas[1]  # noqa: E731
    loose, strict = compare_runs(base, cand, 5.0, 80.0), compare_runs(base, cand, 5.0, 99.9)
    assert avg(loose).margin_pct < avg(strict).margin_pct
    assert avg(loose).confidence_pct == avg(strict).confidence_pct  # the evidence is the same, the bar is not
    assert len(loose.regressions) >= len(strict.regressions)
    for bad in (50.0, 100.0, 120.0):
        with pytest.raises(UsageError, match="--confidence"):
            compare_runs(base, cand, 5.0, bad)


def test_old_summaries_fall_back_to_the_limit_for_latencies_and_say_so():
    base = run(old_level(1, 100.0, 10_000), old_level(2, 180.0, 11_000))
    cand = run(old_level(1, 80.0, 10_400), old_level(2, 181.0, 12_000))
    comparison = compare_runs(base, cand, 5.0, CONFIDENCE)
    # Throughput is judged on its windows: -20% regresses. Latencies by the limit alone: c=1 +4% does
    # not regress, c=2 +9.1% does, everywhere.
    assert flagged(comparison) == {(1, "throughput"), (2, "avg latency"), (2, "p50 latency"), (2, "p90 latency"),
                                   (2, "p95 latency"), (2, "p99 latency")}  # fmt: skip
    assert [d.tested for d in comparison.levels[0].deltas] == [True, False, False, False, False, False]
    lines = comparison_lines(comparison)
    assert lines[-1] == "Result: 6 regressions beyond 5%"
    assert any("throughput" in line and "-20.0%" in line and line.endswith("REGRESSION") for line in lines)
    assert any("avg latency" in line and "+9.1%" in line and "n/a" in line and "REGRESSION (limit only)" in line for line in lines)
    notes = [line for line in lines if line.startswith("Note:")]
    assert len(notes) == 1 and notes[0].startswith("Note: avg latency, p50 latency, p90 latency, p95 latency, p99 latency: judged by the limit alone")
    assert "the baseline and candidate lack them in some reported window" in notes[0]
    # Improvements are never regressions, however large; the limit is inclusive.
    assert compare_runs(base, run(old_level(1, 300.0, 1_000), old_level(2, 500.0, 1_000)), 0.0, CONFIDENCE).regressions == []
    assert compare_runs(run(old_level(1, 100.0, 10_000)), run(old_level(1, 100.0, 10_500)), 5.0, CONFIDENCE).regressions == []
    assert len(compare_runs(run(old_level(1, 100.0, 10_000)), run(old_level(1, 100.0, 10_500)), 4.9, CONFIDENCE).regressions) == 5


def test_an_old_baseline_against_a_new_candidate_names_the_run_without_noise_figures():
    rng = np.random.default_rng(11)
    comparison = compare_runs(run(old_level(1, 100.0, 10_000)), run(measured_level(rng, 1, 10_000, [1.0, 1.0, 1.0])), 5.0, CONFIDENCE)
    assert len(comparison.notes) == 1 and "p50 latency, p90 latency, p95 latency, p99 latency: judged by the limit alone" in comparison.notes[0]
    assert "the baseline lacks them" in comparison.notes[0]


def test_summary_files_of_earlier_versions_are_compared_by_their_windows_where_they_can(capsys):
    """Real files of version 4 (tests/data/summaries), upgraded as read: their windows kept the
    throughput and the latency stability was judged on (the average, or --percentile's p90)."""
    old = ROOT / "tests" / "data" / "summaries" / "v4"
    code = main(["compare", str(old / "percentile"), str(old / "metrics-sla")])
    lines = capsys.readouterr().out.splitlines()
    assert code == (0 if lines[-1].startswith("Result: no regression") else 1)
    assert [line for line in lines if line.startswith("Note:")] == [
        "Note: avg latency: judged by the limit alone, without a confidence: the baseline lacks it in some reported window "
        "(a summary.json older than version 5, a window without a success, or a level of one window).",
        "Note: p50 latency, p95 latency, p99 latency: judged by the limit alone, without a confidence: the baseline and "
        "candidate lack them in some reported window (a summary.json older than version 5, a window without a success, "
        "or a level of one window).",
        "Note: p90 latency: judged by the limit alone, without a confidence: the candidate lacks it in some reported window "
        "(a summary.json older than version 5, a window without a success, or a level of one window).",
    ]
    throughput = [line for line in lines if "  throughput " in line]
    assert len(throughput) == 2 and all("±" in line for line in throughput)


def test_unstable_levels_are_marked():
    comparison = compare_runs(run(old_level(1, 100.0, 10_000, stable=False)), run(old_level(1, 100.0, 10_000)), 5.0, CONFIDENCE)
    assert not comparison.levels[0].stable
    assert "(unstable level)" in comparison_lines(comparison)[2]


def test_runs_with_nothing_in_common_are_an_error():
    with pytest.raises(UsageError, match="no level in common"):
        compare_runs(run(old_level(1, 1.0, 1.0)), run(old_level(1, 1.0, 1.0, label="Request Rate")), 5.0, CONFIDENCE)


def test_an_unfinished_run_is_named_with_the_levels_it_lacks():
    rng = np.random.default_rng(12)
    levels = [measured_level(rng, c, 10_000 * c, [1.0, 1.0, 1.0]) for c in (1, 2, 3)]
    cand = run(replace(levels[0], incomplete="worker 1 (host, pid 1234) was lost"), status="interrupted", stop_reason="interrupted by SIGTERM")
    comparison = compare_runs(run(*levels), cand, 5.0, CONFIDENCE)
    assert not comparison.complete and comparison.baseline.complete
    assert comparison.candidate.missing == ("Concurrency 2", "Concurrency 3")
    assert [lv.value for lv in comparison.levels] == [1] and not comparison.levels[0].complete
    lines = comparison_lines(comparison)
    assert lines[2].endswith("(incomplete level)")
    assert (
        "The candidate run is interrupted (interrupted by SIGTERM): it lacks Concurrency 2, Concurrency 3, not compared."
        in lines
    )
    # A complete run that simply swept other levels is listed as before, and is complete.
    other = compare_runs(run(*levels[:2]), run(levels[0], levels[2]), 5.0, CONFIDENCE)
    assert other.complete
    assert "Only in the baseline (not compared): Concurrency 2" in comparison_lines(other)
    assert "Only in the candidate (not compared): Concurrency 3" in comparison_lines(other)


def write_run(folder: Path, summary: RunResult) -> str:
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary.to_dict()))
    return str(folder)


def test_require_complete_exits_2_after_the_comparison(tmp_path, capsys):
    rng = np.random.default_rng(13)
    levels = [measured_level(rng, c, 10_000 * c, [1.0, 1.0, 1.0]) for c in (1, 2)]
    base = write_run(tmp_path / "base", run(*levels))
    failed = write_run(tmp_path / "failed", run(levels[0], status="failed", stop_reason="failed: the server died"))
    assert main(["compare", base, failed]) == 0  # compared as far as it goes
    out = capsys.readouterr().out
    assert "The candidate run is failed (failed: the server died): it lacks Concurrency 2, not compared." in out
    assert main(["compare", base, failed, "--require-complete"]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith("Result: no regression")
    assert captured.err == "loadgen: error: --require-complete: the candidate run is failed; compare complete runs\n"
    assert main(["compare", base, base, "--require-complete"]) == 0
    assert main(["compare", base, base, "--confidence", "100%"]) == 2
    assert "fix --confidence" in capsys.readouterr().err


# --- against the real server: a sleep-based model, unchanged and 30% slower -------------------------------

# One level of 3 one-second windows: fixed-service is steady, so it is stable at once. In 132 pairs of
# such runs on this machine (README), the defaults (5%, 99%) flagged no unchanged pair and every slower one.
SWEEP = ["--concurrency-range", "2", "-p", "1000", "-r", "6", "-s", "20"]


def loadgen_run(url: str, report: Path) -> None:
    args = [sys.executable, "-m", "loadgen", "run", "-u", url, "-m", "fixed-service", *SWEEP, "--report-dir", str(report)]
    process = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr


@pytest.fixture(scope="module")
def slower_triton(tmp_path_factory):
    """fixed-service at 13 ms a request instead of 10, on its own server."""
    repository = tmp_path_factory.mktemp("slower") / "repository"
    shutil.copytree(QUEUEING_REPOSITORY / "fixed-service", repository / "fixed-service")
    config = repository / "fixed-service" / "config.pbtxt"
    original = config.read_text()
    config.write_text(original.replace('string_value: "10"', 'string_value: "13"'))
    assert config.read_text() != original
    server = EmbeddedServer(repository, repository.parent / "server.log")
    endpoints = server.start()
    try:
        yield endpoints
    finally:
        server.stop()


def test_an_unchanged_model_does_not_regress_and_a_30_percent_slower_one_does(queueing_triton, slower_triton, tmp_path, capsys):
    for name in ("first", "second"):
        loadgen_run(queueing_triton.http, tmp_path / name)
    loadgen_run(slower_triton.http, tmp_path / "slower")
    first, second, slower = (str(tmp_path / name) for name in ("first", "second", "slower"))

    assert main(["compare", first, second]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("Result: no regression beyond 5%") and "Note:" not in out

    assert main(["compare", first, slower]) == 1
    lines = capsys.readouterr().out.splitlines()
    figures = ("throughput", "avg latency", "p50 latency", "p90 latency", "p95 latency", "p99 latency")
    regressed = {figure for line in lines if line.endswith("REGRESSION") for figure in figures if f"  {figure} " in line}
    # Latencies ~30% up and throughput ~23% down, beyond the limit and the noise.
    assert {"throughput", "avg latency", "p50 latency"} <= regressed
