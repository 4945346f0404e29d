"""Open-loop pacers: their gaps, the intervals file, and what drive() fires (no server)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from loadgen.errors import UsageError
from loadgen.schedule import IntervalSchedule, RateSchedule, read_intervals


def gaps(schedule, count):
    return list(itertools.islice(schedule.gaps_ns(), count))


def test_constant_gaps():
    assert gaps(RateSchedule(250), 3) == [4_000_000] * 3
    assert RateSchedule(250).value == 250 and RateSchedule(250).label == "Request Rate"


def test_poisson_gaps_are_exponential_and_seeded():
    drawn = np.array(gaps(RateSchedule(100, "poisson", seed=7), 20_000)) / 1e6  # ms
    assert drawn.mean() == pytest.approx(10.0, rel=0.03)
    assert drawn.std() == pytest.approx(10.0, rel=0.05)  # an exponential's std is its mean
    assert gaps(RateSchedule(100, "poisson", seed=7), 50) == gaps(RateSchedule(100, "poisson", seed=7), 50)
    assert gaps(RateSchedule(100, "poisson", seed=7), 50) != gaps(RateSchedule(100, "poisson", seed=8), 50)


def test_intervals_loop_and_give_their_mean_rate(tmp_path):
    path = tmp_path / "gaps.txt"
    path.write_text("5000\n15000\n\n")
    schedule = IntervalSchedule(read_intervals(path))
    assert gaps(schedule, 5) == [5_000_000, 15_000_000, 5_000_000, 15_000_000, 5_000_000]
    assert schedule.value == pytest.approx(100.0)


@pytest.mark.parametrize(("text", "message"), [("", "at least one gap"), ("10\nten\n", "whole number"), ("-5\n", "at least one gap")])
def test_bad_intervals_files(tmp_path, text, message):
    path = tmp_path / "gaps.txt"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_intervals(path)
    with pytest.raises(UsageError, match="cannot read"):
        read_intervals(tmp_path / "missing.txt")


def test_drive_fires_at_intended_times_until_stopped():
    async def scenario():
        intended: list[int] = []

        async def fire(intended_ns):
            intended.append(intended_ns)
            await asyncio.sleep(0.05)  # slower than the gaps: open loop does not wait for replies

        stop = asyncio.Event()
        driving = asyncio.create_task(RateSchedule(500).drive(fire, stop))
        await asyncio.sleep(0.2)
        stop.set()
        await driving  # returns once the requests in flight are done
        return intended

    intended = asyncio.run(scenario())
    assert len(intended) >= 50  # about 100 due in 0.2 s, however slowly the machine runs
    assert set(np.diff(intended).tolist()) == {2_000_000}


def test_the_timer_wakes_at_the_instant_asked():
    from time import monotonic_ns

    from loadgen.schedule.timer import MonotonicTimer

    async def scenario():
        timer = MonotonicTimer()
        try:
            due = monotonic_ns() + 20_000_000
            await timer.sleep_until(due)
            woke = monotonic_ns()
            await timer.sleep_until(due - 1_000_000)  # already past: at once
            return woke - due, monotonic_ns() - woke
        finally:
            timer.close()

    late_ns, past_ns = asyncio.run(scenario())
    assert late_ns >= 0  # never early, unlike the loop's millisecond timers
    assert past_ns < 20_000_000
