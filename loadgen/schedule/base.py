"""The schedule interface: closed loop and open-loop pacers implement it."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Protocol


class Fire(Protocol):
    """Sends one request and records its outcome. `intended_ns` is the request's intended start
    (monotonic ns) for open-loop schedules, None when it starts as soon as it is sent; `index` the
    prepared request to send (a replay's recorded input), None for the next in round robin;
    `sequence` a sequence model's (sequence id, START, END) for the request. Awaited, it tells
    whether the request succeeded."""

    def __call__(
        self, intended_ns: int | None, index: int | None = None, sequence: tuple[int, bool, bool] | None = None
    ) -> Awaitable[bool]: ...


class Schedule(ABC):
    """Drives `fire` until `stop` is set (a finite schedule: or until it has sent every request),
    then returns once its requests have completed."""

    # The name of the level's value in reports and CSVs ("Concurrency", "Request Rate").
    label: str
    # A finite schedule's level is measured over all of it, window after window until it ends.
    finite: bool = False
    # A finite schedule's time from its start to its last request's intended send.
    duration_ns: int = 0
    # Whether its throughput should hold steady: a replay's follows its recording, so only its latency is judged.
    steady: bool = True

    @property
    @abstractmethod
    def value(self) -> float: ...

    @abstractmethod
    async def drive(self, fire: Fire, stop: asyncio.Event) -> None: ...
