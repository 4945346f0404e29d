"""The client's record of every request of a level by its id number, kept only with tracing: the
side of the join that loadgen.tail makes with Triton's sampled traces."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np


class RequestLog:
    """Appended to on the engine's hot path as each request completes: its id number, intended
    send (-1 in closed loop), actual send and end (monotonic ns), and whether it succeeded. Typed
    arrays: 8 bytes a figure (1 for the outcome), no Python object per request."""

    __slots__ = ("_number", "_intended", "_sent", "_end", "_ok")

    def __init__(self) -> None:
        self._number = array("q")
        self._intended = array("q")
        self._sent = array("q")
        self._end = array("q")
        self._ok = array("b")

    def add(self, number: int, intended_ns: int | None, sent_ns: int, end_ns: int, ok: bool) -> None:
        self._number.append(number)
        self._intended.append(-1 if intended_ns is None else intended_ns)
        self._sent.append(sent_ns)
        self._end.append(end_ns)
        self._ok.append(ok)

    def records(self) -> RequestRecords:
        """What was recorded so far, ordered by id number."""
        order = np.argsort(np.frombuffer(self._number, dtype=np.int64), kind="stable")
        columns = (np.frombuffer(column, dtype=np.int64)[order] for column in (self._number, self._intended, self._sent, self._end))
        return RequestRecords(*columns, np.frombuffer(self._ok, dtype=np.int8)[order].astype(bool))


@dataclass(frozen=True)
class RequestRecords:
    """A level's requests by id number (ascending); times in monotonic ns, intended -1 in closed loop."""

    number: np.ndarray
    intended_ns: np.ndarray
    sent_ns: np.ndarray
    end_ns: np.ndarray
    ok: np.ndarray

    def latency_us(self, numbers: np.ndarray, start_ns: int, end_ns: int) -> np.ndarray:
        """The client latency (µs, from the intended send in open loop, as the level's percentiles
        count it) of each of `numbers` that succeeded and ended within [start_ns, end_ns]; NaN for
        the others and for numbers not recorded."""
        latency = np.full(len(numbers), np.nan)
        if not len(numbers) or not self.number.size:
            return latency
        at = np.minimum(np.searchsorted(self.number, numbers), self.number.size - 1)
        end = self.end_ns[at]
        found = (self.number[at] == numbers) & self.ok[at] & (end >= start_ns) & (end <= end_ns)
        start = np.where(self.intended_ns[at] >= 0, self.intended_ns[at], self.sent_ns[at])
        latency[found] = (end[found] - start[found]) / 1e3
        return latency
