"""The engine's own CPU per request, with request deadlines on and off, over an in-process transport
that answers at once: what the bookkeeping of every request costs, apart from any network.

    python bench/engine_overhead.py [--seconds 2] [--concurrency 8] [--blocks 2]

Runs alternate in ABBA blocks (on, off, off, on) against drift. With the 60 s default deadline,
a timer per request (asyncio.timeout) cost 3.5 us a request here; the engine now arms one timer
for the oldest request's deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from time import monotonic_ns

import uvloop

from loadgen.engine import LoadEngine
from loadgen.samples import SampleRecorder
from loadgen.schedule import ConcurrencySchedule
from loadgen.outcome import InferOutcome

ANSWER = InferOutcome(1_000, 1_000)


class Instant:
    """Answers every request on the loop's next turn."""

    async def infer(self, prepared) -> InferOutcome:
        await asyncio.sleep(0)
        return ANSWER


def cpu_us_per_request(request_timeout_ms: float, seconds: float, concurrency: int) -> float:
    async def measure() -> float:
        engine = LoadEngine(Instant(), [object()], request_timeout_ms=request_timeout_ms)
        engine.start(ConcurrencySchedule(concurrency), SampleRecorder(monotonic_ns()))
        await asyncio.sleep(0.2)  # warm up
        done, cpu_s = engine.completed, time.process_time()
        await asyncio.sleep(seconds)
        done, cpu_s = engine.completed - done, time.process_time() - cpu_s
        await engine.abandon()
        return cpu_s / done * 1e6

    return uvloop.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"deadline 60 s": [], "no deadline": []}
    for _ in range(args.blocks):
        for name in ("deadline 60 s", "no deadline", "no deadline", "deadline 60 s"):
            runs[name].append(cpu_us_per_request(60_000 if name == "deadline 60 s" else 0, args.seconds, args.concurrency))
    for name, values in runs.items():
        print(f"{name:>14}: {statistics.mean(values):.2f} us of CPU per request ({', '.join(f'{v:.2f}' for v in values)})")
    on, off = (statistics.mean(values) for values in runs.values())
    print(f"deadline / none: {on / off:.2f}x, +{on - off:.2f} us per request")


if __name__ == "__main__":
    main()
