"""A live progress display for the level being measured, on a stream the caller chooses."""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TextIO

from loadgen.listener import RunListener
from loadgen.load import Load
from loadgen.measurement import LevelResult, WindowFigures, outstanding_text
from loadgen.result import RunResult
from loadgen.schedule.base import Schedule

REFRESH_S = 0.5


class Progress(RunListener):
    """On a terminal, one line redrawn twice a second; elsewhere (CI logs), one line per window."""

    def __init__(self, stream: TextIO, max_trials: int) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._max_trials = max_trials
        self._ticker: asyncio.Task | None = None
        self._status = ""
        self._finite = False  # the level's schedule is a replay played once

    def _line(self, text: str, final: bool) -> None:
        if self._live:
            self._stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self._stream.write(text + "\n")
        self._stream.flush()

    def _window(self, schedule: Schedule, index: int) -> str:
        """Which window: of at most --max-trials, or of a replay played once, which runs until it ends."""
        of = "" if schedule.finite else f"/{self._max_trials}"
        return f"{schedule.label.lower()} {schedule.value:g}: window {index}{of}"

    def level_started(self, schedule: Schedule, load: Load) -> None:
        self._status = self._window(schedule, 1)
        self._finite = schedule.finite
        if self._live:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(load))

    async def _tick(self, load: Load) -> None:
        started, done_before = monotonic(), load.completed
        while True:
            await asyncio.sleep(REFRESH_S)
            rate = (load.completed - done_before) / (monotonic() - started)
            self._line(f"{self._status} | {rate:,.0f} req/s | {load.in_flight} in flight", final=False)

    def window_closed(self, schedule: Schedule, index: int, figures: WindowFigures) -> None:
        if figures.stalled:  # not "0.0 infer/s, latency 0 us": the server is not answering
            seen = outstanding_text(figures.outstanding, figures.oldest_outstanding_s)
        else:
            seen = f"{figures.throughput_infer_per_s:,.1f} infer/s, latency {figures.latency_us:,.0f} us"
            if figures.error_count:
                seen += f", {figures.error_count} error{'s' if figures.error_count != 1 else ''}"
        self._line(f"{self._window(schedule, index)} {seen}", final=True)
        self._status = self._window(schedule, index + 1)

    def _stop_ticking(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        self._stop_ticking()
        if self._finite:  # measured whole, not until stable
            verdict = "replayed in"
        else:
            verdict = f"{'stable' if level.stable else 'NOT stable'} after"
        self._line(f"{level.label.lower()} {level.value:g}: {verdict} {len(level.windows)} windows", final=True)

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}", final=True)

    def run_finished(self, result: RunResult) -> None:
        self._stop_ticking()  # a level cut short: its line must not be redrawn over the closing report
