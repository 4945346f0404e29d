"""Student's t, Welch–Satterthwaite and a histogram percentile's sampling error: pure arithmetic, no server."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from loadgen.histogram import LatencyHistogram
from loadgen.significance import (
    mean_standard_error_ns,
    percentile_standard_error_ns,
    regularized_beta,
    t_cdf,
    t_quantile,
    welch_df,
    window_standard_error,
)

# Student's t critical values as printed in statistics tables (one-sided p, df, t), 3 decimals.
T_TABLE = [
    (0.95, 1, 6.314), (0.975, 1, 12.706), (0.995, 1, 63.657),
    (0.95, 2, 2.920), (0.975, 2, 4.303), (0.995, 2, 9.925),
    (0.95, 3, 2.353), (0.975, 3, 3.182), (0.995, 3, 5.841),
    (0.95, 4, 2.132), (0.975, 4, 2.776), (0.995, 4, 4.604),
    (0.975, 5, 2.571), (0.975, 10, 2.228), (0.99, 10, 2.764),
    (0.975, 30, 2.042), (0.975, 120, 1.980), (0.9995, 2, 31.599),
]  # fmt: skip


@pytest.mark.parametrize(("p", "df", "t"), T_TABLE)
def test_t_quantiles_match_the_tables(p, df, t):
    assert t_quantile(p, df) == pytest.approx(t, abs=6e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-t, abs=6e-4)
    assert t_cdf(t, df) == pytest.approx(p, abs=1e-4)


def test_t_has_its_closed_forms_and_tends_to_the_normal():
    for t in (-30.0, -2.0, -0.3, 0.0, 0.7, 4.0, 100.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_quantile(0.975, 1e6) == pytest.approx(NormalDist().inv_cdf(0.975), abs=1e-4)
    # Fractional degrees of freedom (Welch's) fall between their neighbours.
    assert t_quantile(0.975, 3) > t_quantile(0.975, 3.5) > t_quantile(0.975, 4)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_the_incomplete_beta_has_its_closed_forms():
    for x in (0.0, 0.01, 0.3, 0.5, 0.9, 1.0):
        assert regularized_beta(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert regularized_beta(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-14)
        assert regularized_beta(2.5, 4, x) == pytest.approx(1 - regularized_beta(4, 2.5, 1 - x), abs=1e-14)


def test_welch_satterthwaite_degrees_of_freedom():
    assert welch_df([(1.0, 2), (1.0, 2)]) == pytest.approx(4)  # equal parts: the df add up
    assert welch_df([(1.0, 2), (1e-9, 2)]) == pytest.approx(2)  # one part dominates: its df
    assert welch_df([(0.0, 2), (0.0, 3)]) == 5
    # Welch's test of samples with variances 4 and 9, of 3 and 5 values: (4/3 + 9/5)² / ((4/3)²/2 + (9/5)²/4)
    assert welch_df([(4 / 3, 2), (9 / 5, 4)]) == pytest.approx(5.779, abs=1e-3)
    assert 2 <= welch_df([(0.3, 2), (0.7, 4)]) <= 6


def test_window_standard_error_is_the_standard_error_of_their_mean():
    values = [100.0, 104.0, 96.0]
    assert window_standard_error(values) == pytest.approx(np.std(values, ddof=1) / math.sqrt(3))
    assert window_standard_error([5.0, 5.0]) == 0.0


def test_mean_standard_error_is_std_over_root_n():
    values = np.random.default_rng(1).gamma(4, 2.5e6, 5000).astype(np.int64)
    histogram = LatencyHistogram.of(values)
    assert mean_standard_error_ns(histogram) == pytest.approx(np.std(values, ddof=1) / math.sqrt(values.size), rel=1e-9)


def spread_and_estimate(rng, percentile, n, repeats=1000, estimated=200):
    """The std of a sample percentile over many independent samples of a skewed latency distribution,
    and the mean of the standard errors read from single samples' histograms."""
    samples = rng.lognormal(math.log(10e6), 0.5, (repeats, n)).astype(np.int64)
    spread = np.std([np.percentile(s, percentile) for s in samples], ddof=1)
    return spread, np.mean([percentile_standard_error_ns(LatencyHistogram.of(s), percentile) for s in samples[:estimated]])


@pytest.mark.parametrize(("percentile", "n"), [(50, 2000), (90, 2000), (99, 10000)])
def test_a_percentiles_standard_error_matches_its_spread_over_repeated_samples(percentile, n):
    spread, estimate = spread_and_estimate(np.random.default_rng(percentile), percentile, n)
    assert estimate == pytest.approx(spread, rel=0.1)


def test_with_few_samples_beyond_it_a_percentiles_standard_error_errs_on_the_large_side():
    # p99 of 300: three samples beyond it; the interval's upper rank is clipped at the maximum.
    spread, estimate = spread_and_estimate(np.random.default_rng(5), 99, 300)
    assert estimate > spread


def test_a_percentiles_standard_error_is_zero_without_spread_and_shrinks_with_more_samples():
    assert percentile_standard_error_ns(LatencyHistogram.of(np.full(500, 7_000_000)), 90) == 0.0
    assert percentile_standard_error_ns(LatencyHistogram.of(np.array([7_000_000])), 90) == 0.0
    rng = np.random.default_rng(3)
    small, large = (LatencyHistogram.of(rng.exponential(5e6, n).astype(np.int64)) for n in (1000, 16000))
    # sqrt(16) = 4 times smaller, within the sampling error of the estimates themselves
    assert percentile_standard_error_ns(small, 50) / percentile_standard_error_ns(large, 50) == pytest.approx(4, rel=0.3)
