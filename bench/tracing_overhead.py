"""What Triton's tracing costs the server: the shipped ensemble's throughput with tracing off and on.

    python bench/tracing_overhead.py [--rates 100] [--protocols grpc] [--concurrency 8] [--repeats 2]
                                     [-p 5000] [--perf-analyzer]

Each run is `loadgen run` on model_repository/'s centernet-ensemble with its own embedded server
(started per run, as a user's run starts it): a closed loop at --concurrency, the sample
photograph as input, one warm-up window then three reported windows of -p ms (-r 4 -s 0.001: the
level never counts as stable, so every run measures the same four windows and reports the last
three, the first being the server's and the client's warm-up). The arms are tracing off and
`--trace-rate N` for each N of --rates (loadgen then starts the server with a trace file, sets
level TIMESTAMPS, the rate and log_frequency 100 over the trace API, and reads the traces after
each level's windows, not during them). The default concurrency, 8, saturates the server on the
2-core VM: a sweep of 1..8 there (2 s windows, gRPC, 2026-12-02) gave 110, 205, 228, 241, 242,
265, 287, 288 infer/s.

On a shared 2-core VM the server's speed drifts from minute to minute, so the arms run in
palindromic blocks, e.g. off, 100, 100, off (ABBA; with --rates 100,1: off, 100, 1, 1, 100, off),
--repeats blocks per protocol: drift that is linear over a block cancels in each arm's mean of
the block. Per arm the bench prints the median and the range over its runs of throughput
(infer/s) and of the client's p50 and p99, and for the traced arms the traces each level read
and joined (summary.json's tracing.read, tracing.traces). Per traced arm against tracing off it
prints the ratio of medians and, per block, the paired difference (traced mean minus off mean in
that block) and ratio. The verdict: the difference is above the noise when there are two blocks
or more, every block's difference has the same sign, and the smallest of them exceeds the noise,
the largest gap between two runs of one arm within one block (runs that differ in nothing but
when they ran).

--perf-analyzer adds perf_analyzer as a peer (installed by ../shared/tools/get-perf-analyzer):
the same server start per run (with a trace file on its command line for the traced arm: Triton
takes none over the network), the same model, input, concurrency and window length, perf_analyzer
with no trace flags against `--trace-level TIMESTAMPS --trace-rate N --log-frequency 100` (N the
first of --rates; perf_analyzer 2.51 has no --trace-file, it sets the rest over the trace API),
after --warmup-request-count PA_WARMUP_REQUESTS and three windows (-s 1000: it stops after the
first three). Its traces are counted from the trace files after the server stopped, over the
whole run, warm-up included. Its arms join the same blocks (loadgen's arms, then perf_analyzer's,
then the same reversed).

The bench prints the core count and the load average before and after.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from common import MODEL, ROOT, input_file, perf_analyzer

from loadgen.server import EmbeddedServer
from loadgen.traces import TraceReader

REPOSITORY = ROOT / "model_repository"
WINDOWS = 3  # reported windows per run, after one warm-up window
NEVER_STABLE = 0.001  # loadgen's -s: the level never stabilizes, so every run measures WINDOWS + 1 windows
PA_STABILITY = 1000  # perf_analyzer's -s: any three windows agree, so it stops after the first three
PA_WARMUP_REQUESTS = 1000  # about 4 s of this server at saturation, close to loadgen's warm-up window
LOG_FREQUENCY = 100  # traces per file, as loadgen sets it
RUN_NUMBERS = count(1)


@dataclass(frozen=True)
class Arm:
    tool: str  # "loadgen" or "perf_analyzer"
    trace_rate: int | None  # one request in N traced; None: tracing off

    @property
    def name(self) -> str:
        return f"{self.tool} {'off' if self.trace_rate is None else f'rate {self.trace_rate}'}"


@dataclass(frozen=True)
class Run:
    arm: Arm
    block: int
    throughput_infer_per_s: float
    p50_us: float
    p99_us: float
    traces_read: int | None  # None: tracing off
    traces_joined: int | None  # loadgen only: traces joined to the level's requests


@dataclass(frozen=True)
class Comparison:
    """A traced arm against tracing off over the same blocks."""

    ratio_of_medians: float
    block_differences_infer_per_s: list[float]
    block_ratios: list[float]
    noise_infer_per_s: float  # the largest gap between two runs of one arm in one block
    above_noise: bool


def block_order(arms: list[Arm]) -> list[Arm]:
    """One block: the arms, then the same reversed (ABBA), so linear drift cancels in each arm's mean."""
    return arms + arms[::-1]


