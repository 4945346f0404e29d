"""loadgen --streaming side by side with perf_analyzer --streaming, genai-perf and AIPerf, on one server.

    python bench/streaming.py [--levels 1,4] [--cases stream16-grpc,llm-grpc,llm-http] [-p 3000] [-s 30] [-r 10]
                              [--pairs 1] [--max-tokens 32] [--genai-perf EXE] [--aiperf EXE]

Starts the embedded server once, on model_repository/ and tests/model_repos/decoupled/, with only
`stream16` and `llm-ensemble` loaded, then measures, at each closed-loop concurrency of --levels:

- stream16-grpc: `stream16` (16 responses per request, the first 40 ms after it came, then one
  every 5 ms: a known answer) over gRPC streaming, loadgen against perf_analyzer --streaming;
- llm-grpc: `llm-ensemble` (tokenizer, tiny-lm streaming one response per token, detokenizer)
  over gRPC streaming, loadgen against perf_analyzer --streaming;
- llm-http: `llm-ensemble` over HTTP, Triton's generate_stream endpoint (server-sent events),
  loadgen against genai-perf (`--endpoint-type generate`, which drives perf_analyzer's OpenAI
  client) and AIPerf (`--endpoint-type template`), each given the shipped tokenizer's folder
  (model_repository/tokenizer) in place of a model hub's.

Every tool sends the same prompt (PROMPT) with max_tokens --max-tokens, and uses the same window
settings where it has them (-p, -s, -r for loadgen, perf_analyzer and genai-perf, which passes them
to perf_analyzer; AIPerf has no stabilization: it runs --warmup-request-count requests, then for
3 windows' time). Within a case and level the tools run in palindromic blocks (loadgen, peers,
peers reversed, loadgen: ABBA; --pairs blocks), so that drift of the shared machine, linear over a
block, cancels in each tool's mean. AIPerf, last in its block, runs once, in the middle
(loadgen, genai-perf, aiperf, genai-perf, loadgen): a run of it takes 2-5 times as long as the others'.

The figures, the same for every tool: requests/s, request latency (to the final response) p50/p99,
time to first response (TTFT) p50/p99, the gaps between a request's consecutive responses (ITL)
p50/p99, and responses per request. loadgen's are its own (summary.json). The peers' are drawn, by
one function, from their per-request exports: perf_analyzer's and genai-perf's profile export
(each response's arrival time; the requests whose last response fell in the 3 windows the tool
reported, as perf_analyzer counts them; a response without output, genai-perf's end of stream,
is not one), AIPerf's profile_export.jsonl (its time to first token and the gaps between chunks,
which are the server-sent events). For perf_analyzer that reproduces its own throughput and
latency. The peers' own headline figures are printed after: genai-perf's and AIPerf's ITL is not the
gaps between responses but one mean per request, (latency - TTFT) / (output tokens - 1), output
tokens counted by re-tokenizing the text (32 for PROMPT, one per response; other prompts' outputs,
with lone bytes decoded as U+FFFD, re-tokenize to more), so it smooths the gaps' tail away.

On 2 cores the client's CPU is taken from the server, so each run's client CPU per request is
measured too, from outside and alike for every tool: the CPU time of the tool's whole process tree
(genai-perf's perf_analyzer and AIPerf's services included) against the server's success count for
the model, over SAMPLE_S of steady load starting WARMUP_S after the run's first success, so that
no tool's start-up is charged.

perf_analyzer, and so genai-perf, ends with no figures (exit 2) when a level does not stabilize
within -r windows; that run is left out, and the table's runs column counts the runs with figures.
loadgen reports an unstable level with its figures, and they are used.

genai-perf and AIPerf are not loadgen's dependencies: install each in a virtual environment of
its own (never loadgen's), e.g. `python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install
genai-perf`, and the same for aiperf in /tmp/aiperf-venv; the bench finds them on PATH or at
--genai-perf / --aiperf, and leaves a case's missing peer out, saying so. perf_analyzer is
installed by ../shared/tools/get-perf-analyzer. It is a bench, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import ROOT, perf_analyzer

from loadgen.server import EmbeddedServer
from loadgen.stats import percentile_of_sorted

DECOUPLED_REPOSITORY = ROOT / "tests" / "model_repos" / "decoupled"
TOKENIZER = ROOT / "model_repository" / "tokenizer"
PROMPT = "The river starts in the hills above the town and runs down past the old mill to the sea"
WINDOWS = 3  # windows perf_analyzer (and loadgen) report once stable
RUN_TIMEOUT_S = 300
WARMUP_S = 1.0  # from a run's first success to its CPU sample
SAMPLE_S = 3.0  # the CPU sample: inside the shortest run's steady load (3 windows of -p 2000 at least)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Tools run once per block, in its middle: a run of AIPerf (its services start, each loading the
# tokenizer) took 21-23 s here on a quiet machine and about 70 s under load, against 11-14 s for the others.
ONCE = ("aiperf",)


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    protocol: str
    peers: tuple[str, ...]


CASES = {
    "stream16-grpc": Case("stream16-grpc", "stream16", "grpc", ("perf_analyzer",)),
    "llm-grpc": Case("llm-grpc", "llm-ensemble", "grpc", ("perf_analyzer",)),
    "llm-http": Case("llm-http", "llm-ensemble", "http", ("genai-perf", "aiperf")),
}


@dataclass(frozen=True)
class Figures:
    """One run's figures; None where the source has no such figure (a peer's own headline)."""

    throughput_per_s: float
    latency_p50_us: float
    latency_p99_us: float
    ttft_p50_us: float | None
    ttft_p99_us: float | None
    itl_p50_us: float | None
    itl_p99_us: float | None
    responses_per_request: float | None
    request_count: int | None


@dataclass(frozen=True)
class Run:
    tool: str
    figures: Figures  # the compared figures (a peer's drawn from its per-request export)
    own: Figures  # the tool's own headline figures, as it reports them
    cpu_us_per_request: float | None  # the client's, sampled in its steady load; None if it ended first


def streamed_figures(requests: Sequence[tuple[int, Sequence[int]]], duration_s: float) -> Figures:
    """Figures of streamed requests, each (start ns, its responses' arrival ns), over duration_s."""
    done = [(start, np.asarray(times, dtype=np.int64)) for start, times in requests if len(times)]
    if not done:
        raise RuntimeError("no request with a response in the measured windows")
    latency_us = np.sort([(times[-1] - start) / 1e3 for start, times in done])
    ttft_us = np.sort([(times[0] - start) / 1e3 for start, times in done])
    gaps_us = np.sort(np.concatenate([np.diff(times) / 1e3 for _, times in done]))

    def at(values: np.ndarray, percentile: float) -> float | None:
        return percentile_of_sorted(values, percentile) if values.size else None

    return Figures(
        throughput_per_s=len(done) / duration_s,
        latency_p50_us=at(latency_us, 50),
        latency_p99_us=at(latency_us, 99),
        ttft_p50_us=at(ttft_us, 50),
        ttft_p99_us=at(ttft_us, 99),
        itl_p50_us=at(gaps_us, 50),
        itl_p99_us=at(gaps_us, 99),
        responses_per_request=sum(times.size for _, times in done) / len(done),
        request_count=len(done),
    )


def export_figures(path: Path) -> Figures:
    """From a perf_analyzer-format profile export: the requests whose last response fell in the
    last WINDOWS windows (perf_analyzer's own rule), responses without output left out."""
    experiment = json.loads(path.read_text())["experiments"][-1]
    bounds = experiment["window_boundaries"]
    first, last = bounds[max(0, len(bounds) - 1 - WINDOWS)], bounds[-1]
    requests = []
    for request in experiment["requests"]:
        times, outputs = request["response_timestamps"], request.get("response_outputs", [])
        if len(outputs) == len(times):  # genai-perf's HTTP stream ends with an empty "response"
            times = [t for t, output in zip(times, outputs) if any(v != "" for v in output.values())]
        if times and first <= times[-1] <= last:
            requests.append((request["timestamp"], times))
    return streamed_figures(requests, (last - first) / 1e9)


def aiperf_records_figures(path: Path) -> Figures:
    """From AIPerf's profile_export.jsonl: each request's start, its time to first token and the
    gaps between its chunks (ms); the measured phase only, failed requests left out."""
    requests, starts, ends = [], [], []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        meta, metrics = record["metadata"], record["metrics"]
        if meta.get("benchmark_phase") != "profiling" or record.get("error") or "time_to_first_token" not in metrics:
            continue
        start = meta["request_start_ns"]
        offsets_ms = np.cumsum([metrics["time_to_first_token"]["value"],
                                *metrics.get("inter_chunk_latency", {}).get("value", [])])  # fmt: skip
        requests.append((start, [start + int(ms * 1e6) for ms in offsets_ms]))
        starts.append(start)
        ends.append(meta["request_end_ns"])
    if not requests:
        raise RuntimeError(f"no measured request in {path}")
    return streamed_figures(requests, (max(ends) - min(starts)) / 1e9)


def headline_figures(summary: dict) -> Figures:
    """genai-perf's or AIPerf's own summary (the same keys, in ms)."""

    def ms(metric: str, key: str) -> float | None:
        value = summary.get(metric, {}).get(key)
        return value * 1e3 if value is not None else None

    return Figures(summary["request_throughput"]["avg"], ms("request_latency", "p50"), ms("request_latency", "p99"),
                   ms("time_to_first_token", "p50"), ms("time_to_first_token", "p99"),
                   ms("inter_token_latency", "p50"), ms("inter_token_latency", "p99"), None,
                   int(summary["request_count"]["avg"]))  # fmt: skip


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and its descendants: each live one's own, and through cutime/cstime
    those that exited and were waited for (genai-perf's perf_analyzer, AIPerf's services)."""
    children, times = defaultdict(list), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it exited meanwhile
                continue
            children[int(fields[1])].append(int(entry.name))
            times[int(entry.name)] = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0)
        todo.extend(children[pid])
    return total / CLOCK_TICKS


def success_count(http: str, model: str) -> int:
    with urllib.request.urlopen(f"http://{http}/v2/models/{model}/stats", timeout=5) as response:
        return int(json.load(response)["model_stats"][0]["inference_stats"]["success"]["count"])


def sample_cpu(process: subprocess.Popen, http: str, model: str) -> float | None:
    """The client's CPU µs per request (the server's successes) over SAMPLE_S of its steady load,
    from outside, so that no tool's start-up is charged; None if it finished before the sample."""
    start = success_count(http, model)
    while success_count(http, model) == start:  # AIPerf took up to a minute to start here
        if process.poll() is not None:
            return None
        time.sleep(0.1)
    time.sleep(WARMUP_S)
    cpu0, count0 = tree_cpu_s(process.pid), success_count(http, model)
    time.sleep(SAMPLE_S)
    if process.poll() is not None:
        return None
    cpu1, count1 = tree_cpu_s(process.pid), success_count(http, model)
    return (cpu1 - cpu0) * 1e6 / max(count1 - count0, 1)


