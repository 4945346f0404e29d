"""--profile-export-file: every request's timestamps in perf_analyzer's profile export JSON
(docs/profile_export.md), streamed to disk window by window as the run goes.

Each request becomes its JSON object when it completes (`request_formatter`, on the engine's hot
path, in whichever process sent it); the window that closes hands its requests over
(samples.RequestLines) and `ProfileExport` appends them to the open experiment, so the file holds
every request while memory holds at most a window's worth (a mix's models' windows wait in
spools on disk until their level ends: ProfileExport). Times are ns since the Unix epoch, as
perf_analyzer's (std::chrono::system_clock): each process turns its monotonic clock into that by
one offset taken when its load is prepared.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from loadgen import __version__
from loadgen.errors import LoadgenError
from loadgen.listener import RunListener
from loadgen.outcome import RequestError
from loadgen.samples import RequestFormat, WindowRequests
from loadgen.schedule.open_loop import OpenLoopSchedule

if TYPE_CHECKING:
    from loadgen.config import RunConfig
    from loadgen.load import Load
    from loadgen.measurement import LevelResult
    from loadgen.result import RunResult
    from loadgen.schedule.base import Schedule

# perf_analyzer's names for a Triton server (HTTP or gRPC) and its default endpoint.
SERVICE_KIND = "triton"
ENDPOINT = ""
WRITE_BUFFER_BYTES = 1 << 20


def epoch_offset_ns() -> int:
    """What turns this process's monotonic ns into ns since the Unix epoch. Taken once, so that
    durations between exported times stay the monotonic clock's even if the wall clock is stepped."""
    return time.time_ns() - time.monotonic_ns()


def request_formatter(offset_ns: int) -> RequestFormat:
    """One completed request as its JSON object: perf_analyzer's keys (`timestamp` is the actual
    send; a failed request's one response timestamp is when it ended; a streamed request's are
    its `response_ns`, each response that carried outputs, then a failure's end), then loadgen's own
    `intended_timestamp` (open loop; null in closed loop) and `error` (its kind, as summary.json
    names it; null on success). Monotonic ns in, epoch ns out."""

    def request_json(
        intended_ns: int | None, sent_ns: int, end_ns: int, error: RequestError | None, response_ns: tuple[int, ...] = ()
    ) -> str:
        intended = "null" if intended_ns is None else intended_ns + offset_ns
        failure = "null" if error is None else json.dumps(error.label)
        if response_ns:
            ends = (*response_ns, end_ns) if error is not None else response_ns
            responses = ",".join(str(t + offset_ns) for t in ends)
        else:
            responses = end_ns + offset_ns
        return (
            f'{{"timestamp":{sent_ns + offset_ns},"request_inputs":{{}},"response_timestamps":[{responses}],'
            f'"response_outputs":[],"intended_timestamp":{intended},"error":{failure}}}'
        )

    return request_json


def _compact(value: object) -> str:
    """JSON without spaces, as perf_analyzer writes it."""
    return json.dumps(value, separators=(",", ":"))


def experiment(schedule: Schedule) -> dict[str, str | int | float]:
    """perf_analyzer's `experiment`: a concurrency (a whole number) or a request rate (a float; a
    replay's is its recording's, not its speed)."""
    if isinstance(schedule, OpenLoopSchedule):
        return {"mode": "request_rate", "value": float(schedule.target_rate_per_s)}
    return {"mode": "concurrency", "value": int(schedule.value)}


@dataclass
class _Experiment:
    """An experiment being written: its opening text, its windows' bounds so far and its requests
    so far, and, in a mix, the spool its requests wait in until the level ends (one model's go
    straight to the export)."""

    schedule: Schedule
    opening: str
    spool: IO[str] | None = None
    boundaries_ns: list[int] = field(default_factory=list)
    requests: int = 0


