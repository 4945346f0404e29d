"""The engine's accounting over an in-process transport that answers some requests and then never:
every wait at a level's end is bounded, and what never came back is counted, not lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from time import monotonic_ns

import numpy as np
import pytest

from loadgen.engine import DEADLINE_GRACE_S, DRAIN_WITHOUT_DEADLINE_S, LoadEngine, drain_bound_s
from loadgen.load import LocalLoad
from loadgen.measurement import measure_level
from loadgen.outcome import InferOutcome, StreamOutcome, http_status, timeout, unanswered
from loadgen.samples import SampleRecorder, WindowSamples
from loadgen.schedule import ConcurrencySchedule, RateSchedule
from loadgen.server_stats import ModelTree, parse_statistics
from loadgen.stats import client_stats
from loadgen.transport.base import Transport
from loadgen.windows import COUNT_WINDOWS, WindowPolicy


class FakeTransport(Transport):
    """A transport with no server: only infer is the test's."""

    def prepare(self, model, version, inputs, outputs):
        return object()

    async def server_metadata(self):
        raise NotImplementedError

    async def model_metadata(self, model, version=""):
        raise NotImplementedError

    async def model_config(self, model, version=""):
        raise NotImplementedError

    async def model_statistics(self, model="", version=""):
        raise NotImplementedError

    async def server_live(self, timeout_s):
        return None

    async def close(self):
        pass


class StopsAnswering(FakeTransport):
    """Answers its first `answers` requests after `delay_s`, then none ever again."""

    def __init__(self, answers: int, delay_s: float = 0.001) -> None:
        self.answers = answers
        self.delay_s = delay_s
        self.calls = 0
        self.cancelled = 0

    async def infer(self, prepared, number=None, sequence=None) -> InferOutcome:
        self.calls += 1
        try:
            if self.calls <= self.answers:
                await asyncio.sleep(self.delay_s)
                return InferOutcome(1_000, 2_000)
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


def engine(transport: Transport, request_timeout_ms: float | None = None, drain_s: float | None = None) -> LoadEngine:
    built = LoadEngine(transport, [object()], request_timeout_ms=request_timeout_ms)
    if drain_s is not None:
        built.drain_s = drain_s  # the default's 10 s makes a slow unit test
    return built


def test_the_drain_bound():
    assert drain_bound_s(None) == drain_bound_s(0) == DRAIN_WITHOUT_DEADLINE_S == 10.0
    assert drain_bound_s(60_000) == 60 + DEADLINE_GRACE_S


def test_stop_abandons_what_is_left_at_the_drain_bound_and_counts_it_unanswered():
    async def scenario():
        transport = StopsAnswering(answers=5)
        load = LocalLoad(engine(transport, drain_s=0.3))
        await load.start(ConcurrencySchedule(3), None)
        await asyncio.sleep(0.1)
        window = await load.close_window(monotonic_ns())
        started = time.monotonic()
        drain = await load.stop()
        return transport, load, window, drain, time.monotonic() - started

    transport, load, window, drain, stop_s = asyncio.run(scenario())
    assert window.success_count == 5 and window.outstanding == 3
    assert window.oldest_outstanding_ns >= 0.05e9
    assert 0.3 <= stop_s < 1.0, "the drain waited longer than its bound"
    assert transport.cancelled == 3 and load.in_flight == 0
    # Out since before the window closed (0.1 s) and through the drain (0.3 s; asyncio may wake a
    # millisecond or two early, within its clock's resolution).
    assert drain.outstanding == 3 and drain.oldest_outstanding_ns >= 0.39e9
    assert drain.errors == Counter({unanswered(0.3): 3})
    assert drain.success_count == 0 and (drain.error_latency_ns >= 0.3e9).all()


def test_with_a_deadline_hung_requests_end_as_timeouts_before_the_drain_runs_out():
    async def scenario():
        load = LocalLoad(engine(StopsAnswering(answers=0), request_timeout_ms=200))
        await load.start(ConcurrencySchedule(2), None)
        await asyncio.sleep(0.05)
        await load.close_window(monotonic_ns())
        started = time.monotonic()
        drain = await load.stop()
        return drain, time.monotonic() - started

    drain, stop_s = asyncio.run(scenario())
    assert stop_s < 0.2 + DEADLINE_GRACE_S
    assert drain.errors == Counter({timeout(200): 2}) and drain.outstanding == 0


