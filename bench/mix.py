"""Two models at once: loadgen's mix against two perf_analyzer processes started together.

    python bench/mix.py [--rates 5,20] [-p 2000] [--pairs 1] [--protocol http]

perf_analyzer drives one model per process (several at once only under MPI), so its nearest
equivalent of a mix is two processes started together, each at its model's rate. loadgen drives
both from one process (a scenario with a `models:` list), on one clock. Both run on the same
embedded server (model_repository/), with the same input (grace_hopper.jpg as perf_analyzer JSON),
open loop at the same constant rates: the shipped ensemble at the first rate and its first step,
image-preprocess, at the second.

Per tool and model: the throughput and p50/p99 each tool reports, the rate the server counted
while both ran (its success counter, sampled from outside over SAMPLE_S of steady load), and the
clients' CPU per 1000 requests over the same sample (both perf_analyzer processes together).
ABBA order (perf_analyzer, loadgen, loadgen, perf_analyzer) against the server's drift.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common import MODEL, ROOT, input_file, perf_analyzer
from vs_perf_analyzer import WARMUP_S, cpu_seconds

from loadgen.server import EmbeddedServer

SECOND = "image-preprocess"
SAMPLE_S = 6.0


@dataclass
class Figures:
    throughput: float
    p50_us: float
    p99_us: float
    server_rate: float  # requests/s the server counted for the model during the sample


@dataclass
class Run:
    models: dict[str, Figures]
    cpu_us_per_request: float  # all the tool's processes, per request of either model


def success(http: str, model: str) -> int:
    with urllib.request.urlopen(f"http://{http}/v2/models/{model}/stats", timeout=5) as response:
        return int(json.load(response)["model_stats"][0]["inference_stats"]["success"]["count"])


def sample(processes: list[subprocess.Popen], http: str, models: list[str]) -> tuple[dict[str, float], float]:
    """Each model's server-side rate and the processes' CPU µs per request, over SAMPLE_S of steady load."""
    start = [success(http, model) for model in models]
    while [success(http, model) for model in models] == start:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError("a client exited before sending load")
        time.sleep(0.05)
    time.sleep(WARMUP_S)
    cpu0, counts0, t0 = sum(cpu_seconds(p.pid) for p in processes), [success(http, m) for m in models], time.monotonic()
    time.sleep(SAMPLE_S)
    cpu1, counts1, t1 = sum(cpu_seconds(p.pid) for p in processes), [success(http, m) for m in models], time.monotonic()
    if any(process.poll() is not None for process in processes):
        raise RuntimeError("a client finished before the sample ended: use a longer -p")
    done = [c1 - c0 for c0, c1 in zip(counts0, counts1)]
    return {m: n / (t1 - t0) for m, n in zip(models, done)}, (cpu1 - cpu0) * 1e6 / max(1, sum(done))


def run_perf_analyzer(pa: str, url: str, args, rates: dict[str, float], data: Path, workdir: Path, http: str) -> Run:
    processes, outs = [], {}
    for model, rate in rates.items():
        outs[model] = workdir / f"pa-{model}.csv"
        outs[model].unlink(missing_ok=True)
        processes.append(subprocess.Popen(
            [pa, "-m", model, "-u", url, "-i", args.protocol, "--request-rate-range", str(rate), "-p", str(args.p),
             "--request-distribution", args.distribution,
             "-s", "50", "-r", "4", "--input-data", str(data), "-f", str(outs[model])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    server_rates, cpu = sample(processes, http, list(rates))
    figures = {}
    for process, model in zip(processes, rates):
        output, _ = process.communicate()
        if process.returncode != 0 or not outs[model].exists():
            raise RuntimeError(f"perf_analyzer on {model} failed ({process.returncode}):\n{output[-1500:]}")
        row = next(csv.DictReader(outs[model].open()))
        figures[model] = Figures(float(row["Inferences/Second"]), float(row["p50 latency"]), float(row["p99 latency"]),
                                 server_rates[model])  # fmt: skip
    return Run(figures, cpu)


def run_loadgen(url: str, args, rates: dict[str, float], data: Path, workdir: Path, http: str) -> Run:
    scenario, report = workdir / "mix.yaml", workdir / "loadgen"
    items = "".join(f"  - {{model-name: {model}, request-rate-range: {rate}}}\n" for model, rate in rates.items())
    scenario.write_text(f"stability-percentage: 50\nmax-trials: 4\nrequest-distribution: {args.distribution}\nmodels:\n{items}")
    command = [sys.executable, "-m", "loadgen", "run", "--config", str(scenario), "-u", url, "-i", args.protocol,
               "-p", str(args.p), "--input-data", str(data), "--report-dir", str(report)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    server_rates, cpu = sample([process], http, list(rates))
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"loadgen failed ({process.returncode}):\n{output[-1500:]}")
    figures = {}
    for part in json.loads((report / "summary.json").read_text())["mix"]:
        (level,) = part["levels"]
        client = level["client"]
        figures[part["config"]["model_name"]] = Figures(
            client["throughput_infer_per_s"], client["percentile_latency_us"]["p50"], client["percentile_latency_us"]["p99"],
            server_rates[part["config"]["model_name"]])  # fmt: skip
    return Run(figures, cpu)


def mean(runs: list[Run], model: str) -> Figures:
    return Figures(*(statistics.fmean(getattr(run.models[model], name) for run in runs)
                     for name in ("throughput", "p50_us", "p99_us", "server_rate")))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="5,20", help=f"requests/s of {MODEL} and of {SECOND} (default 5,20)")
    parser.add_argument("-p", type=int, default=3000, help="measurement window in ms for both tools (default 3000)")
    parser.add_argument("--pairs", type=int, default=1, help="ABBA blocks (default 1: 2 runs of each tool)")
    parser.add_argument("--protocol", default="http", choices=("http", "grpc"))
    parser.add_argument("--distribution", default="constant", choices=("constant", "poisson"),
                        help="arrivals of both tools (default constant: loadgen's two schedules then start in step)")
    args = parser.parse_args()
    first, second = (float(value) for value in args.rates.split(","))
    rates = {MODEL: first, SECOND: second}

    pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-mix-"))
    data = input_file(workdir)
    server = EmbeddedServer(ROOT / "model_repository", workdir / "server.log")
    endpoints = server.start()
    url = endpoints.http if args.protocol == "http" else endpoints.grpc
    runs: dict[str, list[Run]] = {"perf_analyzer": [], "loadgen": []}
    try:
        for tool in ["perf_analyzer", "loadgen", "loadgen", "perf_analyzer"] * args.pairs:
            try:
                if tool == "perf_analyzer":
                    measured = run_perf_analyzer(pa, url, args, rates, data, workdir, endpoints.http)
                else:
                    measured = run_loadgen(url, args, rates, data, workdir, endpoints.http)
            except RuntimeError as exc:
                print(f"  {tool}: no result: {str(exc).splitlines()[-1]}", file=sys.stderr)
                continue
            runs[tool].append(measured)
            print(f"  {tool}: {measured}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    if not (runs["perf_analyzer"] and runs["loadgen"]):
        print("no comparison: a tool gave no result", file=sys.stderr)
        return 1
    print(f"\nTwo models at once, {args.protocol}, open loop, {args.distribution} arrivals (-p {args.p}; ABBA x{args.pairs}; server rates "
          f"and CPU sampled over {SAMPLE_S:g} s of steady load)\n")  # fmt: skip
    header = ("model", "target/s", "PA infer/s", "LG infer/s", "PA server/s", "LG server/s", "PA p50 ms", "LG p50 ms",
              "PA p99 ms", "LG p99 ms")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for model, rate in rates.items():
        theirs, mine = mean(runs["perf_analyzer"], model), mean(runs["loadgen"], model)
        print(f"| {model} | {rate:g} | {theirs.throughput:.2f} | {mine.throughput:.2f} | {theirs.server_rate:.2f} | "
              f"{mine.server_rate:.2f} | {theirs.p50_us / 1e3:.1f} | {mine.p50_us / 1e3:.1f} | {theirs.p99_us / 1e3:.1f} | "
              f"{mine.p99_us / 1e3:.1f} |")
    pa_cpu = statistics.fmean(run.cpu_us_per_request for run in runs["perf_analyzer"])
    lg_cpu = statistics.fmean(run.cpu_us_per_request for run in runs["loadgen"])
    print(f"\nClient CPU per 1000 requests: perf_analyzer (2 processes) {pa_cpu:.0f} ms, loadgen (1 process) {lg_cpu:.0f} ms, "
          f"ratio {lg_cpu / pa_cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
