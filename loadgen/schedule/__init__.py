"""Load schedules: when the engine sends requests (and, replaying a recording, which)."""

from loadgen.schedule.base import Fire, Schedule
from loadgen.schedule.concurrency import ConcurrencySchedule
from loadgen.schedule.open_loop import (
    IntervalSchedule,
    OpenLoopSchedule,
    RateSchedule,
    read_intervals,
)
from loadgen.schedule.replay import ReplaySchedule

__all__ = [
    "ConcurrencySchedule", "Fire", "IntervalSchedule", "OpenLoopSchedule", "RateSchedule", "ReplaySchedule", "Schedule",
    "read_intervals",
]  # fmt: skip
