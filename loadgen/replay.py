"""--schedule-file: a recording of requests, read into a plan to replay, and its checks against the run.

The file is JSON lines, one request a line: `{"offset_ms": 12.5, "model": "resnet", "input": 3,
"batch_size": 1}`. Only `offset_ms` is required: the request's time from the recording's start,
a finite number of ms, 0 or more. `model` names the model the request goes to (no model: the
run's own), `input` the prepared request it sends by index (with -b 1, the entry of --input-data;
no input: the next in round robin), `batch_size` the run's batch size. Blank lines are ignored.
A bad line is one UsageError naming the file, the line and the fix.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError

KEYS = ("offset_ms", "model", "input", "batch_size")
EXAMPLE = '{"offset_ms": 12.5, "model": "my_model", "input": 0}'
# The longest a replay may last: its times are int64 ns on the monotonic clock (numpy's samples).
MAX_REPLAY_DAYS = 30


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    """One recorded request. `line` is its line in the file, for the messages of later checks."""

    offset_ns: int  # from the recording's start
    model: str | None  # None: the run's model (every model of the run, with several: see ReplayPlan.for_model)
    input: int | None  # the prepared request it sends; None: the next in round robin
    batch_size: int | None
    line: int


@dataclass(frozen=True)
class ReplayPlan:
    """A schedule file's requests, sorted by offset; requests at the same offset keep the file's
    order (a stable sort), so a file already in time order is replayed line by line."""

    source: str  # the file, as the user named it
    entries: tuple[ReplayEntry, ...]

    @property
    def mean_gap_ns(self) -> float:
        """The recording's mean time between consecutive requests (above 0: read_schedule checks)."""
        return (self.entries[-1].offset_ns - self.entries[0].offset_ns) / (len(self.entries) - 1)

    @property
    def period_ns(self) -> int:
        """How far apart the passes of a looped replay start: the recording's span and one mean gap,
        so each pass's first request comes one mean gap after the previous pass's last. Also the
        time the finite recording's rate is reckoned over (ReplaySchedule.target_rate_per_s)."""
        return round(self.entries[-1].offset_ns - self.entries[0].offset_ns + self.mean_gap_ns)

    def for_model(self, name: str, only_model: bool) -> tuple[ReplayEntry, ...]:
        """The requests that go to model `name`: those naming it and, when it is the run's only
        model (`only_model`), those naming none."""
        return tuple(entry for entry in self.entries if entry.model == name or (only_model and entry.model is None))