def test_an_open_loop_drain_counts_every_request_it_abandons():
    async def scenario():
        load = LocalLoad(engine(StopsAnswering(answers=0), drain_s=0.2))
        await load.start(RateSchedule(100), None)
        await asyncio.sleep(0.2)
        await load.close_window(monotonic_ns())
        return await load.stop()

    drain = asyncio.run(scenario())
    assert drain.outstanding >= 10 and drain.errors == Counter({unanswered(0.2): drain.outstanding})
    assert drain.success_count == 0


def test_abandon_records_nothing():
    async def scenario():
        load = LocalLoad(engine(StopsAnswering(answers=0)))
        await load.start(ConcurrencySchedule(2), None)
        await asyncio.sleep(0.05)
        await load.abandon()
        return load, await load.close_window(monotonic_ns())

    load, window = asyncio.run(scenario())
    assert load.in_flight == 0 and window.error_count == 0 and window.outstanding == 0


def test_drain_failures_join_the_errors_but_drain_successes_do_not_join_the_figures():
    def window(latencies, errors, start_ns=0, end_ns=10**9):
        return WindowSamples(start_ns, end_ns, np.array(latencies, np.int64), np.zeros(len(latencies), np.int64),
                             np.zeros(len(latencies), np.int64), np.full(sum(errors.values()), 5 * 10**9, np.int64),
                             Counter(errors))  # fmt: skip

    measured = window([10**6] * 8, {http_status(500, "boom"): 2})
    drain = window([10**6] * 3, {unanswered(10): 1}, 10**9, 11 * 10**9)
    stats = client_stats([measured], 1, drain=drain)
    assert stats.request_count == 8 and stats.duration_s == 1.0 and stats.throughput_infer_per_s == 8.0
    assert stats.error_count == 3 and stats.error_rate == pytest.approx(3 / 11)
    assert {kind.kind: kind.count for kind in stats.error_kinds} == {"HTTP 500": 2, "unanswered": 1}


def _level(transport: Transport, policy: WindowPolicy, concurrency: int = 2, drain_s: float = 0.5, schedule=None):
    """measure_level over the fake transport (of `schedule`, else closed loop at `concurrency`), with a
    server whose statistics never change."""
    statistics = parse_statistics({"model_stats": [{"name": "m", "version": "1"}]})

    async def snapshot(boundary_ns):
        return statistics

    async def scenario():
        load = LocalLoad(engine(transport, drain_s=drain_s))
        started = time.monotonic()
        level = await measure_level(load, schedule or ConcurrencySchedule(concurrency), policy, snapshot, ModelTree("m", "1"), 1)
        return level, time.monotonic() - started

    return asyncio.run(scenario())


def test_a_level_against_a_server_that_stops_answering_ends_in_bounded_time():
    policy = WindowPolicy(interval_ms=200, max_trials=3)
    level, took_s = _level(StopsAnswering(answers=4), policy)
    assert took_s < 3 * 0.2 + 0.5 + 0.5
    assert not level.stable and len(level.windows) == 3
    assert [w.request_count for w in level.windows] == [4, 0, 0]
    assert [w.stalled for w in level.windows] == [False, True, True]
    # Sent in the first window, after its answers: out for at least the two windows since, at most all three.
    oldest_s, windows_s = level.windows[-1].oldest_outstanding_s, [w.duration_s for w in level.windows]
    assert level.windows[-1].outstanding == 2 and sum(windows_s[1:]) <= oldest_s <= sum(windows_s)
    drain = level.drain
    assert (drain.in_flight, drain.answered, drain.errors, drain.unanswered) == (2, 0, 2, 2)
    assert drain.bound_s == 0.5 and 0.5 <= drain.duration_s < 1.0 and drain.unanswered_age_s >= 1.1
    assert level.client.error_count == 2 and level.client.error_kinds[0].kind == "unanswered"


