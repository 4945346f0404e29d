"""Capacity planning: the bisection between a range's ends, and how many replicas a target load needs."""

from __future__ import annotations

import math
from dataclasses import dataclass


def midpoint(low: float, high: float, step: float) -> float | None:
    """The level halfway between a passing `low` and a failing `high`, on `low`'s grid of `step`; None when they are adjacent."""
    between = math.ceil((high - low) / step - 1e-9) - 1  # grid points strictly between the two
    if between <= 0:
        return None
    return low + step * ((between + 1) // 2)


@dataclass(frozen=True)
class CapacityPlan:
    """The highest throughput one server sustains within the bounds, and what a target load needs."""

    level_label: str
    level_value: float
    throughput_infer_per_s: float
    target_throughput_infer_per_s: float | None
    headroom_pct: float
    replicas: int | None  # servers the target needs, each loaded to (1 - headroom) of its capacity


def plan_capacity(
    passing: list[tuple[str, float, float]], target_throughput: float | None, headroom_pct: float
) -> CapacityPlan | None:
    """From the (label, value, throughput) of the levels that met every bound; None if none did."""
    if not passing:
        return None
    label, value, throughput = max(passing, key=lambda level: level[2])
    replicas = None
    if target_throughput is not None:
        replicas = math.ceil(target_throughput / (throughput * (1 - headroom_pct / 100)) - 1e-9)
    return CapacityPlan(label, value, throughput, target_throughput, headroom_pct, replicas)
