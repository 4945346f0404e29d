"""The schedule interface: closed loop and open-loop pacers implement it."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

# Sends one request and records its outcome. The argument is the request's intended start
# (monotonic ns) for open-loop schedules, None when it starts as soon as it is sent.
Fire = Callable[[int | None], Awaitable[None]]


class Schedule(ABC):
    """Drives `fire` until `stop` is set, then returns once its requests have completed."""

    # The name of the level's value in reports and CSVs ("Concurrency", "Request Rate").
    label: str

    @property
    @abstractmethod
    def value(self) -> float: ...

    @abstractmethod
    async def drive(self, fire: Fire, stop: asyncio.Event) -> None: ...