def run_command(command: list[str], log: Path, http: str, model: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> float | None:
    """Run a tool to its end, its output in log; its CPU µs per request, sampled meanwhile."""
    with log.open("w") as out:
        # Its own session: a tool that overruns is ended with all its processes (its group).
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   start_new_session=True)  # fmt: skip
        try:
            cpu_us = sample_cpu(process, http, model)
            process.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if process.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(command[0]).name} exited with {process.returncode} (see {log}): " + " / ".join(tail))
    return cpu_us


class Bench:
    def __init__(self, args, endpoints, workdir: Path) -> None:
        self.args, self.endpoints, self.workdir = args, endpoints, workdir
        self.runs = 0
        self.pa_data = workdir / "prompt.json"  # perf_analyzer's JSON, for perf_analyzer and loadgen
        self.pa_data.write_text(json.dumps({"data": [{"text_input": [PROMPT], "max_tokens": [args.max_tokens]}]}))
        self.prompts = workdir / "prompts.jsonl"  # genai-perf's and AIPerf's single-turn file
        self.prompts.write_text(json.dumps({"text": PROMPT}) + "\n")
        self.template = workdir / "generate_template.json"  # AIPerf's body for generate_stream
        self.template.write_text('{"text_input": {{ text|tojson }}, "max_tokens": ' + str(args.max_tokens) + "}\n")

    def out(self, tool: str, case: Case, level: int) -> Path:
        self.runs += 1
        path = self.workdir / f"{self.runs:02d}-{case.name}-c{level}-{tool}"
        path.mkdir()
        return path

    def url(self, case: Case) -> str:
        return self.endpoints.grpc if case.protocol == "grpc" else self.endpoints.http

    def inputs(self, case: Case) -> list[str]:
        return ["--shape", "IN:1"] if case.model == "stream16" else ["--input-data", str(self.pa_data)]

    def windows(self) -> list[str]:
        return ["-p", str(self.args.p), "-s", str(self.args.s), "-r", str(self.args.r)]

    def run(self, tool: str, case: Case, level: int) -> Run:
        return getattr(self, "run_" + tool.replace("-", "_"))(case, level, self.out(tool, case, level))

    def run_loadgen(self, case: Case, level: int, out: Path) -> Run:
        command = [sys.executable, "-m", "loadgen", "run", "-u", self.url(case), "-i", case.protocol, "--streaming",
                   "-m", case.model, "--concurrency-range", str(level), *self.windows(), *self.inputs(case),
                   "--report-dir", str(out / "report")]  # fmt: skip
        cpu_us = run_command(command, out / "log.txt", self.endpoints.http, case.model, cwd=ROOT)
        (level_summary,) = json.loads((out / "report" / "summary.json").read_text())["levels"]
        client, stream = level_summary["client"], level_summary["streaming"]
        itl = stream["itl_us"] or {}
        figures = Figures(client["throughput_infer_per_s"], client["percentile_latency_us"]["p50"],
                          client["percentile_latency_us"]["p99"], stream["ttft_us"]["p50"], stream["ttft_us"]["p99"],
                          itl.get("p50"), itl.get("p99"), stream["responses_per_request"],
                          stream["request_count"])  # fmt: skip
        return Run("loadgen", figures, figures, cpu_us)

    def run_perf_analyzer(self, case: Case, level: int, out: Path) -> Run:
        command = [self.args.pa, "-m", case.model, "-u", self.url(case), "-i", "grpc", "--streaming",
                   "--concurrency-range", str(level), *self.windows(), *self.inputs(case),
                   "--profile-export-file", str(out / "export.json"), "-f", str(out / "pa.csv")]  # fmt: skip
        cpu_us = run_command(command, out / "log.txt", self.endpoints.http, case.model)
        row = next(csv.DictReader((out / "pa.csv").read_text().splitlines()))
        own = Figures(float(row["Inferences/Second"]), float(row["p50 latency"]), float(row["p99 latency"]),
                      None, None, None, None, None, None)  # fmt: skip
        return Run("perf_analyzer", export_figures(out / "export.json"), own, cpu_us)

    def run_genai_perf(self, case: Case, level: int, out: Path) -> Run:
        # genai-perf runs perf_analyzer (its OpenAI client, for the generate endpoint) from PATH.
        env = {**os.environ, "PATH": f"{Path(self.args.pa).parent}{os.pathsep}{os.environ['PATH']}"}
        command = [self.args.genai_perf, "profile", "-m", case.model, "--endpoint-type", "generate",
                   "--endpoint", f"v2/models/{case.model}/generate_stream", "--streaming", "-u", self.endpoints.http,
                   "--tokenizer", str(TOKENIZER), "--input-file", str(self.prompts),
                   "--output-tokens-mean", str(self.args.max_tokens), "--concurrency", str(level),
                   "--measurement-interval", str(self.args.p), "-s", str(self.args.s),
                   "--artifact-dir", str(out / "artifacts"), "--", "-r", str(self.args.r)]  # fmt: skip
        cpu_us = run_command(command, out / "log.txt", self.endpoints.http, case.model, env=env, cwd=out)
        (export,) = (out / "artifacts").glob("*/profile_export.json")
        own = headline_figures(json.loads((export.parent / "profile_export_genai_perf.json").read_text()))
        return Run("genai-perf", export_figures(export), own, cpu_us)

    def run_aiperf(self, case: Case, level: int, out: Path) -> Run:
        duration_s = WINDOWS * self.args.p / 1e3
        command = [self.args.aiperf, "profile", "-m", case.model, "--endpoint-type", "template",
                   "--custom-endpoint", f"/v2/models/{case.model}/generate_stream", "--streaming",
                   "-u", f"http://{self.endpoints.http}", "--tokenizer", str(TOKENIZER),
                   "--input-file", str(self.prompts), "--custom-dataset-type", "single_turn",
                   "--extra-inputs", f"payload_template:{self.template}", "--extra-inputs", "response_field:text_output",
                   "--concurrency", str(level), "--warmup-request-count", str(2 * level),
                   "--benchmark-duration", f"{duration_s:g}", "--no-gpu-telemetry", "--no-server-metrics",
                   "--ui-type", "none", "--artifact-dir", str(out / "artifacts")]  # fmt: skip
        cpu_us = run_command(command, out / "log.txt", self.endpoints.http, case.model, cwd=out)
        own = headline_figures(json.loads((out / "artifacts" / "profile_export_aiperf.json").read_text()))
        return Run("aiperf", aiperf_records_figures(out / "artifacts" / "profile_export.jsonl"), own, cpu_us)


