"""Bisection points and replica counts (no server)."""

from __future__ import annotations

import pytest

from loadgen.capacity import midpoint, plan_capacity


@pytest.mark.parametrize(
    ("low", "high", "step", "expected"),
    [
        (1, 64, 1, 32), (32, 64, 1, 48), (62, 64, 1, 63), (63, 64, 1, None),
        (1, 9, 4, 5), (1, 8, 4, 5), (5, 8, 4, None), (5, 9, 4, None),
        (100.0, 400.0, 50.0, 250.0), (100.0, 150.0, 50.0, None), (10.0, 12.5, 0.5, 11.0),
    ],
)  # fmt: skip
def test_midpoints_stay_on_the_grid_and_end_when_adjacent(low, high, step, expected):
    assert midpoint(low, high, step) == expected


def test_bisection_reaches_the_boundary():
    """Whatever the boundary, bisecting 1..64 finds the highest passing level in about log2(64) steps."""
    for boundary in range(1, 64):
        low, high, steps = 1, 64, 0
        while (mid := midpoint(low, high, 1)) is not None:
            low, high = (mid, high) if mid <= boundary else (low, mid)
            steps += 1
        assert low == boundary and steps <= 6


def test_replicas_for_a_target_with_headroom():
    plan = plan_capacity([("Concurrency", 4, 180.0), ("Concurrency", 8, 200.0), ("Concurrency", 2, 120.0)], 1000.0, 30.0)
    assert (plan.level_value, plan.throughput_infer_per_s) == (8, 200.0)
    assert plan.replicas == 8  # 1000 / (200 * 0.7) = 7.14
    assert plan_capacity([("Concurrency", 1, 250.0)], 1000.0, 0.0).replicas == 4  # exactly 4, not 5
    assert plan_capacity([("Concurrency", 1, 250.0)], None, 30.0).replicas is None
    assert plan_capacity([], 1000.0, 30.0) is None
