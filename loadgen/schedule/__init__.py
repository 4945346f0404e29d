"""Load schedules: when the engine sends requests."""

from loadgen.schedule.base import Fire, Schedule
from loadgen.schedule.concurrency import ConcurrencySchedule

__all__ = ["ConcurrencySchedule", "Fire", "Schedule"]
