"""loadgen.histogram against the `hdrhistogram` package: why a worker's window digest is hand-written.

    python bench/histogram.py [--values 50000,200000] [--workers 8] [--windows 3]

A worker reduces each window's latencies (here lognormal around 3 ms; 200k is a 5-s window at
40k requests/s) to a histogram and sends it to the driver, which merges every worker's last windows.
hdrhistogram records value by value in Python; loadgen.histogram builds from the numpy array
at once. The table gives the time of each step (best of 5) and the bytes sent per window:
hdrhistogram's compressed encoding, loadgen's pickle. Runs in about five seconds.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen.histogram import LatencyHistogram, bucket_bounds  # noqa: E402
from loadgen.stats import CURVE_PERCENTILES  # noqa: E402

HOUR_NS = 3600 * 10**9  # hdrhistogram needs a highest value; loadgen's goes to 2**63 - 1


def best_s(step: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def hdrh_of(values: list[int]) -> HdrHistogram:
    histogram = HdrHistogram(1, HOUR_NS, 3)
    for value in values:
        histogram.record_value(value)
    return histogram


def hdrh_quickly(values: np.ndarray) -> HdrHistogram:
    """What hdrh_of gives, recorded bucket by bucket (the layouts are the same)."""
    histogram = HdrHistogram(1, HOUR_NS, 3)
    for value, count in zip(*np.unique(bucket_bounds(values)[0], return_counts=True)):
        histogram.record_value(int(value), int(count))
    return histogram


def hdrh_merged(encoded: list[str]) -> HdrHistogram:
    merged = HdrHistogram(1, HOUR_NS, 3)
    for blob in encoded:
        merged.decode_and_add(blob)
    return merged


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def row(step: str, theirs: float, ours: float, shown: Callable[[float], str] = ms) -> None:
    print(f"| {step} | {shown(theirs)} | {shown(ours)} | {theirs / ours:,.1f}x |")


def compare(rng: np.random.Generator, n: int, window_count: int) -> None:
    windows = [rng.lognormal(15, 0.5, n).astype(np.int64) for _ in range(window_count)]
    values = windows[0].tolist()
    row(f"record {n:,} latencies", best_s(lambda: hdrh_of(values)), best_s(lambda: LatencyHistogram.of(windows[0])))
    theirs = [hdrh_quickly(w) for w in windows]
    ours = [LatencyHistogram.of(w) for w in windows]
    row(
        f"bytes sent per window of {n:,}",
        float(np.mean([len(h.encode()) for h in theirs])),
        float(np.mean([len(pickle.dumps(h)) for h in ours])),
        lambda size: f"{size:,.0f} B",
    )
    row(
        f"encode, decode, merge {window_count} windows",
        best_s(lambda: hdrh_merged([h.encode() for h in theirs])),
        best_s(lambda: LatencyHistogram.merged(pickle.loads(pickle.dumps(h)) for h in ours)),
    )
    merged_theirs, merged_ours = hdrh_merged([h.encode() for h in theirs]), LatencyHistogram.merged(ours)
    row(
        f"{len(CURVE_PERCENTILES)} percentiles of the merge",
        best_s(lambda: merged_theirs.get_percentile_to_value_dict(list(CURVE_PERCENTILES))),
        best_s(lambda: [merged_ours.percentile(p) for p in CURVE_PERCENTILES]),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", default="50000,200000", help="latencies per window (default 50000,200000)")
    parser.add_argument("--workers", type=int, default=8, help="workers whose windows the driver merges (default 8)")
    parser.add_argument("--windows", type=int, default=3, help="windows merged per worker (default 3)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| step | hdrhistogram | loadgen.histogram | hdrhistogram / loadgen |\n|---|---|---|---|")
    for n in (int(v) for v in args.values.split(",")):
        compare(rng, n, args.workers * args.windows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
