"""Open-loop pacers: their gaps, the intervals file, and what drive() fires (no server)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
import uvloop

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


def test_requests_due_during_a_stall_go_out_together_each_at_its_own_intended_time():
    from time import monotonic_ns, sleep

    from loadgen.schedule.open_loop import _BURST

    async def scenario():
        loop = asyncio.get_running_loop()
        turns = 0

        def count_turn():  # runs once in every turn of the loop
            nonlocal turns
            turns += 1
            loop.call_soon(count_turn)

        sent: list[tuple[int, int, int]] = []  # intended, sent, the loop's turn

        async def fire(intended_ns):
            sent.append((intended_ns, monotonic_ns(), turns))
            if len(sent) == 1:
                sleep(0.1)  # the loop stalls: ~100 requests fall due meanwhile

        count_turn()
        stop = asyncio.Event()
        driving = asyncio.create_task(RateSchedule(1000).drive(fire, stop))
        await asyncio.sleep(0.2)
        stop.set()
        await driving
        return sent

    sent = asyncio.run(scenario())
    assert set(np.diff([intended for intended, _, _ in sent]).tolist()) == {1_000_000}  # none skipped
    backlog = [(sent_ns, turn) for intended, sent_ns, turn in sent[1:] if sent_ns - intended > 20_000_000]
    assert len(backlog) >= 50
    # Open loop: late, but sent at once, _BURST per turn of the loop (not one timer wake-up each).
    assert backlog[-1][1] - backlog[0][1] <= len(backlog) // _BURST + 2


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_the_timer_wakes_at_the_instant_asked(loop_factory):
    from time import monotonic_ns

    from loadgen.schedule.timer import MonotonicTimer

    async def scenario():
        calls: list[int] = []

        def expired():
            calls.append(monotonic_ns())
            if len(calls) == 3:  # level-triggered: called again on every turn until disarmed (or armed again)
                timer.disarm()

        timer = MonotonicTimer(expired)
        try:
            due = monotonic_ns() + 20_000_000
            timer.arm(due)
            await asyncio.sleep(0.1)
            expired_calls = list(calls)
            calls.clear()
            armed = monotonic_ns()
            timer.arm(due - 1_000_000)  # already past: at once
            while not calls:
                await asyncio.sleep(0)
            return expired_calls, due, calls[0] - armed
        finally:
            timer.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:  # the engine runs on uvloop
        expired_calls, due, past_ns = runner.run(scenario())
    assert len(expired_calls) == 3
    assert expired_calls[0] >= due  # never early, unlike the loop's millisecond timers
    assert past_ns < 20_000_000
