"""Noticing a dead server mid-run: the embedded server's process gone, or liveness checks failing.

Failed requests alone cannot tell a dead server from a failing model, and the statistics read
at a window boundary may be seconds away; a liveness check every second can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loadgen.errors import ServerError, ServerGone

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
# Checks failed in a row before the server counts as gone: one may fall on a busy moment.
MISSES_TO_GONE = 2

T = TypeVar("T")


class ServerWatch:
    """Runs a piece of work while checking, every second, that the server is still there.

    `server_live(timeout_s)` answers None or why the server is not live; `exit_status()`, for a
    server loadgen started, answers None while its process runs or how the process ended.
    """

    def __init__(
        self,
        url: str,
        server_live: Callable[[float], Awaitable[str | None]],
        exit_status: Callable[[], str | None] | None = None,
    ) -> None:
        self.url = url
        self._server_live = server_live
        self._exit_status = exit_status

    def _exited(self) -> str | None:
        status = self._exit_status() if self._exit_status is not None else None
        return f"the embedded Triton server {status}" if status is not None else None

    async def _watch(self) -> str:
        """Returns, with what happened, once the server is gone."""
        misses = 0
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            if (exited := self._exited()) is not None:
                return exited
            reason = await self._server_live(PROBE_TIMEOUT_S)
            misses = misses + 1 if reason is not None else 0
            if misses >= MISSES_TO_GONE:
                return self._exited() or f"the server at {self.url} stopped answering: {reason}"

    async def guard(self, work: Awaitable[T]) -> T:
        """`work`'s result; if the server goes first, `work` is cancelled and ServerGone raised."""
        work_task = asyncio.ensure_future(work)
        watch_task = asyncio.ensure_future(self._watch())
        try:
            await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when interrupted: neither task outlives the guard
            for task in (work_task, watch_task):
                task.cancel()
            await asyncio.wait({work_task, watch_task})
        if watch_task.cancelled():  # the work ended first
            try:
                return work_task.result()
            except ServerError as exc:
                # A control call (the statistics at a window boundary) may be first to meet a dead
                # server: say what happened to the server, not to the call.
                if (exited := self._exited()) is not None:
                    raise ServerGone(exited) from exc
                if (reason := await self._server_live(PROBE_TIMEOUT_S)) is not None:
                    raise ServerGone(f"the server at {self.url} stopped answering: {reason}") from exc
                raise
        raise ServerGone(watch_task.result())
