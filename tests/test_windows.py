"""perf_analyzer's stability rule."""

import pytest

from loadgen.errors import UsageError
from loadgen.windows import WindowPolicy, is_stable


def test_needs_three_windows():
    assert not is_stable([100, 100], [10, 10], 10)
    assert is_stable([100, 100, 100], [10, 10, 10], 10)


def test_uses_only_the_last_three():
    assert is_stable([1, 500, 100, 105, 109], [99, 1, 10, 10.5, 10.9], 10)


def test_throughput_spread_beyond_the_percentage_is_unstable():
    assert is_stable([100, 110, 105], [10, 10, 10], 10)  # 110/100 = 1.10
    assert not is_stable([100, 111, 105], [10, 10, 10], 10)


def test_latency_spread_beyond_the_percentage_is_unstable():
    assert not is_stable([100, 100, 100], [10, 12, 10], 10)
    assert is_stable([100, 100, 100], [10, 12, 10], 20)


def test_a_window_without_throughput_is_never_stable():
    assert not is_stable([0, 0, 0], [0, 0, 0], 10)
    assert not is_stable([100, 0, 100], [10, 10, 10], 10)


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "forever"}, {"interval_ms": 0}, {"request_count": 0}, {"stability_pct": 0}, {"max_trials": 2}, {"percentile": 100}],
)
def test_bad_policies_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        WindowPolicy(**kwargs)
