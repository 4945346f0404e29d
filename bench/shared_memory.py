"""System shared memory against the network path, loadgen side by side with perf_analyzer.

    python bench/shared_memory.py [--models ensemble,large] [--protocols http,grpc] [--levels 1]
                                  [-p 3000] [--pairs 1]

For each model (the shipped centernet ensemble on model_repository/ with the photograph as input,
and tests/model_repos/large's identity-4mib, a 4 MiB FP32 tensor each way, random data), one
embedded server; for each protocol, level and path (network: the tensors in the requests;
system: --shared-memory system for both tools), perf_analyzer and loadgen in ABBA order (as in
bench/vs_perf_analyzer.py, whose CPU sampling this reuses: client CPU per request measured from
outside over a steady stretch, against the server's success counter).

Prints, per model, protocol, level and path: each tool's throughput, p50 and p99 and CPU per
request, loadgen's ratios to perf_analyzer; then each tool's system/network ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import MODEL, ROOT, input_file, perf_analyzer
from vs_perf_analyzer import sample_cpu

from loadgen.server import EmbeddedServer

# Both tools' region size for an output whose shape does not fix it (the ensemble's strings).
OUTPUT_SIZE_BYTES = 1 << 20
PATHS = ("network", "system")


@dataclass(frozen=True)
class Model:
    key: str
    repository: Path
    name: str
    photo_input: bool  # the photograph as perf_analyzer JSON; else both tools' random data


MODELS = {
    "ensemble": Model("ensemble", ROOT / "model_repository", MODEL, True),
    "large": Model("large", ROOT / "tests" / "model_repos" / "large", "identity-4mib", False),
}


@dataclass(frozen=True)
class Measured:
    throughput: float
    p50_us: float
    p99_us: float
    cpu_us_per_request: float


def _shm_flags(path: str) -> list[str]:
    return ["--shared-memory", "system", "--output-shared-memory-size", str(OUTPUT_SIZE_BYTES)] if path == "system" else []


def run_tool(tool: str, model: Model, url: str, protocol: str, level: int, path: str, args, data: list[str], workdir: Path,
             http: str) -> Measured:  # fmt: skip
    common = ["-m", model.name, "-u", url, "-i", protocol, "--concurrency-range", str(level), "-p", str(args.p),
              "-s", str(args.s), "-r", str(args.r), *data, *_shm_flags(path)]  # fmt: skip
    out = workdir / f"{tool}-{model.key}-{protocol}-{level}-{path}"
    if tool == "perf_analyzer":
        command = [args.pa, *common, "-f", str(out) + ".csv"]
    else:
        command = [sys.executable, "-m", "loadgen", "run", *common, "--report-dir", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        cpu, _ = sample_cpu(process, http, model.name)
    finally:
        output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{tool} failed ({process.returncode}):\n{output[-2000:]}")
    if tool == "perf_analyzer":
        row = next(csv.DictReader(Path(str(out) + ".csv").open()))
        return Measured(float(row["Inferences/Second"]), float(row["p50 latency"]), float(row["p99 latency"]), cpu)
    (level_result,) = json.loads((out / "summary.json").read_text())["levels"]
    client = level_result["client"]
    if client["error_count"]:
        raise RuntimeError(f"loadgen had {client['error_count']} errors")
    percentiles = client["percentile_latency_us"]
    return Measured(client["throughput_infer_per_s"], percentiles["p50"], percentiles["p99"], cpu)


def mean(runs: list[Measured]) -> Measured:
    return Measured(*(statistics.fmean(getattr(r, f) for r in runs) for f in ("throughput", "p50_us", "p99_us", "cpu_us_per_request")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ensemble,large", help="ensemble, large or both (default both)")
    parser.add_argument("--protocols", default="http,grpc", help="protocols (default http,grpc)")
    parser.add_argument("--levels", default="1", help="concurrency levels (default 1)")
    parser.add_argument("-p", type=int, default=3000, help="measurement window in ms for both tools (default 3000)")
    parser.add_argument("-s", type=float, default=15, help="stability percentage for both tools (default 15)")
    parser.add_argument("-r", type=int, default=10, help="max windows for both tools (default 10)")
    parser.add_argument("--pairs", type=int, default=1, help="ABBA blocks per cell (default 1: 2 runs of each tool)")
    args = parser.parse_args()
    args.pa = perf_analyzer()
    levels = [int(v) for v in args.levels.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-shm-bench-"))
    results: dict[tuple[str, str, int, str], dict[str, Measured]] = {}
    for key in args.models.split(","):
        model = MODELS[key]
        data = ["--input-data", str(input_file(workdir))] if model.photo_input else []
        server = EmbeddedServer(model.repository, workdir / f"server-{key}.log", explicit_models=(model.name,))
        endpoints = server.start()
        try:
            for protocol in args.protocols.split(","):
                url = endpoints.http if protocol == "http" else endpoints.grpc
                for level in levels:
                    for path in PATHS:
                        runs: dict[str, list[Measured]] = {"perf_analyzer": [], "loadgen": []}
                        for tool in ["perf_analyzer", "loadgen", "loadgen", "perf_analyzer"] * args.pairs:
                            try:
                                measured = run_tool(tool, model, url, protocol, level, path, args, data, workdir, endpoints.http)
                            except RuntimeError as exc:
                                print(f"  {key} {protocol} {level} {path} {tool}: no result: {str(exc).splitlines()[-1]}",
                                      file=sys.stderr)  # fmt: skip
                                continue
                            runs[tool].append(measured)
                            print(f"  {key} {protocol} {level} {path} {tool}: {measured}", file=sys.stderr, flush=True)
                        if all(runs.values()):
                            results[key, protocol, level, path] = {tool: mean(r) for tool, r in runs.items()}
        finally:
            server.stop()

    print(f"\nShared memory (system) against the network path, loadgen and perf_analyzer on the same server and input "
          f"(-p {args.p} -s {args.s} -r {args.r}; ABBA x{args.pairs}; CPU per request sampled from outside)\n")
    header = ("model", "proto", "conc", "path", "PA infer/s", "LG infer/s", "ratio", "PA p50/p99 us", "LG p50/p99 us",
              "PA CPU us/req", "LG CPU us/req", "CPU ratio")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (key, protocol, level, path), by_tool in results.items():
        pa, lg = by_tool["perf_analyzer"], by_tool["loadgen"]
        print(f"| {key} | {protocol} | {level} | {path} | {pa.throughput:.1f} | {lg.throughput:.1f} | "
              f"{lg.throughput / pa.throughput:.2f} | {pa.p50_us:.0f}/{pa.p99_us:.0f} | {lg.p50_us:.0f}/{lg.p99_us:.0f} | "
              f"{pa.cpu_us_per_request:.0f} | {lg.cpu_us_per_request:.0f} | {lg.cpu_us_per_request / pa.cpu_us_per_request:.2f} |")
    print("\nsystem / network, each tool against itself (throughput, p50, CPU per request):\n")
    print("| model | proto | conc | PA infer/s | LG infer/s | PA p50 | LG p50 | PA CPU | LG CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (key, protocol, level, path), by_tool in results.items():
        network = results.get((key, protocol, level, "network"))
        if path != "system" or network is None:
            continue
        cells = []
        for figure in ("throughput", "p50_us", "cpu_us_per_request"):
            for tool in ("perf_analyzer", "loadgen"):
                cells.append(f"{getattr(by_tool[tool], figure) / getattr(network[tool], figure):.2f}")
        print(f"| {key} | {protocol} | {level} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
