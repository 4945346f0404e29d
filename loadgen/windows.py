"""Measurement windows and perf_analyzer's stability rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadgen.errors import UsageError

TIME_WINDOWS = "time_windows"
COUNT_WINDOWS = "count_windows"
STABLE_WINDOW_COUNT = 3
# --streaming's defaults: count windows of STREAMING_REQUEST_COUNT requests. A streamed request lasts
# 0.1 to several seconds, so a 5 s time window holds a handful of completions and its throughput
# jumps by one in five from window to window: the llm-ensemble here (1 s requests) never settled in
# 5, 15 or 20 s time windows, and did in count windows of 10 (README, "Streaming"). In count
# windows -p is how long a window waits without a completion: longer than a long generation.
STREAMING_REQUEST_COUNT = 10
STREAMING_STALL_MS = 30_000


@dataclass(frozen=True)
class WindowPolicy:
    """How a level is measured: window kind and size, and when it counts as stable."""

    mode: str = TIME_WINDOWS
    interval_ms: int = 5000
    request_count: int = 50
    stability_pct: float = 10.0
    max_trials: int = 10
    percentile: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in (TIME_WINDOWS, COUNT_WINDOWS):
            raise UsageError(f"unknown measurement mode {self.mode!r}: use time_windows or count_windows")
        if self.interval_ms <= 0:
            raise UsageError(f"measurement interval must be positive, got {self.interval_ms} ms: fix -p")
        if self.request_count <= 0:
            raise UsageError(f"measurement request count must be positive, got {self.request_count}: fix --measurement-request-count")
        if self.stability_pct <= 0:
            raise UsageError(f"stability percentage must be positive, got {self.stability_pct}: fix -s")
        if self.max_trials < STABLE_WINDOW_COUNT:
            raise UsageError(f"max trials must be at least {STABLE_WINDOW_COUNT}, got {self.max_trials}: fix -r")
        if self.percentile is not None and not 0 < self.percentile < 100:
            raise UsageError(f"percentile must be between 1 and 99, got {self.percentile}: fix --percentile")


def within(values: Sequence[float], stability_pct: float) -> bool:
    low, high = min(values), max(values)
    return low > 0 and high / low <= 1 + stability_pct / 100.0


def is_stable(throughputs: Sequence[float], latencies_us: Sequence[float], stability_pct: float) -> bool:
    """The last 3 windows each have throughput > 0 and agree within stability_pct on both figures."""
    if len(throughputs) < STABLE_WINDOW_COUNT or len(latencies_us) < STABLE_WINDOW_COUNT:
        return False
    last_throughputs = throughputs[-STABLE_WINDOW_COUNT:]
    last_latencies = latencies_us[-STABLE_WINDOW_COUNT:]
    return within(last_throughputs, stability_pct) and within(last_latencies, stability_pct)
