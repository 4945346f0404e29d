"""A wake-up at an exact instant of the monotonic clock, for the open-loop pacer.

The event loop's own timers step in whole milliseconds (libuv's clock), so a request due at a
given microsecond leaves up to a millisecond early or late. A Linux timerfd armed at an absolute
CLOCK_MONOTONIC time (the clock of time.monotonic_ns) and watched by the loop wakes it within
microseconds, with no thread and no spinning (bench/pacer.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import os

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class MonotonicTimer:
    """One timer on the running loop; `sleep_until` is awaited by one task at a time."""

    def __init__(self) -> None:
        fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future | None = None
        self._loop.add_reader(fd, self._expired)

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading it re-arms readability
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def sleep_until(self, t_ns: int) -> None:
        """Return at monotonic time `t_ns` (at once if it has passed)."""
        when = _Itimerspec(_Timespec(0, 0), _Timespec(t_ns // 1_000_000_000, max(1, t_ns % 1_000_000_000)))
        if _libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(when), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._waiter = self._loop.create_future()
        await self._waiter

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
