"""A real sweep, from its first level to its last report, over an in-process transport that plays a
one-model Triton: what its listeners hear, in what order, and what a failing listener costs the run."""

from __future__ import annotations

import asyncio

import pytest

from loadgen.config import prepare
from loadgen.errors import LoadgenError
from loadgen.listener import Listeners, RunListener
from loadgen.live_metrics import LiveMetrics
from loadgen.options import build_config
from loadgen.result import COMPLETE, FAILED, RUNNING
from loadgen.runner import sweep_over
from test_engine import StopsAnswering


class FakeTriton(StopsAnswering):
    """Model "m" version 1, answering every request after a millisecond, its statistics counting them."""

    def __init__(self) -> None:
        super().__init__(answers=10**9)
        self.answered = 0

    async def infer(self, prepared):
        outcome = await super().infer(prepared)
        self.answered += 1
        return outcome

    async def server_metadata(self):
        return {"name": "triton", "version": "fake"}

    async def model_metadata(self, model, version=""):
        return {"name": model, "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": [{"name": "y"}]}

    async def model_config(self, model, version=""):
        return {"name": model, "max_batch_size": 8}

    async def model_statistics(self, model="", version=""):
        n = self.answered
        stats = {"success": {"count": n, "ns": n * 10**6}}
        return {"model_stats": [{"name": "m", "version": "1", "inference_count": n, "execution_count": n, "inference_stats": stats}]}


class Recorder(RunListener):
    """Every event, with what a test checks of it."""

    def __init__(self, fails_in: str | None = None) -> None:
        self.events: list[tuple] = []
        self.fails_in = fails_in

    def _heard(self, *event) -> None:
        self.events.append(event)
        if event[0] == self.fails_in:
            raise OSError("disk full")

    def run_started(self, config):
        self._heard("run_started", config.target.model_name)

    def level_started(self, schedule, load):
        self._heard("level_started", schedule.value)

    def window_closed(self, schedule, index, figures):
        self._heard("window_closed", schedule.value, index)

    def level_finished(self, level, so_far):
        self._heard("level_finished", level.value, so_far.status, [measured.value for measured in so_far.levels])

    def warning(self, message):
        self._heard("warning", message)

    def run_finished(self, result):
        self._heard("run_finished", result.status, [measured.value for measured in result.levels])


# Three windows a level, stable or not (--max-trials 3), of 100 ms each.
OPTIONS = {"model-name": "m", "url": "localhost:8000", "concurrency-range": "1:2", "measurement-interval": 100, "max-trials": 3}


def sweep(listeners, options=None, metrics_at=None):
    transport = FakeTriton()
    config = prepare(build_config(OPTIONS | (options or {})))
    return transport, asyncio.run(sweep_over(config, transport, Listeners(listeners), metrics_at))


def test_the_listeners_hear_the_run_in_order_and_each_level_as_it_grows_the_run():
    recorder = Recorder()
    _, result = sweep([recorder])
    assert result.status == COMPLETE and [level.value for level in result.levels] == [1, 2]
    assert recorder.events == [
        ("run_started", "m"),
        ("level_started", 1), ("window_closed", 1, 1), ("window_closed", 1, 2), ("window_closed", 1, 3),
        ("level_finished", 1, RUNNING, [1]),
        ("level_started", 2), ("window_closed", 2, 1), ("window_closed", 2, 2), ("window_closed", 2, 3),
        ("level_finished", 2, RUNNING, [1, 2]),
        ("run_finished", COMPLETE, [1, 2]),
    ]  # fmt: skip


def test_a_listener_that_asks_hears_of_every_request_the_engine_completes():
    live = LiveMetrics("m")
    transport, result = sweep([Recorder(), live])
    success = live.registry.get_sample_value("loadgen_requests_total", {"model": "m", "outcome": "success"})
    assert success == transport.answered > 0  # the windows' requests, and those before and after them
    assert success >= sum(level.client.request_count for level in result.levels)


def test_a_listener_failing_mid_run_fails_it_and_every_listener_still_hears_the_end():
    first, failing, last = Recorder(), Recorder(fails_in="level_finished"), Recorder()
    with pytest.raises(OSError, match="disk full"):
        sweep([first, failing, last])
    assert first.events[-2:] == [("level_finished", 1, RUNNING, [1]), ("run_finished", FAILED, [1])]
    assert last.events[-2:] == [("window_closed", 1, 3), ("run_finished", FAILED, [1])]  # never told of level 1
    assert ("level_started", 2) not in first.events


def test_a_listener_failing_to_finish_loses_only_its_own_turn():
    failing, after = Recorder(fails_in="run_finished"), Recorder()
    with pytest.raises(LoadgenError, match="some reports could not be written: Recorder: OSError: disk full"):
        sweep([failing, after])
    assert after.events[-1] == ("run_finished", COMPLETE, [1, 2])


def test_a_failing_metrics_scrape_is_heard_as_a_warning_and_kept():
    recorder = Recorder()
    # Nothing listens on port 9 (discard) here: every scrape fails, and the run goes on.
    _, result = sweep([recorder], {"collect-metrics": True, "concurrency-range": "1"}, "http://127.0.0.1:9/metrics")
    warnings = [event[1] for event in recorder.events if event[0] == "warning"]
    assert warnings and warnings[0] in result.warnings
