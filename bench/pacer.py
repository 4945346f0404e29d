"""The open-loop pacer alone: how late it sends and what it costs, with no server.

    python bench/pacer.py [--rates 20,100,1000,10000,20000] [--seconds 3]

Drives RateSchedule on uvloop with a fire() that only records how late each request left,
and prints per rate the share sent over 1 ms late, the lag's p50 and p99, and the CPU the
process used (share of one core, and per request). This is what the pacer's wake-early-then-yield
costs; with nothing else to do the loop sleeps between requests, so at high rates this is mostly
the cost of a wake-up per request (a loaded client's loop is awake anyway, and fires every
request due in one wake-up).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen.schedule import RateSchedule  # noqa: E402
from loadgen.stats import LATE_NS  # noqa: E402


async def pace(rate: float, seconds: float) -> tuple[np.ndarray, float]:
    lags_ns: list[int] = []

    async def fire(intended_ns: int) -> None:
        lags_ns.append(time.monotonic_ns() - intended_ns)

    stop = asyncio.Event()
    cpu0 = time.process_time()
    driving = asyncio.create_task(RateSchedule(rate).drive(fire, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await driving
    return np.array(lags_ns), (time.process_time() - cpu0) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="20,100,1000,10000,20000", help="request rates per second (default 20,100,1000,10000,20000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each rate runs (default 3)")
    args = parser.parse_args()
    print("| rate/s | late (>1 ms) | lag p50 us | lag p99 us | CPU (share of a core) | CPU us/request |\n|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            lags_ns, cpu = runner.run(pace(rate, args.seconds))
        print(f"| {rate:g} | {np.mean(lags_ns > LATE_NS):.1%} | {np.percentile(lags_ns, 50) / 1e3:.0f} | "
              f"{np.percentile(lags_ns, 99) / 1e3:.0f} | {cpu:.0%} | {cpu * args.seconds * 1e6 / len(lags_ns):.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
