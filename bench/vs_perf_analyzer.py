"""loadgen side by side with perf_analyzer, on the same embedded server, model and input.

    python bench/vs_perf_analyzer.py [--levels 1,2,4,8] [--protocols http,grpc] [-p 2000]
                                     [--collect-metrics] [--export-metrics] [--request-rates]

Installs perf_analyzer with ../shared/tools/get-perf-analyzer, starts the embedded server once on
model_repository/, then for each protocol and level runs perf_analyzer and loadgen with the
same window settings and the same input (grace_hopper.jpg as perf_analyzer JSON). Per level it
prints both throughputs and p50s, each tool's own figures from its own report, and each client's
CPU per 1000 requests.

On a shared 2-core VM the server's own speed drifts by 20% from minute to minute whichever client
drives it, so each level runs in ABBA order (perf_analyzer, loadgen, loadgen, perf_analyzer; --pairs
sets how many such blocks) and each tool's figures are the means of its runs: linear drift cancels.

--request-rates makes the levels open-loop request rates (--request-rate-range, constant arrivals)
instead of concurrencies: the figures then also show how well each tool keeps the rate.

--collect-metrics makes both tools scrape the server's metrics page (every 1000 ms, their
default); --export-metrics also has loadgen serve its own live metrics, which adds a counter and
a histogram observation to every request: the cost of either shows in the CPU ratio.

CPU is measured the same way for both tools, from outside: while a run is in its steady state,
the bench reads the process's CPU time (/proc/PID/stat, all threads) and the server's success
counter for the model twice, SAMPLE_S apart; CPU per request is the ratio of the two deltas. So
neither tool's start-up (a Python interpreter's imports, for one) is charged to its requests.
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
import time
from dataclasses import dataclass
from pathlib import Path

from common import MODEL, ROOT, input_file, perf_analyzer, success_count

from loadgen.server import EmbeddedServer, free_port

WARMUP_S = 1.5
SAMPLE_S = 4.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HTTP_THROUGHPUT_TARGET = 0.95
CPU_TARGET = 1.5


@dataclass
class Measured:
    throughput: float
    p50_us: float
    cpu_us_per_request: float
    sampled_rate: float
    stable: bool = True


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def sample_cpu(process: subprocess.Popen, http: str, model: str = MODEL) -> tuple[float, float]:
    """CPU µs per request and requests/s over SAMPLE_S of steady load on `model`, measured from outside."""
    start = success_count(http, model)
    while success_count(http, model) == start:  # wait for the load to begin
        if process.poll() is not None:
            raise RuntimeError("the client exited before sending load")
        time.sleep(0.05)
    time.sleep(WARMUP_S)
    cpu0, count0, t0 = cpu_seconds(process.pid), success_count(http, model), time.monotonic()
    time.sleep(SAMPLE_S)
    cpu1, count1, t1 = cpu_seconds(process.pid), success_count(http, model), time.monotonic()
    if process.poll() is not None:
        raise RuntimeError("the client finished before the CPU sample ended: use a longer -p")
    requests = count1 - count0
    return (cpu1 - cpu0) * 1e6 / max(requests, 1), requests / (t1 - t0)


def run_perf_analyzer(pa: str, url: str, protocol: str, level: int, args, data: Path, workdir: Path, http: str) -> Measured:
    out = workdir / f"pa-{protocol}-{level}.csv"
    command = [pa, "-m", MODEL, "-u", url, "-i", protocol, args.load_flag, str(level),
               "-p", str(args.p), "-s", str(args.s), "-r", str(args.r), "--input-data", str(data), "-f", str(out),
               *args.pa_extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu, rate = sample_cpu(process, http)
    output, _ = process.communicate()
    if process.returncode != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer failed ({process.returncode}):\n{output[-2000:]}")
    row = next(csv.DictReader(out.open()))
    return Measured(float(row["Inferences/Second"]), float(row["p50 latency"]), cpu, rate)


def run_loadgen(url: str, protocol: str, level: int, args, data: Path, workdir: Path, http: str) -> Measured:
    report = workdir / f"loadgen-{protocol}-{level}"
    command = [sys.executable, "-m", "loadgen", "run", "-m", MODEL, "-u", url, "-i", protocol,
               args.load_flag, str(level), "-p", str(args.p), "-s", str(args.s), "-r", str(args.r),
               "--input-data", str(data), "--report-dir", str(report), *args.loadgen_extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    cpu, rate = sample_cpu(process, http)
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"loadgen failed ({process.returncode}):\n{output[-2000:]}")
    (measured,) = json.loads((report / "summary.json").read_text())["levels"]
    client = measured["client"]
    return Measured(client["throughput_infer_per_s"], client["percentile_latency_us"]["p50"], cpu, rate, measured["stable"])


def mean(runs: list[Measured]) -> Measured:
    return Measured(
        throughput=statistics.fmean(r.throughput for r in runs),
        p50_us=statistics.fmean(r.p50_us for r in runs),
        cpu_us_per_request=statistics.fmean(r.cpu_us_per_request for r in runs),
        sampled_rate=statistics.fmean(r.sampled_rate for r in runs),
        stable=all(r.stable for r in runs),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,2,4,8", help="concurrency levels or request rates (default 1,2,4,8)")
    parser.add_argument("--request-rates", action="store_true", help="levels are open-loop request rates per second")
    parser.add_argument("--protocols", default="http,grpc", help="protocols (default http,grpc)")
    parser.add_argument("-p", type=int, default=3000, help="measurement window in ms for both tools (default 3000)")
    parser.add_argument("-s", type=float, default=15, help="stability percentage for both tools (default 15)")
    parser.add_argument("--pairs", type=int, default=1, help="ABBA blocks per level (default 1: 2 runs of each tool)")
    parser.add_argument("-r", type=int, default=10, help="max windows for both tools (default 10)")
    parser.add_argument("--collect-metrics", action="store_true", help="both tools scrape the server's metrics")
    parser.add_argument("--export-metrics", action="store_true", help="loadgen also serves its own live metrics")
    args = parser.parse_args()
    args.load_flag = "--request-rate-range" if args.request_rates else "--concurrency-range"
    levels = [int(v) for v in args.levels.split(",")]
    protocols = args.protocols.split(",")

    pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-vs-pa-"))
    data = input_file(workdir)
    server = EmbeddedServer(ROOT / "model_repository", workdir / "server.log")
    endpoints = server.start()
    metrics = ["--collect-metrics", "--metrics-url", endpoints.metrics_url] if args.collect_metrics else []
    args.pa_extra = metrics
    args.loadgen_extra = metrics + (["--export-metrics-port", str(free_port())] if args.export_metrics else [])
    rows = []
    try:
        for protocol in protocols:
            url = endpoints.http if protocol == "http" else endpoints.grpc
            for level in levels:
                runs: dict[str, list[Measured]] = {"perf_analyzer": [], "loadgen": []}
                for tool in ["perf_analyzer", "loadgen", "loadgen", "perf_analyzer"] * args.pairs:
                    try:
                        if tool == "perf_analyzer":
                            measured = run_perf_analyzer(pa, url, protocol, level, args, data, workdir, endpoints.http)
                        else:
                            measured = run_loadgen(url, protocol, level, args, data, workdir, endpoints.http)
                    except RuntimeError as exc:  # e.g. perf_analyzer exits 2 when a level never stabilizes
                        print(f"  {protocol} {level} {tool}: no result: {str(exc).splitlines()[-1]}", file=sys.stderr)
                        continue
                    runs[tool].append(measured)
                    print(f"  {protocol} {level} {tool}: {measured}", file=sys.stderr, flush=True)
                if runs["perf_analyzer"] and runs["loadgen"]:
                    rows.append((protocol, level, mean(runs["perf_analyzer"]), mean(runs["loadgen"])))
    finally:
        server.stop()

    features = [flag for flag, on in (("--collect-metrics", args.collect_metrics), ("--export-metrics", args.export_metrics)) if on]
    print(f"\nloadgen vs perf_analyzer on {MODEL}, same server and input (-p {args.p} -s {args.s} -r {args.r}"
          f"{''.join(' ' + f for f in features)}; "
          f"ABBA x{args.pairs}; CPU sampled over {SAMPLE_S:g} s of steady load in each run)\n")
    header = ("proto", "rate" if args.request_rates else "conc", "PA infer/s", "LG infer/s", "ratio", "PA p50 us", "LG p50 us",
              "PA CPU ms/1k req", "LG CPU ms/1k req", "CPU ratio", "verdict")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    failed = False
    for protocol, level, pa_run, lg_run in rows:
        ratio = lg_run.throughput / pa_run.throughput
        cpu_ratio = lg_run.cpu_us_per_request / pa_run.cpu_us_per_request
        ok = cpu_ratio <= CPU_TARGET and (protocol != "http" or ratio >= HTTP_THROUGHPUT_TARGET)
        failed |= protocol == "http" and not ok
        verdict = ("ok" if ok else "MISSED") + ("" if lg_run.stable else " (loadgen unstable)")
        print(f"| {protocol} | {level} | {pa_run.throughput:.1f} | {lg_run.throughput:.1f} | {ratio:.2f} | "
              f"{pa_run.p50_us:.0f} | {lg_run.p50_us:.0f} | {pa_run.cpu_us_per_request:.1f} | "
              f"{lg_run.cpu_us_per_request:.1f} | {cpu_ratio:.2f} | {verdict} |")
    print(f"\nTargets: HTTP throughput >= {HTTP_THROUGHPUT_TARGET}x perf_analyzer at every level; CPU per request <= {CPU_TARGET}x.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