def block_order(tools: list[str]) -> list[str]:
    """The tools, then the same reversed (ABBA): linear drift cancels in each tool's mean. A last
    tool in ONCE is not repeated, its one run in the middle of the block."""
    back = tools[::-1]
    return tools + (back[1:] if tools[-1] in ONCE else back)


def mean_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def mean(figures: list[Figures]) -> Figures:
    """Each figure's mean over the runs that have it."""
    return Figures(**{field.name: mean_of([getattr(f, field.name) for f in figures])
                      for field in dataclasses.fields(Figures)})  # fmt: skip


# The table's columns: header, divisor from the figure's unit, decimals.
COLUMNS = (("req/s", 1, 2), ("latency p50 ms", 1e3, 1), ("p99 ms", 1e3, 1), ("TTFT p50 ms", 1e3, 1), ("p99 ms", 1e3, 1),
           ("ITL p50 ms", 1e3, 1), ("p99 ms", 1e3, 1), ("resp/req", 1, 1), ("client CPU ms/req", 1e3, 2))  # fmt: skip
OWN_COLUMNS = 7  # the peers' own headline figures: up to ITL


def row(f: Figures, cpu_us: float | None) -> list[float | None]:
    return [f.throughput_per_s, f.latency_p50_us, f.latency_p99_us, f.ttft_p50_us, f.ttft_p99_us, f.itl_p50_us,
            f.itl_p99_us, f.responses_per_request, cpu_us]  # fmt: skip


