"""The engine's own CPU per request, with a feature on and off, over an in-process transport that
answers at once: what the bookkeeping of every request costs, apart from any network.

    python bench/engine_overhead.py [--feature deadline|export] [--seconds 2] [--concurrency 8] [--blocks 2]

`deadline`: the 60 s default request deadline against none. `export`: each request kept as its
--profile-export-file line (formatted as it completes), against none; both with the deadline.
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
from loadgen.profile_export import epoch_offset_ns, request_formatter
from loadgen.samples import SampleRecorder
from loadgen.schedule import ConcurrencySchedule
from loadgen.outcome import InferOutcome

ANSWER = InferOutcome(1_000, 1_000)


class Instant:
    """Answers every request on the loop's next turn."""

    async def infer(self, prepared) -> InferOutcome:
        await asyncio.sleep(0)
        return ANSWER


def cpu_us_per_request(request_timeout_ms: float, export: bool, seconds: float, concurrency: int) -> float:
    async def measure() -> float:
        engine = LoadEngine(Instant(), [object()], request_timeout_ms=request_timeout_ms)
        request_format = request_formatter(epoch_offset_ns()) if export else None
        recorder = SampleRecorder(monotonic_ns(), request_format=request_format)
        engine.start(ConcurrencySchedule(concurrency), recorder)
        await asyncio.sleep(0.2)  # warm up
        recorder.close_window(monotonic_ns())  # as a run does at every window boundary
        done, cpu_s = engine.completed, time.process_time()
        await asyncio.sleep(seconds)
        window = recorder.close_window(monotonic_ns())
        if window.requests is not None:
            window.requests.take()  # joined at the close: part of the cost
        done, cpu_s = engine.completed - done, time.process_time() - cpu_s
        await engine.abandon()
        return cpu_s / done * 1e6

    return uvloop.run(measure())


# Each feature's runs: (name, request deadline in ms, export) for on, then off.
FEATURES = {
    "deadline": (("deadline 60 s", 60_000, False), ("no deadline", 0, False)),
    "export": (("export", 60_000, True), ("no export", 60_000, False)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature", choices=sorted(FEATURES), default="deadline")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=2)
    args = parser.parse_args()
    on, off = FEATURES[args.feature]
    runs: dict[str, list[float]] = {on[0]: [], off[0]: []}
    for _ in range(args.blocks):
        for name, timeout_ms, export in (on, off, off, on):
            runs[name].append(cpu_us_per_request(timeout_ms, export, args.seconds, args.concurrency))
    for name, values in runs.items():
        print(f"{name:>14}: {statistics.mean(values):.2f} us of CPU per request ({', '.join(f'{v:.2f}' for v in values)})")
    with_it, without = (statistics.mean(values) for values in runs.values())
    print(f"{on[0]} / {off[0]}: {with_it / without:.2f}x, +{with_it - without:.2f} us per request")


if __name__ == "__main__":
    main()
