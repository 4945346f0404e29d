"""LatencyHistogram: HdrHistogram's layout, exact moments, merges equal to pooled builds. No server."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.histogram import LatencyHistogram, bucket_bounds
from loadgen.stats import CURVE_PERCENTILES, percentile_of_sorted

MAX_VALUE = 2**63 - 1
PROPERTY = settings(max_examples=200, deadline=None)


def edge_values() -> np.ndarray:
    """Every power of two and its neighbours, across the whole int64 range; above 2**53, also the
    values just below it that a float rounds up to it."""
    near = {(1 << k) + d for k in range(63) for d in (-1, 0, 1)}
    near |= {(1 << k) - (1 << j) for k in range(54, 64) for j in range(k - 54, k - 50)}
    return np.array(sorted(v for v in near | {0, MAX_VALUE} if 0 <= v <= MAX_VALUE), np.int64)


def mixed_values(rng, n=20_000) -> np.ndarray:
    return np.concatenate([
        rng.integers(0, 4096, n),
        rng.lognormal(15, 1.5, n).astype(np.int64),
        (rng.pareto(1.2, n) * 1e6).astype(np.int64),
        rng.integers(0, MAX_VALUE, n, dtype=np.int64),
        edge_values(),
    ])  # fmt: skip


def assert_within_precision(estimate, exact, relative_error):
    assert abs(estimate - exact) <= relative_error * abs(exact), (estimate, exact)


@pytest.mark.parametrize("digits", [1, 2, 3, 4, 5])
def test_layout_is_hdrhistograms(digits):
    hdrh = pytest.importorskip("hdrh.histogram")
    reference = hdrh.HdrHistogram(1, MAX_VALUE, digits)
    values = mixed_values(np.random.default_rng(digits), 2_000)
    lowest, highest = bucket_bounds(values, digits)
    assert lowest.tolist() == [reference.get_lowest_equivalent_value(v) for v in values.tolist()]
    assert highest.tolist() == [reference.get_highest_equivalent_value(v) for v in values.tolist()]
    assert reference.sub_bucket_count == round(1 / LatencyHistogram.of(values[:1], digits).relative_error)


def test_three_digits_are_2048_sub_buckets_and_small_values_exact():
    lowest, highest = bucket_bounds(np.arange(4096))
    assert (lowest[:2048] == np.arange(2048)).all() and (highest[:2048] == np.arange(2048)).all()
    assert lowest[2048:].tolist() == np.repeat(np.arange(2048, 4096, 2), 2).tolist()  # width 2 from 2048
    assert LatencyHistogram.of(np.arange(1)).relative_error == 1 / 2048


def test_buckets_are_as_narrow_as_stated():
    values = mixed_values(np.random.default_rng(0))
    lowest, highest = bucket_bounds(values)
    assert ((lowest <= values) & (values <= highest)).all()
    width, large = highest - lowest + 1, values >= 2048
    assert (width[~large] == 1).all()
    assert ((width[large] << 10) <= lowest[large]).all()  # a bucket spans at most 1/1024 of its values


def test_exact_figures_match_numpy():
    values = mixed_values(np.random.default_rng(1))
    histogram = LatencyHistogram.of(values)
    assert histogram.count == values.size
    assert histogram.total == sum(values.tolist())  # beyond int64: exact all the same
    assert (histogram.min, histogram.max) == (values.min(), values.max())
    moderate = values[values < 2**40]
    part = LatencyHistogram.of(moderate)
    assert part.mean == pytest.approx(moderate.mean(), rel=1e-12)
    assert part.std == pytest.approx(moderate.std(ddof=1), rel=1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.lognormal(13, 0.8, 50_000),
        lambda rng: np.concatenate([rng.normal(2e6, 1e5, 30_000), rng.normal(8e7, 5e6, 3_000)]).clip(0),
        lambda rng: rng.pareto(1.1, 50_000) * 1e5,
        lambda rng: rng.integers(0, 2048, 10_000),
        lambda rng: rng.integers(2**50, 2**62, 10_000),
    ],
    ids=["lognormal", "bimodal", "heavy-tail", "below-2048", "huge"],
)
def test_percentiles_are_within_the_stated_precision(make):
    values = make(np.random.default_rng(2)).astype(np.int64)
    histogram = LatencyHistogram.of(values)
    ordered = np.sort(values)
    for p in (*CURVE_PERCENTILES, 12.5, 99.999):
        exact = int(ordered[int(np.floor(p / 100 * (values.size - 1) + 0.5))])
        assert_within_precision(histogram.percentile(p), exact, histogram.relative_error)
    assert histogram.percentile(100) == ordered[-1] and histogram.percentile(0) == ordered[0]


def test_small_values_and_tiny_counts_are_exact():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 7, 500):
        values = rng.integers(0, 2048, n)
        histogram = LatencyHistogram.of(values)
        for p in CURVE_PERCENTILES:
            assert histogram.percentile(p) == percentile_of_sorted(np.sort(values), p)


def test_percentile_is_the_bucket_midpoint_not_an_edge():
    # 1_000_000 sits in a bucket [999_936, 1_000_447]: the midpoint errs by at most half its width.
    histogram = LatencyHistogram.of(np.array([0, 999_936, 999_936, 10**7]))
    assert histogram.percentile(50) == 999_936 + 256
    assert histogram.percentile(100) == 10**7 and histogram.percentile(0) == 0


def test_merge_equals_the_pooled_build():
    rng = np.random.default_rng(4)
    values = mixed_values(rng, 5_000)
    parts = np.array_split(rng.permutation(values), 7)
    merged = LatencyHistogram.merged(LatencyHistogram.of(p) for p in parts)
    pooled = LatencyHistogram.of(values)
    assert merged.buckets.tolist() == pooled.buckets.tolist() and merged.counts.tolist() == pooled.counts.tolist()
    assert (merged.count, merged.total, merged.min, merged.max) == (pooled.count, pooled.total, pooled.min, pooled.max)
    assert merged.m2 == pytest.approx(pooled.m2, rel=1e-9)
    first, *rest = (LatencyHistogram.of(p) for p in parts)
    assert first.merge(*rest).counts.tolist() == pooled.counts.tolist()
    assert first.count == parts[0].size  # merge is pure


def test_std_of_merged_parts_matches_pooled_samples():
    rng = np.random.default_rng(5)
    # Parts far apart: the spread between their means dominates the std.
    parts = [rng.normal(mean, 10, size).astype(np.int64) for mean, size in ((1e3, 1), (1e6, 2), (5e8, 5000), (5e8 + 7, 3))]
    merged = LatencyHistogram.merged(LatencyHistogram.of(p) for p in parts)
    pooled = np.concatenate(parts)
    assert merged.std == pytest.approx(pooled.std(ddof=1), rel=1e-12)
    assert merged.mean == pytest.approx(pooled.mean(), rel=1e-15)


def test_empty_histograms():
    empty = LatencyHistogram.of(np.empty(0, np.int64))
    assert (empty.count, empty.total, empty.mean, empty.std, empty.min, empty.max) == (0, 0, 0.0, 0.0, 0, 0)
    with pytest.raises(ValueError):
        empty.percentile(50)
    assert LatencyHistogram.merged([]).count == 0
    one = LatencyHistogram.of(np.array([5_000_000]))
    merged = empty.merge(one, empty)
    assert (merged.min, merged.max, merged.percentile(50), merged.std) == (5_000_000, 5_000_000, 5_000_000, 0.0)


def test_rejects_negative_values_and_mixed_precision():
    with pytest.raises(ValueError):
        LatencyHistogram.of(np.array([3, -1]))
    with pytest.raises(ValueError):
        LatencyHistogram.of(np.array([3]), 3).merge(LatencyHistogram.of(np.array([3]), 2))


def test_a_window_pickles_small_and_whole():
    # 200k latencies around 3 ms over two decades: ~9k buckets, whatever the count.
    values = np.random.default_rng(6).lognormal(15, 1, 200_000).astype(np.int64)
    values[:3] = (0, 2**40, MAX_VALUE)  # a wide bucket gap, and counts beyond uint8
    histogram = LatencyHistogram.of(values)
    wire = pickle.dumps(histogram)
    assert len(wire) < values.nbytes / 100
    back = pickle.loads(wire)
    assert back.buckets.dtype == back.counts.dtype == np.int64
    assert back.buckets.tolist() == histogram.buckets.tolist() and back.counts.tolist() == histogram.counts.tolist()
    figures = ("count", "total", "min", "max", "m2", "significant_digits")
    assert [getattr(back, f) for f in figures] == [getattr(histogram, f) for f in figures]
    empty = pickle.loads(pickle.dumps(LatencyHistogram.of(np.empty(0, np.int64))))
    assert (empty.count, empty.buckets.size) == (0, 0)


@PROPERTY
@given(
    st.lists(st.lists(st.integers(0, MAX_VALUE), max_size=30), min_size=1, max_size=8),
    st.sampled_from([1, 50, 90, 99, 99.9, 100]),
)
def test_merged_parts_are_the_pooled_samples(parts, percentile):
    merged = LatencyHistogram.merged(LatencyHistogram.of(np.array(p, np.int64)) for p in parts)
    pooled = sorted(v for p in parts for v in p)
    assert merged.count == len(pooled) and merged.total == sum(pooled)
    if pooled:
        exact = pooled[int(np.floor(percentile / 100 * (len(pooled) - 1) + 0.5))]
        assert_within_precision(merged.percentile(percentile), exact, merged.relative_error)
        assert (merged.min, merged.max) == (pooled[0], pooled[-1])