def cells(values: list[float | None]) -> str:
    return " | ".join("-" if v is None else f"{v / scale:.{digits}f}" for v, (_, scale, digits) in zip(values, COLUMNS))


def ratios(mine: list[float | None], theirs: list[float | None]) -> str:
    return " | ".join("-" if a is None or not b else f"{a / b:.2f}" for a, b in zip(mine, theirs))


def print_tables(results: dict[tuple[str, int], list[Run]]) -> None:
    header = ["case", "conc", "tool", "runs", *(name for name, _, _ in COLUMNS)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (case_name, level), runs in results.items():
        tools = list(dict.fromkeys(run.tool for run in runs))
        rows = {tool: row(mean([r.figures for r in runs if r.tool == tool]),
                          mean_of([r.cpu_us_per_request for r in runs if r.tool == tool])) for tool in tools}  # fmt: skip
        for tool in tools:
            print(f"| {case_name} | {level} | {tool} | {sum(r.tool == tool for r in runs)} | {cells(rows[tool])} |")
        for peer in tools:
            if peer != "loadgen" and "loadgen" in rows:
                print(f"| {case_name} | {level} | loadgen/{peer} | | {ratios(rows['loadgen'], rows[peer])} |")

    print("\nThe peers' own headline figures (perf_analyzer: its CSV, no TTFT or ITL; genai-perf and AIPerf: their "
          "summary JSON, ITL per output token as they count tokens):\n")
    print("| " + " | ".join(header[: 4 + OWN_COLUMNS]) + " |")
    print("|" + "---|" * (4 + OWN_COLUMNS))
    for (case_name, level), runs in results.items():
        for tool in dict.fromkeys(r.tool for r in runs if r.tool != "loadgen"):
            own = row(mean([r.own for r in runs if r.tool == tool]), None)[:OWN_COLUMNS]
            print(f"| {case_name} | {level} | {tool} | {sum(r.tool == tool for r in runs)} | {cells(own)} |")


def find_peer(given: str | None, name: str) -> str | None:
    return given or shutil.which(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4", help="closed-loop concurrencies (default 1,4)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"cases to run (default {','.join(CASES)})")
    parser.add_argument("-p", type=int, default=3000, help="window in ms, for every tool (default 3000)")
    parser.add_argument("-s", type=float, default=30, help="stability percentage (default 30)")
    parser.add_argument("-r", type=int, default=10, help="most windows per level (default 10)")
    parser.add_argument("--pairs", type=int, default=1, help="palindromic blocks per case and level (default 1)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens llm-ensemble generates per request (default 32)")
    parser.add_argument("--genai-perf", help="genai-perf's executable (default: on PATH)")
    parser.add_argument("--aiperf", help="AIPerf's executable (default: on PATH)")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]}: choose from {', '.join(CASES)}")
    cases = [CASES[name] for name in args.cases.split(",")]
    args.genai_perf = find_peer(args.genai_perf, "genai-perf")
    args.aiperf = find_peer(args.aiperf, "aiperf")
    available = {"perf_analyzer": True, "genai-perf": args.genai_perf is not None, "aiperf": args.aiperf is not None}
    for peer, found in available.items():
        if not found and any(peer in case.peers for case in cases):
            print(f"{peer}: not found (pass --{peer.replace('_', '-')} EXE): left out", file=sys.stderr)
    args.pa = perf_analyzer()

    workdir = Path(tempfile.mkdtemp(prefix="loadgen-streaming-"))
    server = EmbeddedServer(ROOT / "model_repository", workdir / "server.log",
                            extra_args=(f"--model-repository={DECOUPLED_REPOSITORY}",),
                            explicit_models=("stream16", "llm-ensemble"))  # fmt: skip
    load_before = os.getloadavg()
    results: dict[tuple[str, int], list[Run]] = {}
    bench = Bench(args, server.start(), workdir)
    try:
        for case in cases:
            tools = ["loadgen", *(peer for peer in case.peers if available[peer])]
            for level in levels:
                runs = results.setdefault((case.name, level), [])
                for tool in block_order(tools) * args.pairs:
                    try:
                        run = bench.run(tool, case, level)
                    except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as exc:
                        print(f"  {case.name} c{level} {tool}: no result: {exc}", file=sys.stderr, flush=True)
                        continue
                    runs.append(run)
                    f = run.figures
                    print(f"  {case.name} c{level} {tool}: {f.throughput_per_s:.2f} req/s, latency p50 "
                          f"{f.latency_p50_us / 1e3:.1f} ms, TTFT p50 {(f.ttft_p50_us or 0) / 1e3:.1f} ms, "
                          f"ITL p50 {(f.itl_p50_us or 0) / 1e3:.2f} ms, CPU {(run.cpu_us_per_request or 0) / 1e3:.2f} ms/req",
                          file=sys.stderr, flush=True)  # fmt: skip
    finally:
        server.stop()

    print(f"\nloadgen --streaming against its peers, one server, same prompt and max_tokens {args.max_tokens}, "
          f"closed loop, -p {args.p} -s {args.s:g} -r {args.r}, {args.pairs} palindromic block(s) "
          f"(work files in {workdir})\n")
    print_tables(results)
    print(f"\nMachine: {os.cpu_count()} cores; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
