"""Sequence planning, as perf_analyzer drives a sequence-batched model: each sequence's length,
its correlation id (never two open sequences with one id) and its requests' START and END flags."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from loadgen.errors import UsageError

# perf_analyzer's defaults: a base length of 20 requests, varied by up to 20 % either way.
DEFAULT_LENGTH = 20
DEFAULT_VARIATION_PCT = 20.0
# perf_analyzer's --num-of-sequences: the sequences open at once in open loop.
DEFAULT_OPEN_SEQUENCES = 4
# gRPC carries the id as an int64 (Triton refuses a uint64_param): an open-ended range stops there.
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class SequencePlan:
    """--sequence-length, --sequence-length-variation and --sequence-id-range: ids from `id_start`
    up to `id_end` excluded (None: unbounded, as perf_analyzer's default)."""

    length: int = DEFAULT_LENGTH
    variation_pct: float = DEFAULT_VARIATION_PCT
    id_start: int = 1
    id_end: int | None = None

    def __post_init__(self) -> None:
        if self.length < 1:
            raise UsageError(f"--sequence-length must be at least 1, got {self.length}")
        if not 0 <= self.variation_pct <= 100:
            raise UsageError(f"--sequence-length-variation must be a percentage from 0 to 100, got {self.variation_pct:g}")

    @property
    def id_count(self) -> int:
        return (self.id_end if self.id_end is not None else MAX_ID + 1) - self.id_start

    def check_concurrency(self, open_sequences: int) -> None:
        """Refuse a range too small for `open_sequences` at once: two would share an id."""
        if self.id_count < open_sequences:
            raise UsageError(f"--sequence-id-range {self.id_start}:{self.id_end} has {self.id_count} ids for "
                             f"{open_sequences} concurrent sequences: widen it to at least {open_sequences} ids")


def split_ids(plan: SequencePlan, shares: list[int]) -> list[SequencePlan | None]:
    """The plan for each worker of `shares` sequences at once: disjoint slices of the id range, in
    proportion to the shares (a zero share: an empty slice at its place), so that no two workers
    ever open one id. In whole numbers: an unbounded range's 2**63 ids are beyond a float's precision."""
    total = sum(shares)
    if plan.id_count < total:
        raise UsageError(f"--sequence-id-range {plan.id_start}:{plan.id_end} has {plan.id_count} ids for {total} sequences "
                         f"split among workers: widen it to at least {total} ids")
    plans, start, given = [], plan.id_start, 0
    for share in shares:
        # Each slice ends at its cumulative share of the range: at least `share` ids, since id_count >= total.
        given += share
        end = plan.id_start + plan.id_count * given // total
        plans.append(replace(plan, id_start=start, id_end=end) if share else None)
        start = end
    return plans


def check_worker_split(open_sequences: int, workers: int) -> None:
    """Refuse an open-loop split that would leave a worker sending with no sequence of its own."""
    if open_sequences < workers:
        raise UsageError(f"--num-of-sequences {open_sequences} cannot be split among {workers} workers (a sequence never "
                         f"spans two): give at least {workers}, or fewer --workers")


def parse_id_range(text: str) -> tuple[int, int | None]:
    """`START[:END]` (END excluded) as (start, end or None)."""
    parts = str(text).split(":")
    if not 1 <= len(parts) <= 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise UsageError(f"--sequence-id-range {text!r} is not START[:END] of whole numbers, e.g. 1:1000")
    start, end = int(parts[0]), int(parts[1]) if len(parts) == 2 else None
    if start < 1 or (end if end is not None else start) - 1 > MAX_ID:
        raise UsageError(f"--sequence-id-range {text!r}: ids are 1 to {MAX_ID} (0 means no sequence to Triton)")
    if end is not None and end <= start:
        raise UsageError(f"--sequence-id-range {text!r} ends at or before it starts: END is excluded, so write START:END with END > START")
    return start, end


def sequence_length(base: int, variation_pct: float, rng: random.Random) -> int:
    """One sequence's length: uniform within `variation_pct` % of `base` either way, at least 1."""
    spread = base * variation_pct / 100
    return max(1, round(rng.uniform(base - spread, base + spread)))


def flags(step: int, length: int) -> tuple[bool, bool]:
    """(START, END) of request `step` (from 0) of a sequence of `length` requests."""
    return step == 0, step == length - 1


class IdPool:
    """Correlation ids taken in turn from the plan's range, wrapping around, skipping the ones still open."""

    def __init__(self, plan: SequencePlan) -> None:
        self._start, self._count = plan.id_start, plan.id_count
        self._next = 0
        self.open: set[int] = set()

    def take(self) -> int:
        if len(self.open) >= self._count:
            raise RuntimeError("every id of the range is open: the range was not checked against the concurrency")
        while True:
            sequence_id = self._start + self._next
            self._next = (self._next + 1) % self._count
            if sequence_id not in self.open:
                self.open.add(sequence_id)
                return sequence_id

    def release(self, sequence_id: int) -> None:
        self.open.discard(sequence_id)


def check_sequence_load(model: str, sequence_model: bool, given: list[str], open_loop: bool, replay: bool, streams: bool,
                        traced: bool, streaming: bool) -> None:  # fmt: skip
    """Refuse, in one line, a load this sequence support does not drive (or sequence options, or
    streams of steps as input data, given for a model without a sequence batcher)."""
    if not sequence_model:
        if given:
            raise UsageError(f"{', '.join(given)} only apply to a sequence model: '{model}' has no sequence_batching in its "
                             "config; drop them")
        if streams:
            raise UsageError(f"--input-data's streams of steps are a sequence model's input: '{model}' has no sequence_batching "
                             "in its config; give one object of input name: value per data entry")
        return
    # perf_analyzer ignores them in closed loop, where the concurrency is the sequences at once and
    # each sends one request at a time: refused, so that nobody believes they took effect.
    closed_only = [flag for flag in ("--num-of-sequences", "--serial-sequences") if flag in given and not open_loop]
    if closed_only:
        raise UsageError(f"{' and '.join(closed_only)} apply to open loop (--request-rate-range, --request-intervals): in "
                         "closed loop --concurrency-range is the sequences at once, each one request at a time; drop them")
    refused = [("--schedule-file", replay), ("tracing", traced), ("--streaming", streaming)]
    for what, asked in refused:
        if asked:
            raise UsageError(f"'{model}' is a sequence model: {what} is not supported with it yet")