def read_schedule(path: Path) -> ReplayPlan:
    """The plan a --schedule-file holds (module docstring); needs requests at two different times
    at least, since a replay's rate and a looped replay's period are reckoned from its span."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --schedule-file {source}: {exc.strerror}") from None
    except ValueError:  # not UTF-8, or a NUL in a path from a config file
        raise UsageError(f"cannot read --schedule-file {source}: give a UTF-8 text file of JSON lines, e.g. {EXAMPLE}") from None
    # Lines end at \n alone (JSON lines), as an editor numbers them: splitlines would also split at U+2028 in a string.
    entries = [_entry(source, number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not entries:
        raise UsageError(f"--schedule-file {source} holds no requests: give one JSON object a line, e.g. {EXAMPLE}")
    entries.sort(key=lambda entry: entry.offset_ns)
    if entries[-1].offset_ns == entries[0].offset_ns:
        at = f"{entries[0].offset_ns / 1e6:g} ms"
        raise UsageError(f"--schedule-file {source}: its {len(entries)} request{'s all fall' if len(entries) > 1 else ' falls'} "
                         f"at {at}: a replay needs requests at two different times at least")  # fmt: skip
    return ReplayPlan(source, tuple(entries))


def _entry(source: str, number: int, line: str) -> ReplayEntry:
    where = f"--schedule-file {source} line {number}"
    try:
        fields = json.loads(line)
    except ValueError:
        raise UsageError(f"{where} is not JSON: give one JSON object a line, e.g. {EXAMPLE}") from None
    if not isinstance(fields, dict):
        raise UsageError(f"{where} is not a JSON object: give one a line, e.g. {EXAMPLE}")
    for key in fields:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            fix = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(KEYS)}"
            raise UsageError(f"{where} has unknown key {key!r}: {fix}")
    if "offset_ms" not in fields:
        raise UsageError(f"{where} has no offset_ms: give each request's time from the recording's start in ms, e.g. {EXAMPLE}")
    offset_ms = _finite(fields["offset_ms"])
    if not offset_ms >= 0:
        raise UsageError(f"{where}: offset_ms {_shown(fields['offset_ms'])} is not a finite number of ms, 0 or more: "
                         "give the request's time from the recording's start")  # fmt: skip
    model = fields.get("model")
    if model is not None and not (isinstance(model, str) and model.strip()):
        raise UsageError(f"{where}: model {_shown(model)} is not a model's name: give its name as text, or leave model out")
    index = fields.get("input")
    if index is not None and not (_is_whole(index) and index >= 0):
        raise UsageError(f"{where}: input {_shown(index)} is not a whole number, 0 or more: give the index of the "
                         "input data's request (0 is the first), or leave input out for round robin")  # fmt: skip
    batch_size = fields.get("batch_size")
    if batch_size is not None and not (_is_whole(batch_size) and batch_size >= 1):
        raise UsageError(f"{where}: batch_size {_shown(batch_size)} is not a whole number, 1 or more")
    return ReplayEntry(
        round(offset_ms * 1e6), model, None if index is None else int(index), None if batch_size is None else int(batch_size), number
    )


def _finite(value: Any) -> float:
    """A JSON number as a finite float; NaN for anything else (text, true, Infinity, an int beyond a float)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return math.nan
    try:
        number = float(value)
    except OverflowError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def _is_whole(value: Any) -> bool:
    return _finite(value).is_integer()


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_duration(plan: ReplayPlan, speed: float) -> None:
    """The recording replayed at `speed` lasts MAX_REPLAY_DAYS at most."""
    days = plan.entries[-1].offset_ns / speed / 86_400e9
    if days > MAX_REPLAY_DAYS:
        raise UsageError(f"--schedule-file {plan.source} replayed at speed {speed:g} lasts {days:.3g} days, beyond the "
                         f"{MAX_REPLAY_DAYS} a replay may last: raise --replay-speed or check the file's offset_ms (in ms)")  # fmt: skip


def check_models(plan: ReplayPlan, models: Sequence[str]) -> None:
    """Every request naming a model names one of the run's `models`."""
    for entry in plan.entries:
        if entry.model is not None and entry.model not in models:
            raise UsageError(f"--schedule-file {plan.source} line {entry.line} names model {entry.model!r}, which the run does "
                             f"not measure: the run's models are {', '.join(models)}")  # fmt: skip


def check_inputs(plan: ReplayPlan, entries: Sequence[ReplayEntry], request_count: int) -> None:
    """Every input `entries` name is one of the `request_count` requests the input data was prepared
    into (loadgen.inputs.build_request_inputs: with -b 1, one per entry; random or zero data: one)."""
    for entry in entries:
        if entry.input is not None and entry.input >= request_count:
            requests = f"{request_count} request{'s' if request_count != 1 else ''}"
            raise UsageError(f"--schedule-file {plan.source} line {entry.line}: input {entry.input} is beyond the input data, "
                             f"which makes {requests}: give input 0 to {request_count - 1}, or leave input out for round robin")  # fmt: skip


def replay_batch_size(plan: ReplayPlan, entries: Sequence[ReplayEntry], given: int | None) -> int:
    """The batch size a replay of `entries` runs at: the one its lines give, which must be the same
    on every line that gives one, and agree with -b (`given`; None when -b was not given); else
    -b's, else 1."""
    sized = [entry for entry in entries if entry.batch_size is not None]
    if not sized:
        return given if given is not None else 1
    first = sized[0]
    for entry in sized[1:]:
        if entry.batch_size != first.batch_size:
            raise UsageError(f"--schedule-file {plan.source}: line {first.line} has batch_size {first.batch_size} and line "
                             f"{entry.line} {entry.batch_size}: varying batch sizes in one replay are not supported")  # fmt: skip
    if given is not None and given != first.batch_size:
        raise UsageError(f"-b {given} and --schedule-file {plan.source}'s batch_size {first.batch_size} (line {first.line}) "
                         "differ: drop -b, or give the file's batch size")  # fmt: skip
    return first.batch_size
