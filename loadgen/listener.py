"""What observes a run as it happens: the console, the report files, the progress line, live metrics.

The runner tells one listener, a `Listeners` fan-out over all of them, of the run's start and end;
the sweep tells it of each level, window and warning; the engine tells it of each request, if any
listener asked for them; with --profile-export-file, each window hands it its requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from loadgen.errors import LoadgenError

if TYPE_CHECKING:
    from loadgen.config import RunConfig
    from loadgen.load import Load
    from loadgen.measurement import LevelResult, WindowFigures
    from loadgen.outcome import RequestError
    from loadgen.result import RunResult
    from loadgen.samples import WindowRequests
    from loadgen.schedule.base import Schedule


class RunListener:
    """Every hook does nothing unless overridden.

    Writers of files that are cheap to write write them again at every `level_finished`, from
    `so_far`, so a crash, a kill or a dead server never loses the levels that finished.
    """

    # A listener that wants every completed request sets this to a method (latency_ns, error or
    # None). It runs on the engine's hot path: it should do no more than count.
    request_completed: Callable[[int, RequestError | None], None] | None = None

    def run_started(self, config: RunConfig) -> None:
        """The run is about to measure its first level."""

    def level_started(self, schedule: Schedule, load: Load) -> None:
        """A level's load is about to start."""

    def window_closed(self, schedule: Schedule, index: int, figures: WindowFigures) -> None:
        """The level's window number `index` (from 1) has closed."""

    def window_requests(self, schedule: Schedule, requests: WindowRequests) -> None:
        """The requests that completed in the window that just closed (with --profile-export-file only:
        the load keeps them then), told before `window_closed`."""

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        """A level has been measured; `so_far` is the run up to it (status "running")."""

    def warning(self, message: str) -> None:
        """Something the run goes on despite (the result keeps it in its warnings too)."""

    def run_finished(self, result: RunResult) -> None:
        """The run is over, whether complete, failed or interrupted: `result` is all of it."""


class Listeners(RunListener):
    """Tells each of `listeners`, in order, of every event.

    A listener that fails in a hook fails the run, as a failure anywhere in it would; except in
    `run_finished`, where every listener gets its turn whatever the others do, so one that fails
    loses only its own files; the failures are raised together afterwards.
    """

    def __init__(self, listeners: Sequence[RunListener]) -> None:
        self._listeners = tuple(listeners)
        wanted = [listener.request_completed for listener in self._listeners if listener.request_completed is not None]
        if len(wanted) == 1:
            self.request_completed = wanted[0]  # called directly: no fan-out on the hot path
        elif wanted:

            def request_completed(latency_ns: int, error: RequestError | None) -> None:
                for completed in wanted:
                    completed(latency_ns, error)

            self.request_completed = request_completed

    def run_started(self, config: RunConfig) -> None:
        for listener in self._listeners:
            listener.run_started(config)

    def level_started(self, schedule: Schedule, load: Load) -> None:
        for listener in self._listeners:
            listener.level_started(schedule, load)

    def window_closed(self, schedule: Schedule, index: int, figures: WindowFigures) -> None:
        for listener in self._listeners:
            listener.window_closed(schedule, index, figures)

    def window_requests(self, schedule: Schedule, requests: WindowRequests) -> None:
        for listener in self._listeners:
            listener.window_requests(schedule, requests)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        for listener in self._listeners:
            listener.level_finished(level, so_far)

    def warning(self, message: str) -> None:
        for listener in self._listeners:
            listener.warning(message)

    def run_finished(self, result: RunResult) -> None:
        failures = []
        for listener in self._listeners:
            try:
                listener.run_finished(result)
            except Exception as exc:  # noqa: BLE001 - raised once all the others have had their turn
                failures.append(f"{type(listener).__name__}: {type(exc).__name__}: {exc}")
        if failures:
            raise LoadgenError(f"the run finished but some reports could not be written: {'; '.join(failures)}")