def compare(off: list[Run], traced: list[Run]) -> Comparison:
    """Throughput of a traced arm against tracing off, paired by block (module docstring's verdict)."""
    blocks = sorted({run.block for run in off} & {run.block for run in traced})
    differences, ratios, gaps = [], [], []
    for block in blocks:
        off_runs = [r.throughput_infer_per_s for r in off if r.block == block]
        traced_runs = [r.throughput_infer_per_s for r in traced if r.block == block]
        differences.append(statistics.fmean(traced_runs) - statistics.fmean(off_runs))
        ratios.append(statistics.fmean(traced_runs) / statistics.fmean(off_runs))
        gaps.extend(max(runs) - min(runs) for runs in (off_runs, traced_runs) if len(runs) > 1)
    noise = max(gaps, default=0.0)
    same_sign = len(differences) >= 2 and (all(d > 0 for d in differences) or all(d < 0 for d in differences))
    return Comparison(
        ratio_of_medians=statistics.median(r.throughput_infer_per_s for r in traced)
        / statistics.median(r.throughput_infer_per_s for r in off),
        block_differences_infer_per_s=differences,
        block_ratios=ratios,
        noise_infer_per_s=noise,
        above_noise=same_sign and bool(gaps) and min(abs(d) for d in differences) > noise,
    )


def run_loadgen(arm: Arm, block: int, protocol: str, args, workdir: Path) -> Run:
    report = workdir / f"{next(RUN_NUMBERS):02d}-loadgen-{protocol}-{arm.trace_rate or 'off'}"
    command = [sys.executable, "-m", "loadgen", "run", "--model-repository", str(REPOSITORY), "-m", MODEL,
               "-i", protocol, "--concurrency-range", str(args.concurrency), "-p", str(args.p),
               "-r", str(WINDOWS + 1), "-s", str(NEVER_STABLE), "--report-dir", str(report),
               *(["--trace-rate", str(arm.trace_rate)] if arm.trace_rate is not None else [])]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    (level,) = json.loads((report / "summary.json").read_text())["levels"]
    client, tracing = level["client"], level["tracing"]
    return Run(arm, block, client["throughput_infer_per_s"], client["percentile_latency_us"]["p50"],
               client["percentile_latency_us"]["p99"],
               tracing["read"] if tracing else None, tracing["traces"] if tracing else None)  # fmt: skip


def run_perf_analyzer(pa: str, arm: Arm, block: int, protocol: str, args, workdir: Path, data: Path) -> Run:
    name = f"{next(RUN_NUMBERS):02d}-pa-{protocol}-{arm.trace_rate or 'off'}"
    trace_file = workdir / name / "trace.json" if arm.trace_rate is not None else None
    (workdir / name).mkdir()
    out = workdir / name / "pa.csv"
    server = EmbeddedServer(REPOSITORY, workdir / name / "server.log", trace_file=trace_file)
    endpoints = server.start()
    try:
        command = [pa, "-m", MODEL, "-u", endpoints.http if protocol == "http" else endpoints.grpc, "-i", protocol,
                   "--concurrency-range", str(args.concurrency), "-p", str(args.p), "-s", str(PA_STABILITY),
                   "-r", "10", "--warmup-request-count", str(PA_WARMUP_REQUESTS), "--input-data", str(data),
                   "-f", str(out),
                   *(["--trace-level", "TIMESTAMPS", "--trace-rate", str(arm.trace_rate),
                      "--log-frequency", str(LOG_FREQUENCY)] if arm.trace_rate is not None else [])]  # fmt: skip
        done = subprocess.run(command, check=False, capture_output=True, text=True)
    finally:
        server.stop()
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    row = next(csv.DictReader(out.open()))
    traces = None
    if trace_file is not None:
        traces = sum(1 for trace in TraceReader(trace_file).finish() if trace.root.model == MODEL)
    return Run(arm, block, float(row["Inferences/Second"]), float(row["p50 latency"]), float(row["p99 latency"]),
               traces, None)  # fmt: skip


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """Median (min..max) of values divided by scale."""
    shown = [v / scale for v in values]
    return f"{statistics.median(shown):.{digits}f} ({min(shown):.{digits}f}..{max(shown):.{digits}f})"


