"""loadgen compare's arithmetic: deltas, regressions and the limit (no server)."""

from __future__ import annotations

import pytest

from loadgen.compare import compare_runs, comparison_lines
from loadgen.config import parse_percent
from loadgen.errors import UsageError


def level(value, throughput, latency_us, stable=True, label="Concurrency"):
    return {
        "label": label,
        "value": value,
        "stable": stable,
        "client": {
            "throughput_infer_per_s": throughput,
            "avg_latency_us": latency_us,
            "percentile_latency_us": {f"p{p}": latency_us * (1 + p / 100) for p in (50, 90, 95, 99)},
        },
    }


def run(*levels):
    return {"levels": list(levels)}


def test_percentages_are_read_with_or_without_the_sign():
    assert parse_percent("5%", "--max-regression") == 5.0
    assert parse_percent("2.5", "--max-regression") == 2.5
    for bad in ["five", "-1%"]:
        with pytest.raises(UsageError, match="--max-regression"):
            parse_percent(bad, "--max-regression")


def test_equal_runs_have_no_regression():
    base = run(level(1, 100.0, 10_000), level(2, 180.0, 11_000))
    comparison = compare_runs(base, base, 5.0)
    assert comparison.regressions == []
    assert all(d.change_pct == 0 for lv in comparison.levels for d in lv.deltas)
    assert comparison_lines(comparison)[-1] == "Result: no regression beyond 5%"


def test_throughput_drop_and_latency_rise_beyond_the_limit_are_regressions():
    base = run(level(1, 100.0, 10_000), level(2, 180.0, 11_000))
    cand = run(level(1, 94.0, 10_400), level(2, 181.0, 12_000))
    comparison = compare_runs(base, cand, 5.0)
    found = {(lv.value, d.figure) for lv, d in comparison.regressions}
    # c=1: throughput -6% regresses, latency +4% does not; c=2: latency +9.1% regresses everywhere.
    assert found == {(1, "throughput"), (2, "avg latency"), (2, "p50 latency"), (2, "p90 latency"), (2, "p95 latency"), (2, "p99 latency")}
    lines = comparison_lines(comparison)
    assert lines[-1] == "Result: 6 regressions beyond 5%"
    assert any("throughput" in line and "-6.0%" in line and "REGRESSION" in line for line in lines)
    # Improvements are never regressions, however large.
    assert compare_runs(base, run(level(1, 300.0, 1_000), level(2, 500.0, 1_000)), 0.0).regressions == []


def test_the_limit_is_inclusive_and_zero_means_any_worsening():
    base, cand = run(level(1, 100.0, 10_000)), run(level(1, 95.0, 10_000))
    assert compare_runs(base, cand, 5.0).regressions == []
    assert len(compare_runs(base, cand, 4.9).regressions) == 1


def test_levels_only_in_one_run_are_listed_not_compared():
    base = run(level(1, 100.0, 10_000), level(2, 180.0, 11_000))
    cand = run(level(1, 100.0, 10_000), level(4, 200.0, 20_000))
    comparison = compare_runs(base, cand, 5.0)
    assert [lv.value for lv in comparison.levels] == [1]
    assert comparison.only_baseline == ("Concurrency 2",) and comparison.only_candidate == ("Concurrency 4",)
    assert "Only in the baseline (not compared): Concurrency 2" in comparison_lines(comparison)


def test_unstable_levels_are_marked():
    comparison = compare_runs(run(level(1, 100.0, 10_000, stable=False)), run(level(1, 100.0, 10_000)), 5.0)
    assert not comparison.levels[0].stable
    assert "(unstable level)" in comparison_lines(comparison)[1]


def test_runs_with_nothing_in_common_are_an_error():
    with pytest.raises(UsageError, match="no level in common"):
        compare_runs(run(level(1, 1.0, 1.0)), run(level(1, 1.0, 1.0, label="Request Rate")), 5.0)