def test_a_replay_against_a_server_that_stops_answering_ends_in_bounded_time():
    from loadgen.replay import ReplayEntry
    from loadgen.schedule import ReplaySchedule

    # 10 requests over 0.45 s; the server answers 4, then none: the replay never finishes by itself.
    entries = [ReplayEntry(offset_ns=i * 50_000_000, model=None, input=None, batch_size=None, line=i + 1) for i in range(10)]
    replay = ReplaySchedule(entries, period_ns=500_000_000)
    level, took_s = _level(StopsAnswering(answers=4), WindowPolicy(interval_ms=200, max_trials=3), drain_s=0.5, schedule=replay)
    # Its level ends one drain bound after the last request was due (within a window), then drains once more.
    assert took_s < 0.45 + 0.5 + 0.2 + 0.5 + 0.5
    assert level.stable and level.merged_windows == len(level.windows) >= 4  # every window, -r does not cut it
    assert level.client.request_count == 4 and level.drain.unanswered == 6
    assert level.client.error_count == 6 and level.client.error_kinds[0].kind == "unanswered"


def test_a_count_window_that_stops_filling_closes_at_the_stall_bound():
    policy = WindowPolicy(mode=COUNT_WINDOWS, request_count=50, interval_ms=100, max_trials=3)
    level, took_s = _level(StopsAnswering(answers=60), policy, drain_s=0.2)
    # window 1 fills with 50 answers; the next two each wait the stall bound (max(-p, 1 s)) for nothing
    assert took_s < 1.0 + 2 * 1.0 + 0.2 + 1.0
    assert [w.request_count for w in level.windows] == [50, 10, 0]
    assert [w.stalled for w in level.windows] == [False, False, True]
    assert level.drain.unanswered == 2


def test_the_recorder_closes_a_window_with_what_is_still_out():
    recorder = SampleRecorder(0)
    window = recorder.close_window(10**9, outstanding=4, oldest_outstanding_ns=7 * 10**8)
    assert (window.outstanding, window.oldest_outstanding_ns) == (4, 7 * 10**8)


class ChecksAfterAnswering(StopsAnswering):
    """Answers after 30 ms, of which the last 20 ms were its own check of the response (check_ns)."""

    async def infer(self, prepared) -> InferOutcome:
        await asyncio.sleep(0.03)
        return InferOutcome(1_000, 2_000, None, check_ns=20_000_000)


def test_checking_a_response_is_not_part_of_its_latency():
    async def go():
        engine = LoadEngine(ChecksAfterAnswering(answers=0), [object()])
        recorder = SampleRecorder(monotonic_ns())
        engine.start(ConcurrencySchedule(1), recorder)
        await asyncio.sleep(0.2)
        await engine.stop()
        return recorder.close_window(monotonic_ns())

    window = asyncio.run(go())
    assert window.latency_ns.size >= 3
    assert (window.latency_ns >= 10_000_000).all() and np.median(window.latency_ns) < 25_000_000


class Streams(FakeTransport):
    """Streams `responses` responses to each request: the first `first_s` after it came, then one every
    `gap_s`; with `timeout_ms`, it ends a request at that deadline itself, as the real transports do,
    keeping the responses so far."""

    def __init__(self, responses: int, first_s: float, gap_s: float, timeout_ms: float | None = None) -> None:
        self.responses, self.first_s, self.gap_s, self.timeout_ms = responses, first_s, gap_s, timeout_ms
        self.cancelled = 0

    async def infer(self, prepared, number=None) -> InferOutcome:
        raise AssertionError("a streaming engine streams")

    async def stream(self, prepared, number=None) -> StreamOutcome:
        started, times = time.monotonic(), []
        try:
            for i in range(self.responses):
                due = started + self.first_s + i * self.gap_s
                if self.timeout_ms is not None and due > started + self.timeout_ms / 1e3:
                    await asyncio.sleep(started + self.timeout_ms / 1e3 - time.monotonic())
                    return StreamOutcome(1_000, 2_000, tuple(times), (1,) * len(times), timeout(self.timeout_ms))
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                times.append(monotonic_ns())
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return StreamOutcome(1_000, 2_000, tuple(times), (1,) * len(times))


def _streamed_window(transport: Streams, schedule, seconds: float, **engine_options) -> tuple[WindowSamples, LoadEngine]:
    async def go():
        engine = LoadEngine(transport, [object()], streaming=True, **engine_options)
        recorder = SampleRecorder(monotonic_ns())
        engine.start(schedule, recorder)
        await asyncio.sleep(seconds)
        await engine.stop()
        return recorder.close_window(monotonic_ns()), engine

    return asyncio.run(go())