class ProfileExport(RunListener):
    """Writes the export as the run goes: opened when the run starts, each level's experiment as its
    windows close, and closed whatever ended the run, so the file is whole JSON with every level
    that ran (a level cut short keeps the windows it closed). Nothing is kept but the level's
    window boundaries.

    A mix (`models`, in the scenario's order) has one experiment per model per level, each naming
    its model. Its models' windows close together, so their requests would interleave in one
    array: each model's level goes to a spool beside the export, an unnamed temporary file the
    system removes however the run ends, and is appended as its experiment when the level ends.
    """

    def __init__(self, path: Path, models: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.models = tuple(models)
        self._file: IO[str] | None = None
        self._experiments = 0  # opened in the file
        self._level: list[_Experiment] = []  # the open level's, one per model in level_started's order
        self._finished = 0  # the open level's models told level_finished

    def _failure(self, exc: OSError) -> LoadgenError:
        return LoadgenError(f"cannot write --profile-export-file {self.path}: {exc.strerror or exc}")

    def _write(self, text: str, flush: bool = False, to: IO[str] | None = None) -> None:
        """`text` to the export, or to a spool `to`."""
        file = self._file if to is None else to
        try:
            file.write(text)
            if flush:  # a window's worth at a time, so the file on disk follows the run
                file.flush()
        except OSError as exc:
            raise self._failure(exc) from None

    def run_started(self, config: RunConfig) -> None:
        try:
            self._file = open(self.path, "w", encoding="utf-8", buffering=WRITE_BUFFER_BYTES)
        except OSError as exc:
            raise self._failure(exc) from None
        self._write('{"experiments":[')

    def level_started(self, schedule: Schedule, load: Load) -> None:
        named = f'"model":{json.dumps(self.models[len(self._level)])},' if self.models else ""
        opened = _Experiment(schedule, f'{{"experiment":{_compact(experiment(schedule))},{named}"requests":[')
        if not self.models:
            self._open(opened)
        else:
            try:  # no name in the folder (or unlinked at once where the system cannot): nothing to remove
                opened.spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent, prefix=f".{self.path.name}.")
            except OSError as exc:
                raise self._failure(exc) from None
        self._level.append(opened)

    def _open(self, opened: _Experiment) -> None:
        self._write(("," if self._experiments else "") + "\n" + opened.opening)
        self._experiments += 1

    def window_requests(self, schedule: Schedule, requests: WindowRequests) -> None:
        current = self._part(schedule)
        if not current.boundaries_ns:
            current.boundaries_ns.append(requests.start_ns)
        current.boundaries_ns.append(requests.end_ns)
        if requests.count:
            self._write(("," if current.requests else "") + "\n" + requests.json, flush=current.spool is None, to=current.spool)
            current.requests += requests.count

    def _part(self, schedule: Schedule) -> _Experiment:
        """The open experiment `schedule`'s requests go to: one model's only one; a mix's, its model's
        (by identity: two models at the same value have equal schedules)."""
        if not self.models:
            return self._level[-1]
        return next(opened for opened in self._level if opened.schedule is schedule)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        self._finished += 1
        if self._finished >= len(self._level):  # a mix's level ends with its last model's
            self._close_level()

    def _close_level(self) -> None:
        """Each of the level's experiments written whole, a mix's from its spool; the spools closed."""
        try:
            for current in self._level:
                if current.spool is not None:
                    self._open(current)
                    self._copy(current.spool)
                self._write(f'\n],"window_boundaries":{_compact(current.boundaries_ns)}}}', flush=True)
        finally:
            for current in self._level:
                if current.spool is not None:
                    current.spool.close()
            self._level, self._finished = [], 0

    def _copy(self, spool: IO[str]) -> None:
        try:
            spool.seek(0)
            while chunk := spool.read(WRITE_BUFFER_BYTES):
                self._file.write(chunk)
        except OSError as exc:
            raise self._failure(exc) from None

    def run_finished(self, result: RunResult) -> None:
        if self._file is None:
            return
        try:
            self._close_level()
            self._write(f'\n],"version":{json.dumps(__version__)},"service_kind":"{SERVICE_KIND}","endpoint":"{ENDPOINT}"}}\n')
        finally:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                raise self._failure(exc) from None
