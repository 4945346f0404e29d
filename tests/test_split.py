"""Splitting a level among workers: together they send what one process would."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadgen.schedule import ConcurrencySchedule, IntervalSchedule, RateSchedule
from loadgen.workers.split import (
    split_count,
    split_intervals,
    split_schedule,
    worker_seeds,
)


@given(st.integers(0, 10_000), st.integers(1, 64))
def test_equal_count_shares_sum_and_differ_by_one_at_most(total, workers):
    shares = split_count(total, [1] * workers)
    assert len(shares) == workers and sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


@given(st.integers(0, 10_000), st.lists(st.floats(0.5, 1000), min_size=1, max_size=16))
def test_count_shares_follow_the_weights(total, weights):
    shares = split_count(total, weights)
    assert sum(shares) == total
    for share, weight in zip(shares, weights):
        assert abs(share - total * weight / sum(weights)) < 1


def test_a_count_window_is_split_like_the_load():
    assert split_count(2000, [2, 1]) == [1333, 667]


def test_concurrency_below_the_worker_count_leaves_workers_idle():
    shares = split_schedule(ConcurrencySchedule(2), 3)
    assert [s.concurrency if s else None for s in shares] == [1, 1, None]


def test_rate_split_keeps_the_total_and_gives_each_worker_its_own_stream():
    shares = split_schedule(RateSchedule(300.0, "poisson", seed=7), 3)
    assert sum(s.rate_per_s for s in shares) == pytest.approx(300.0)
    streams = [list(itertools.islice(s.gaps_ns(), 50)) for s in shares]
    assert streams[0] != streams[1] != streams[2]
    # Seeded: the same split again draws the same streams.
    again = [list(itertools.islice(s.gaps_ns(), 50)) for s in split_schedule(RateSchedule(300.0, "poisson", seed=7), 3)]
    assert again == streams


def test_unseeded_workers_draw_fresh_entropy():
    assert worker_seeds(None, 4) == [None] * 4
    assert len(set(worker_seeds(1, 4))) == 4


def _send_times(first_us, gaps_us, count):
    gaps = itertools.chain([first_us], itertools.cycle(gaps_us))
    return list(itertools.accumulate(itertools.islice(gaps, count)))


@given(st.lists(st.integers(0, 5000), min_size=1, max_size=12).filter(lambda g: sum(g) > 0), st.integers(1, 7))
def test_interval_shares_merge_into_the_original_send_times(intervals, workers):
    rounds = 3 * np.lcm(len(intervals), workers)
    expected = _send_times(intervals[0], intervals[1:] + intervals[:1], rounds)
    merged = []
    for first, gaps in split_intervals(intervals, workers):
        assert sum(gaps) > 0  # every worker's loop moves on
        merged += _send_times(first, gaps, rounds // workers)
    assert sorted(merged) == expected


def test_interval_schedules_keep_the_total_rate():
    intervals = [100, 200, 300]
    shares = split_schedule(IntervalSchedule(intervals), 2)
    assert sum(s.target_rate_per_s for s in shares) == pytest.approx(IntervalSchedule(intervals).target_rate_per_s)
    assert [next(iter(s.gaps_ns())) for s in shares] == [100_000, 300_000]