def test_a_streaming_engine_records_every_response_of_each_request():
    window, engine = _streamed_window(Streams(4, first_s=0.03, gap_s=0.01), ConcurrencySchedule(2), 0.5)
    count = window.success_count
    assert count >= 6 and engine.completed == engine.succeeded == count
    assert window.ttft_ns.size == count and window.response_count == 4 * count and window.token_count == 4 * count
    assert window.itl_ns.size == 3 * count
    assert 0.03e9 <= np.median(window.ttft_ns) < 0.045e9 and 0.01e9 <= np.median(window.itl_ns) < 0.02e9
    # The latency runs to the stream's end, after its last response (due 60 ms after the send; asyncio may
    # wake a millisecond early).
    assert (window.latency_ns > window.ttft_ns).all() and (window.latency_ns >= 0.059e9).all()


def test_a_streamed_request_meets_the_transports_deadline_not_the_engines():
    """The engine would cancel a request at its deadline and lose its responses: for a stream it leaves
    the deadline to the transport, whose timeout keeps them (a failure; not in the figures)."""
    transport = Streams(10, first_s=0.02, gap_s=0.02, timeout_ms=90)
    window, engine = _streamed_window(transport, ConcurrencySchedule(2), 0.5, request_timeout_ms=60)
    assert transport.cancelled == 0
    assert window.success_count == 0 and window.error_count >= 4 and window.errors == Counter({timeout(90): window.error_count})
    assert (window.error_latency_ns >= 0.09e9).all()  # the transport's deadline (90 ms), not the engine's 60 ms


def test_in_open_loop_a_streams_times_run_from_its_intended_send():
    """One request out at a time (--max-inflight 1) at 50/s, each taking 40 ms: requests wait for the slot
    and leave later and later, which their first response's time from the intended send shows."""
    window, _ = _streamed_window(Streams(2, first_s=0.03, gap_s=0.01), RateSchedule(50), 0.6, max_inflight=1)
    assert window.success_count >= 8 and window.held_back > 0
    assert np.median(window.sent_latency_ns) < 0.06e9  # from the actual send: the stream's own 40 ms
    assert window.ttft_ns.max() > 0.1e9 and window.ttft_ns.max() > window.latency_ns.min()
    assert (window.ttft_ns < window.latency_ns).all() and (np.diff(window.ttft_ns[:8]) > 0).all()


class Records(FakeTransport):
    """Answers at once, keeping which prepared request each send carried."""

    def __init__(self) -> None:
        self.sent = []

    async def infer(self, prepared) -> InferOutcome:
        self.sent.append(prepared)
        return InferOutcome(1_000, 1_000)


def test_a_replay_names_the_prepared_request_and_the_others_keep_the_round_robin():
    from loadgen.replay import ReplayEntry
    from loadgen.schedule import ReplaySchedule

    async def scenario():
        transport = Records()
        replayed = LoadEngine(transport, ["a", "b", "c"])
        inputs = [2, None, None, 0, None]
        entries = [ReplayEntry(step * 1_000_000, None, index, None, step + 1) for step, index in enumerate(inputs)]
        await replayed.start(ReplaySchedule(entries, period_ns=5_000_000), SampleRecorder(monotonic_ns()))  # finite: ends by itself
        return transport.sent, replayed.completed

    sent, completed = asyncio.run(scenario())
    assert sent == ["c", "a", "b", "a", "c"] and completed == 5


def test_serial_open_loop_sequences_against_a_server_that_stops_answering_end_in_bounded_time():
    from loadgen.schedule import RateSchedule
    from loadgen.schedule.sequences import OpenLoopSequenceSchedule
    from loadgen.sequences import SequencePlan

    # Both sequences end up with a request never answered: every later request waits for a free one, forever.
    schedule = OpenLoopSequenceSchedule(RateSchedule(100), 2, True, SequencePlan(length=5, variation_pct=0), seed=1)
    level, took_s = _level(StopsAnswering(answers=4), WindowPolicy(interval_ms=200, max_trials=3), schedule=schedule)
    assert took_s < 3 * 0.2 + 0.5 + 0.5
    assert level.client.request_count == 4 and level.drain.unanswered == 2
    assert level.sequences is not None and level.sequences.completed == 0 and level.sequences.cut_short == 2
