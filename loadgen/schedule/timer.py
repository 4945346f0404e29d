"""A wake-up at an exact instant of the monotonic clock, for the open-loop pacer.

The event loop's own timers step in whole milliseconds (libuv's clock), so a request due at a
given microsecond leaves up to a millisecond early or late. A Linux timerfd armed at an absolute
CLOCK_MONOTONIC time (the clock of time.monotonic_ns) and watched by the loop wakes it within
microseconds, with no thread and no spinning (bench/pacer.py).

The timer is level-triggered, as its file descriptor is: once expired, the loop calls back on
every turn until the timer is armed again or disarmed (timerfd_settime clears the expiration
count, timerfd_create(2)). So a callback that arms the next instant needs no read(2) of the count
(one system call fewer per wake-up), and one that wants the loop's next turn simply returns.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1
_libc = ctypes.CDLL(None, use_errno=True)
_settime = _libc.timerfd_settime
_ITIMERSPEC = ctypes.c_long * 4  # struct itimerspec: it_interval (sec, nsec), it_value (sec, nsec)


class MonotonicTimer:
    """One timer on the running loop, which calls `callback()` while the timer is expired."""

    def __init__(self, callback: Callable[[], None]) -> None:
        fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._fd = fd
        self._spec = _ITIMERSPEC()  # reused: building ctypes structures per wake-up cost more than the system call
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, callback)

    def arm(self, t_ns: int) -> None:
        """Expire at monotonic time `t_ns` (at once if it has passed), one-shot."""
        spec = self._spec
        spec[2], spec[3] = divmod(max(t_ns, 1), 1_000_000_000)  # (an all-zero it_value would disarm it)
        self._set()

    def disarm(self) -> None:
        spec = self._spec
        spec[2] = spec[3] = 0
        self._set()

    def _set(self) -> None:
        if _settime(self._fd, _TFD_TIMER_ABSTIME, self._spec, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
