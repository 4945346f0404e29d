"""Load schedules: when the engine sends requests."""

from loadgen.schedule.base import Fire, Schedule
from loadgen.schedule.concurrency import ConcurrencySchedule
from loadgen.schedule.open_loop import (
    IntervalSchedule,
    OpenLoopSchedule,
    RateSchedule,
    read_intervals,
)

__all__ = ["ConcurrencySchedule", "Fire", "IntervalSchedule", "OpenLoopSchedule", "RateSchedule", "Schedule", "read_intervals"]
