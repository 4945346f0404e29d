"""Soak: does a long run stay small? loadgen and perf_analyzer each hold one steady rate for minutes.

    python bench/soak.py [--minutes 10] [--rate 40] [--protocol http|grpc] [--collect-metrics] [--profile-export]

Installs perf_analyzer with ../shared/tools/get-perf-analyzer, starts the embedded server once on
model_repository/ and runs, one after the other against it, `loadgen run` and perf_analyzer at the
same open-loop rate (--request-rate-range, constant arrivals) and with the same input
(grace_hopper.jpg as perf_analyzer JSON). Both get the same window flags, `-p WINDOW_MS
-s STABILITY_PCT -r TRIALS`: a 0.01% spread is never reached on a VM, so each tool measures the one
level window after window for the whole duration (perf_analyzer then exits 2, "no stable
measurement", which is expected and ignored). Only -r differs, so that both hold the load for the
given minutes: loadgen's windows last -p, perf_analyzer's 1.2 x -p (it sleeps
`measurement_window_ms_ * 1.2` per pass; 12.0 s per pass measured at -p 10000), so loadgen gets
minutes * 60 / 10 windows and perf_analyzer minutes * 60 / 12. With --collect-metrics both scrape
the server's metrics page every 1000 ms (their default). With --profile-export both write every
request to --profile-export-file (loadgen streams it window by window; perf_analyzer keeps every
request's record until it exits).

While each tool runs, the bench reads its resident memory (VmRSS in /proc/PID/status; the Python
process for loadgen, perf_analyzer's process) and the server's success count for the model every
SAMPLE_S seconds. The success count tells when the tool's load began and ended.

- start: the first sample at least WARMUP_S (60 s) after the first request reached the server.
  By then both tools have opened their connections, closed several windows (every per-window
  structure has been built at least once) and each Python allocator arena in use is warm, so
  what follows is growth with run length, not start-up. It is taken the same way for both tools.
- end: the last sample while the load still ran (the success count still rose), so the figure is
  the load's own footprint. `exit` is the last sample before the process exited: it adds what
  a tool does once after the load (loadgen renders its plots and report.html), a one-off cost
  that does not grow with run length and is shown apart (at one sample per SAMPLE_S, a report
  written in under that time may fall between samples). `peak` is the highest sample.
- growth: (end - start) / start. loadgen must stay under GROWTH_LIMIT_PCT.

The printout gives both tools' figures and the ratios loadgen / perf_analyzer of end RSS and of
growth (the growth ratio is only meaningful when perf_analyzer's growth is not near zero; both
absolute growths in MiB are shown too). The RSS trace of each run goes to stderr every minute.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import MODEL, ROOT, input_file, perf_analyzer, success_count

from loadgen.server import EmbeddedServer

WINDOW_MS = 10_000
STABILITY_PCT = 0.01
SAMPLE_S = 2.0
WARMUP_S = 60.0
GROWTH_LIMIT_PCT = 10.0
MIB = 1024 * 1024
PA_PASS_FACTOR = 1.2  # a perf_analyzer pass holds the load for 1.2 measurement windows


@dataclass
class Sample:
    t_s: float  # since the tool was started
    rss_bytes: int
    success: int  # the server's success count for the model


@dataclass
class Soak:
    tool: str
    samples: list[Sample] = field(default_factory=list)
    exit_code: int | None = None
    output: str = ""

    def _loaded(self) -> list[int]:
        """Indices of the samples at which the load had begun and had not yet ended."""
        first = self.samples[0].success
        began = next((i for i, s in enumerate(self.samples) if s.success > first), None)
        if began is None:
            raise RuntimeError(f"{self.tool} sent no load:\n{self.output[-2000:]}")
        last_rise = max(i for i in range(1, len(self.samples)) if self.samples[i].success > self.samples[i - 1].success)
        return list(range(began, last_rise))  # the sample before the last rise: the load still ran after it

    @property
    def load_s(self) -> float:
        loaded = self._loaded()
        return self.samples[loaded[-1] + 1].t_s - self.samples[loaded[0]].t_s

    @property
    def start(self) -> Sample:
        loaded = self._loaded()
        at = self.samples[loaded[0]].t_s + WARMUP_S
        return next((self.samples[i] for i in loaded if self.samples[i].t_s >= at), self.samples[loaded[-1]])

    @property
    def end(self) -> Sample:
        return self.samples[self._loaded()[-1]]

    @property
    def exit(self) -> Sample:
        return self.samples[-1]

    @property
    def peak_bytes(self) -> int:
        return max(s.rss_bytes for s in self.samples)

    @property
    def growth_pct(self) -> float:
        return 100.0 * (self.end.rss_bytes - self.start.rss_bytes) / self.start.rss_bytes

    @property
    def rate(self) -> float:
        """Requests per second the server completed over the loaded samples."""
        loaded = self._loaded()
        first, last = self.samples[loaded[0]], self.samples[loaded[-1] + 1]
        return (last.success - first.success) / (last.t_s - first.t_s)


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def soak(tool: str, command: list[str], http: str, log_path: Path) -> Soak:
    """Run `command`, sampling its RSS and the server's success count every SAMPLE_S until it exits; its output goes to `log_path`."""
    result = Soak(tool)
    log = open(log_path, "w+")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    next_trace = 60.0
    while True:
        rss = rss_bytes(process.pid)
        if process.poll() is not None or rss is None:
            break
        now = time.monotonic() - started
        result.samples.append(Sample(now, rss, success_count(http)))
        if now >= next_trace:
            print(f"  {tool}: {now:4.0f} s  RSS {rss / MIB:6.1f} MiB", file=sys.stderr, flush=True)
            next_trace += 60.0
        time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - started - now)))
    result.exit_code = process.wait()
    log.seek(0)
    result.output = log.read()
    log.close()
    return result


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and math.isfinite(a / b) else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long each tool holds the rate (default 10)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, constant arrivals (default 40)")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http", help="protocol (default http)")
    parser.add_argument("--collect-metrics", action="store_true", help="both tools scrape the server's metrics")
    parser.add_argument("--profile-export", action="store_true", help="both tools write --profile-export-file")
    args = parser.parse_args()
    trials = max(3, round(args.minutes * 60_000 / WINDOW_MS))
    pa_trials = max(3, round(args.minutes * 60_000 / (WINDOW_MS * PA_PASS_FACTOR)))
    if trials * WINDOW_MS / 1e3 < WARMUP_S + 2 * SAMPLE_S:
        parser.error(f"--minutes must leave time after the {WARMUP_S:g} s warm-up")

    pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-soak-"))
    data = input_file(workdir)
    server = EmbeddedServer(ROOT / "model_repository", workdir / "server.log")
    endpoints = server.start()
    url = endpoints.http if args.protocol == "http" else endpoints.grpc
    common = ["-u", url, "-i", args.protocol, "--request-rate-range", f"{args.rate:g}",
              "-p", str(WINDOW_MS), "-s", str(STABILITY_PCT), "--input-data", str(data)]
    if args.collect_metrics:
        common += ["--collect-metrics", "--metrics-url", endpoints.metrics_url]
    commands = {
        "loadgen": [sys.executable, "-m", "loadgen", "run", "-m", MODEL, *common, "-r", str(trials),
                    "--report-dir", str(workdir / "loadgen")],
        "perf_analyzer": [pa, "-m", MODEL, *common, "-r", str(pa_trials), "-f", str(workdir / "pa.csv")],
    }
    if args.profile_export:
        for tool, command in commands.items():
            command += ["--profile-export-file", str(workdir / f"{tool}-export.json")]
    runs: dict[str, Soak] = {}
    print(f"outputs, reports and the server's log: {workdir}", file=sys.stderr)
    try:
        for tool, command in commands.items():
            print(f"{tool}: {args.minutes:g} min at {args.rate:g}/s ...", file=sys.stderr, flush=True)
            runs[tool] = soak(tool, command, endpoints.http, workdir / f"{tool}.log")
            if tool == "loadgen" and runs[tool].exit_code != 0:
                raise RuntimeError(f"loadgen failed ({runs[tool].exit_code}):\n{runs[tool].output[-2000:]}")
    finally:
        server.stop()

    flags = f"{args.protocol}, {args.rate:g} req/s constant, -p {WINDOW_MS} -s {STABILITY_PCT:g} -r {trials} (PA: {pa_trials})" + (
        ", --collect-metrics" if args.collect_metrics else ""
    ) + (", --profile-export-file" if args.profile_export else "")
    print(f"\nsoak: loadgen vs perf_analyzer on {MODEL}, same server and input ({flags}; "
          f"RSS every {SAMPLE_S:g} s, start = {WARMUP_S:g} s into the load, end = last sample under load)\n")
    header = ("tool", "load s", "req/s", "RSS start MiB", "end MiB", "exit MiB", "peak MiB", "growth MiB", "growth %", "exit code")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for tool, run in runs.items():
        growth_mib = (run.end.rss_bytes - run.start.rss_bytes) / MIB
        print(f"| {tool} | {run.load_s:.0f} | {run.rate:.1f} | {run.start.rss_bytes / MIB:.1f} | {run.end.rss_bytes / MIB:.1f} | "
              f"{run.exit.rss_bytes / MIB:.1f} | {run.peak_bytes / MIB:.1f} | {growth_mib:+.2f} | {run.growth_pct:+.2f} | {run.exit_code} |")
    lg, pa_run = runs["loadgen"], runs["perf_analyzer"]
    print(f"\nloadgen / perf_analyzer: end RSS {ratio(lg.end.rss_bytes, pa_run.end.rss_bytes)}, "
          f"growth {ratio(lg.growth_pct, pa_run.growth_pct)}")
    passed = lg.growth_pct < GROWTH_LIMIT_PCT
    print(f"{'PASS' if passed else 'FAIL'}: loadgen RSS growth {lg.growth_pct:+.2f}% over {lg.load_s / 60:.1f} min "
          f"(limit {GROWTH_LIMIT_PCT:g}%)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
