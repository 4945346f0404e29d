"""The fan-out over a run's listeners: order, a failing listener's reach, and who hears of each request."""

from __future__ import annotations

import pytest

from loadgen.errors import LoadgenError
from loadgen.listener import Listeners, RunListener
from loadgen.live_metrics import LiveMetrics
from loadgen.outcome import http_status
from loadgen.schedule import ConcurrencySchedule
from results import level, run


class Recorder(RunListener):
    """Writes each event it hears into a log shared with the other listeners."""

    def __init__(self, name: str, log: list, fails_in: str | None = None) -> None:
        self.name, self.log, self.fails_in = name, log, fails_in

    def _heard(self, event: str) -> None:
        self.log.append((self.name, event))
        if event == self.fails_in:
            raise OSError(f"{self.name} cannot write")

    def run_started(self, config):
        self._heard("run_started")

    def level_started(self, schedule, load):
        self._heard("level_started")

    def window_closed(self, schedule, index, figures):
        self._heard("window_closed")

    def level_finished(self, level, so_far):
        self._heard("level_finished")

    def warning(self, message):
        self._heard("warning")

    def run_finished(self, result):
        self._heard("run_finished")


def every_event(listener: RunListener) -> None:
    result = run(level(2))
    listener.run_started(result.config)
    listener.level_started(ConcurrencySchedule(2), None)
    listener.window_closed(ConcurrencySchedule(2), 1, None)
    listener.warning("a scrape failed")
    listener.level_finished(result.levels[0], result)
    listener.run_finished(result)


def test_each_listener_hears_each_event_in_order():
    log: list = []
    every_event(Listeners([Recorder("a", log), RunListener(), Recorder("b", log)]))
    events = ["run_started", "level_started", "window_closed", "warning", "level_finished", "run_finished"]
    assert log == [(name, event) for event in events for name in ("a", "b")]


def test_every_listener_finishes_and_the_failures_are_raised_together_after():
    log: list = []
    listeners = Listeners([Recorder("a", log, fails_in="run_finished"), Recorder("b", log), Recorder("c", log, fails_in="run_finished")])
    with pytest.raises(LoadgenError) as raised:
        listeners.run_finished(run(level(2)))
    assert log == [("a", "run_finished"), ("b", "run_finished"), ("c", "run_finished")]
    assert str(raised.value) == (
        "the run finished but some reports could not be written: "
        "Recorder: OSError: a cannot write; Recorder: OSError: c cannot write"
    )


def test_a_listener_failing_before_the_end_fails_the_event_there():
    log: list = []
    listeners = Listeners([Recorder("a", log, fails_in="level_finished"), Recorder("b", log)])
    result = run(level(2))
    with pytest.raises(OSError, match="a cannot write"):
        listeners.level_finished(result.levels[0], result)
    assert log == [("a", "level_finished")]  # as any failure in a run would: the run ends, its end is heard


def live_counts(live: LiveMetrics) -> tuple[float | None, ...]:
    return tuple(live.registry.get_sample_value("loadgen_requests_total", {"model": "m", "outcome": outcome}) for outcome in ("success", "error"))


def test_requests_go_only_to_the_listeners_that_ask_for_them():
    assert Listeners([RunListener(), Recorder("a", [])]).request_completed is None

    live = LiveMetrics("m")
    alone = Listeners([Recorder("a", []), live])
    assert alone.request_completed == live.request_completed  # the engine calls it with no fan-out in between
    alone.request_completed(2_000_000, None)
    assert live_counts(live) == (1.0, 0.0)

    first, second = LiveMetrics("m"), LiveMetrics("m")
    both = Listeners([first, Recorder("a", []), second])
    both.request_completed(2_000_000, None)
    both.request_completed(3_000_000, http_status(500, "boom"))
    assert live_counts(first) == live_counts(second) == (1.0, 1.0)