def print_protocol(protocol: str, arms: list[Arm], runs: list[Run]) -> None:
    print(f"\n{protocol}:\n")
    print("| arm | runs | infer/s median (range) | p50 ms | p99 ms | traces read / joined per run |")
    print("|---|---|---|---|---|---|")
    for arm in arms:
        mine = [r for r in runs if r.arm == arm]
        if not mine:
            print(f"| {arm.name} | 0 | no result | | | |")
            continue
        traces = ", ".join(f"{r.traces_read}" + (f"/{r.traces_joined}" if r.traces_joined is not None else "")
                           for r in mine) if arm.trace_rate is not None else "-"  # fmt: skip
        print(f"| {arm.name} | {len(mine)} | {spread([r.throughput_infer_per_s for r in mine])} | "
              f"{spread([r.p50_us for r in mine], 1e3)} | {spread([r.p99_us for r in mine], 1e3)} | {traces} |")
    print("\n| traced arm | vs | ratio of medians | per block: traced − off infer/s | per block ratio | noise infer/s | verdict |")
    print("|---|---|---|---|---|---|---|")
    for arm in arms:
        off = [r for r in runs if r.arm == Arm(arm.tool, None)]
        traced = [r for r in runs if r.arm == arm]
        if arm.trace_rate is None or not off or not traced:
            continue
        c = compare(off, traced)
        verdict = "above the noise" if c.above_noise else "within the noise"
        print(f"| {arm.name} | {arm.tool} off | {c.ratio_of_medians:.3f} | "
              f"{', '.join(f'{d:+.1f}' for d in c.block_differences_infer_per_s)} | "
              f"{', '.join(f'{q:.3f}' for q in c.block_ratios)} | {c.noise_infer_per_s:.1f} | {verdict} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100", help="trace rates to compare with tracing off (default 100)")
    parser.add_argument("--protocols", default="grpc", help="protocols, each its own blocks (default grpc)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop concurrency (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="ABBA blocks per protocol (default 2)")
    parser.add_argument("-p", type=int, default=5000, help="window in ms; each run measures 1 + 3 (default 5000)")
    parser.add_argument("--perf-analyzer", action="store_true", help="add perf_analyzer off and traced as a peer")
    args = parser.parse_args()
    rates = [int(v) for v in args.rates.split(",")]
    arms = [Arm("loadgen", None), *(Arm("loadgen", rate) for rate in rates)]
    if args.perf_analyzer:
        arms += [Arm("perf_analyzer", None), Arm("perf_analyzer", rates[0])]
        pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-tracing-overhead-"))
    data = input_file(workdir)
    load_before = os.getloadavg()
    results: dict[str, list[Run]] = {}
    for protocol in args.protocols.split(","):
        results[protocol] = []
        for block in range(args.repeats):
            for arm in block_order(arms):
                try:
                    if arm.tool == "loadgen":
                        run = run_loadgen(arm, block, protocol, args, workdir)
                    else:
                        run = run_perf_analyzer(pa, arm, block, protocol, args, workdir, data)
                except RuntimeError as exc:
                    print(f"  {protocol} block {block} {arm.name}: no result: {str(exc).splitlines()[-1]}", file=sys.stderr)
                    continue
                results[protocol].append(run)
                print(f"  {protocol} block {block} {arm.name}: {run.throughput_infer_per_s:.1f} infer/s, "
                      f"p50 {run.p50_us / 1e3:.1f} ms, p99 {run.p99_us / 1e3:.1f} ms, traces {run.traces_read}",
                      file=sys.stderr, flush=True)  # fmt: skip

    print(f"\nTracing's cost on {MODEL}, closed loop at concurrency {args.concurrency}, a server started per run, "
          f"1 warm-up + {WINDOWS} windows of {args.p} ms per run, {args.repeats} ABBA block(s) per protocol "
          f"(work files in {workdir})")
    for protocol, runs in results.items():
        print_protocol(protocol, arms, runs)
    print(f"\nMachine: {os.cpu_count()} cores; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
