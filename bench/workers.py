"""The highest constant request rate loadgen sustains with 1 and 2 workers, against perf_analyzer's.

    python bench/workers.py [--workers-list 1,2] [-i http|grpc] [-p 1000] [--coarse 500:6000:500]
                            [--refine-steps 4] [--retries 1] [--min-rate 100] [--pa-sync]

Installs perf_analyzer with ../shared/tools/get-perf-analyzer and starts the embedded server once
on tests/model_repos/echo. Then, against its `ident` model (FP32 [1,16] echoed back, the cheapest
request there is, so the client's own limits show), it searches the highest constant
(--request-distribution constant) request rate that perf_analyzer sustains, then that
`loadgen run --workers N` sustains for each N of --workers-list (0: one process, without --workers,
for reference), all on the same server, protocol and windows (below). It prints, per client, that
rate and its ratio to perf_analyzer's; at that rate the achieved send rate, the completed
throughput, the schedule lag p50/p99 and the share of late requests (loadgen: overall and per
worker, with each worker's CPU); and the first rate that failed, with the criterion it failed; then
every rate measured, with its late share, and perf_analyzer's measured rates judged by loadgen's
definition of late (estimated, below). It takes 4 to 6 minutes on the 2-core VM.

Both tools judge a rate on three windows of -p ms (perf_analyzer's last 1.2x as long) measured
after a warm-up: the first window of a cold client is not its steady state (a fresh loadgen
worker's first window here had sends up to 10-20 ms late and a p99 latency of 40-50 ms, against 3-5
ms for the next ones). perf_analyzer gets --warmup-request-count of one window's requests at the
rate, then -s 1000 -r 5 (last three windows within 11x of each other: stability is not a criterion
here, and perf_analyzer reports nothing for a level that never stabilizes, so it stops after
three). loadgen gets -r 4 -s 0.001: it never finds a level stable, so each level runs 4 windows and
reports the last 3 (marked unstable, which is ignored): the first is the warm-up, and within a
ladder also the switch from the previous rate.

A rate is *sustained* when, over those three windows:

- the achieved send rate is at least 98% of the target, and so is the completed throughput (the
  server kept up too);
- the schedule lag's p99 is at most 10 ms. A client that cannot keep up falls further behind with
  every request, so its lag grows without bound within a window; one that keeps up shows only the
  machine's wake-up jitter. The share of late requests (below) is reported but not judged: on this
  VM 1-3% of sends leave over 1 ms late at any rate, even from the pacer alone (below), so the 1%
  of perf_analyzer's warning is the machine's noise floor, not the client's limit;
- no request failed (perf_analyzer ends at the first failed request, so for it any non-zero exit
  is a failure too, with its message as the reason: "Failed to obtain stable measurement" (exit 2),
  "No valid requests recorded within time interval" (exit 3) when the server is swamped, ...).

*Late* is each tool's own figure (reported, not judged), and the two are defined differently:

- loadgen: a request is late when it left more than 1 ms after its intended send time
  (summary.json's open_loop.late_fraction; per worker, workers[].late_fraction). Its schedule lag
  is actual send minus intended send, whatever made it late: a busy event loop or the timer
  waking late alike.
- perf_analyzer: a request is *delayed* when the thread that sends it gets to it after its
  scheduled time, by any amount, checked before it sleeps, so a sleep that overshoots is not
  counted (RequestRateWorker::SleepIfNecessary in 2.51.0, the build installed here, compares
  `wait_time < 0` with no tolerance; newer sources add a 1 ms tolerance). The share is
  delayed ÷ requests completed in the merged windows. It reports it only when it is over 1%
  (DELAY_PCT_THRESHOLD), in its client block:

      Avg send request rate: 2507.14 infer/sec
      [WARNING] Perf Analyzer was not able to keep up with the desired request rate. 1.10% of the requests were delayed.

  so when no warning is printed the share is only known to be at most 1% ("<=1" in the table),
  and the send rate is then taken from its --profile-export-file (below).

perf_analyzer reports no schedule lag, so the bench estimates one from its --profile-export-file
(every request's actual send timestamp): the sends of the merged windows (200 ms in from either
end, so that none is missing: the export holds the requests that completed within the windows),
sorted, are matched to a grid spaced 1/rate apart, aligned so the earliest-relative send has lag 0.
That gives loadgen's definition of lag (p50, p99, and the share over 1 ms, shown as "≈") as a lower
bound: it is exact up to the best request's own lag (tens of µs), as long as no request in the span
took over 200 ms (one missing would shift every later send by 1/rate). The CPU % of perf_analyzer
is its process's CPU time sampled from /proc over 2 windows of steady load; loadgen's is each
worker's own figure (its process's CPU time over the reported windows, summary.json's
workers[].cpu_pct).

How the rate is searched, for each client alike: a coarse ladder (--coarse START:END:STEP,
ascending) until the first failure, then the bracket (highest pass, first failure) is cut by
--refine-steps evenly spaced rates, again ascending up to the first failure, until it is narrower
than 5% of the pass (or 10/s), never below --min-rate (100/s: at 8/s one late request out of 24 is
4%). An idle vCPU is slow to wake: `python bench/pacer.py --rates 20,100,500,1000,2000` (the
pacer alone, no server) measured 1.2%, 3.0%, 1.2%, 1.1% and 0.9% of sends over 1 ms late on
2026-12-01, which is why lateness is not a criterion. A failed rate is measured once more
(--retries) before it counts as failed, and counts as sustained if a retry passes, so one unlucky
measurement does not decide the whole search. Every try is listed.
loadgen measures a whole ladder in one run (--request-rate-range over the ladder), and the bench
stops it with SIGINT as soon as summary.json (rewritten after every level) shows a failed level: it
writes its report and exits 130, and its Ray processes with it. perf_analyzer runs once per rate
(it aborts a sweep at the first unstable level).

perf_analyzer runs with --async by default: in request-rate mode its default synchronous API makes
each of its 4 threads wait for a response before the next send, so it falls behind the schedule as
soon as latency exceeds 4/rate. loadgen never waits for responses in open loop, nor does
perf_analyzer with --async. --pa-sync measures perf_analyzer's default instead.

On a 2-core machine the server, perf_analyzer or loadgen's driver, Ray's own processes and the
workers all share the two cores: a second worker adds a process competing for the same CPUs, so the
2-worker figure measures this machine, not how the design scales. The bench prints the core count
and the load average before and after."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import numpy as np
from common import ROOT, perf_analyzer

from loadgen.server import EmbeddedServer
from loadgen.stats import LATE_NS

REPOSITORY = ROOT / "tests" / "model_repos" / "echo"
MODEL = "ident"
ACHIEVED_MIN = 0.98  # of the target rate
LAG_P99_MAX_US = 10_000  # a client behind its schedule falls further behind; jitter stays within this
RESOLUTION = 0.05  # stop refining when the bracket is narrower than 5% of the highest pass...
MIN_GAP = 10  # ...or than 10 requests/s
MAX_ROUNDS = 5  # ladders per client at most (the coarse one included)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PA_TRIALS, PA_STABILITY = 5, 1000  # three windows within 11x of each other: it stops after three
LOADGEN_WINDOWS, NEVER_STABLE = 4, 0.001  # a warm-up window, then the three reported
PA_CPU_WINDOWS = 2  # perf_analyzer's CPU is sampled over this many windows, after its warm-up window
STOP_WAIT_S = 30.0  # after SIGINT, loadgen writes its report and stops its workers within this
PA_EXIT_GRACE_S = 10.0  # perf_analyzer should exit this soon after writing its CSV
EXPORT_MARGIN_NS = 200_000_000  # perf_analyzer's lag estimate leaves out 200 ms at either end of its windows
RUN_NUMBERS = count(1)  # each run's files get their own names (a retried rate runs again)


@dataclass
class Level:
    """One measured rate of one client, as judged by the bench."""

    rate: float
    achieved: float | None = None  # send rate, /s
    throughput: float | None = None  # completed infer/s
    late: float | None = None  # the tool's own late share (None: perf_analyzer printed none, so <= 1%)
    lag_us: dict[str, float] = field(default_factory=dict)  # p50, p99 (perf_analyzer: estimated)
    over_1ms: float | None = None  # share sent over 1 ms late (perf_analyzer: estimated)
    errors: int = 0
    cpu_pct: float | None = None  # perf_analyzer's process
    workers: list[dict] = field(default_factory=list)  # loadgen's summary.json workers[]
    failure: str | None = None  # the run itself failed at this rate
    note: str | None = None  # something odd about the run that did not fail it
    estimated: bool = False  # lag and over_1ms are perf_analyzer estimates

    @property
    def reasons(self) -> list[str]:
        if self.failure:
            return [self.failure]
        reasons = []
        if self.achieved is None or self.achieved < ACHIEVED_MIN * self.rate:
            shown = "none" if self.achieved is None else f"{self.achieved:.0f}/s ({self.achieved / self.rate:.1%})"
            reasons.append(f"achieved send rate {shown} < {ACHIEVED_MIN:.0%} of target")
        if self.throughput is None or self.throughput < ACHIEVED_MIN * self.rate:
            shown = "none" if self.throughput is None else f"{self.throughput:.0f}/s"
            reasons.append(f"completed {shown} < {ACHIEVED_MIN:.0%} of target")
        lag_p99 = self.lag_us.get("p99")
        if lag_p99 is None or lag_p99 > LAG_P99_MAX_US:
            shown = "unknown" if lag_p99 is None else f"{lag_p99 / 1e3:.1f} ms"
            reasons.append(f"schedule lag p99 {shown} > {LAG_P99_MAX_US / 1e3:g} ms")
        if self.errors:
            reasons.append(f"{self.errors} failed requests")
        return reasons

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass
class Search:
    client: str
    tries: dict[float, list[Level]] = field(default_factory=dict)  # every measurement of every rate, in order
    best: Level | None = None  # the highest sustained rate below first_fail (its passing try)
    first_fail: Level | None = None  # the lowest failed rate (its last try)

    def record(self, level: Level) -> None:
        self.tries.setdefault(level.rate, []).append(level)

    def verdicts(self) -> dict[float, Level]:
        """Each rate's standing: a passing try if it has one, else its last failed try."""
        return {rate: next((t for t in tries if t.ok), tries[-1]) for rate, tries in self.tries.items()}


# --- running the clients ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def session_pids(sid: int) -> list[int]:
    """Every process in session `sid` (a loadgen run started in its own session, and the Ray
    processes it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                pids.append(int(entry.name))
    return pids


def end_session(process: subprocess.Popen) -> None:
    """Stop a loadgen run: SIGINT (it writes its report and stops its workers), then SIGKILL to
    whatever of its session is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
    for pid in session_pids(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.wait()


def pa_lag(export: Path, rate: float) -> tuple[dict[str, float], float, float]:
    """perf_analyzer's schedule lag estimated from its export: (p50/p99/max µs, share over 1 ms,
    send rate /s) over the sends of its merged (last three) windows, EXPORT_MARGIN_NS in from
    either end: the export holds the requests that completed within the windows, so every request
    sent in that span is there unless it took over the margin, and the sends have no gap."""
    experiment = json.loads(export.read_text())["experiments"][0]
    bounds = experiment["window_boundaries"]
    lo, hi = bounds[max(0, len(bounds) - 4)] + EXPORT_MARGIN_NS, bounds[-1] - EXPORT_MARGIN_NS
    sends = np.sort(np.array([r["timestamp"] for r in experiment["requests"]], dtype=np.int64))
    sends = sends[(sends >= lo) & (sends <= hi)]
    if len(sends) < 2:
        return {}, 0.0, 0.0
    offsets = (sends - sends[0]).astype(np.float64) - np.arange(len(sends)) * (1e9 / rate)
    lag_ns = offsets - offsets.min()
    lag_us = {f"p{p}": float(np.percentile(lag_ns, p)) / 1e3 for p in (50, 99)} | {"max": float(lag_ns.max()) / 1e3}
    return lag_us, float(np.mean(lag_ns > LATE_NS)), (len(sends) - 1) / ((sends[-1] - sends[0]) / 1e9)


def run_perf_analyzer(pa: str, rate: int, url: str, args, workdir: Path) -> Level:
    name = f"{next(RUN_NUMBERS):02d}-pa-{rate}"
    out, export = workdir / f"{name}.csv", workdir / f"{name}.json"
    command = [pa, "-m", MODEL, "-u", url, "-i", args.protocol, "--request-rate-range", str(rate),
               "--warmup-request-count", str(max(1, round(rate * args.p / 1000))),
               "-p", str(args.p), "-r", str(PA_TRIALS), "-s", str(PA_STABILITY), "-f", str(out),
               "--profile-export-file", str(export), *([] if args.pa_sync else ["--async"])]  # fmt: skip
    log = (workdir / f"{name}.log").open("w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        started = time.monotonic()
        samples = []
        window_s = args.p / 1000
        for at in (0.5 + window_s, 0.5 + (1 + PA_CPU_WINDOWS) * window_s):  # start-up and warm-up, then windows
            time.sleep(max(0.0, started + at - time.monotonic()))
            samples.append((cpu_seconds(process.pid), time.monotonic()))
        # Overloaded, it has been seen to hang after writing its results, until killed.
        deadline, written_at = started + 30 + 2 * PA_TRIALS * window_s, None
        while process.poll() is None:
            now = time.monotonic()
            if written_at is None and out.exists():
                written_at = now
            if now > deadline or (written_at is not None and now - written_at > PA_EXIT_GRACE_S):
                break
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log.seek(0)
    output = log.read()
    log.close()
    hung = process.returncode == -signal.SIGKILL and written_at is not None
    if not out.exists() or (process.returncode != 0 and not hung):  # -9 with no results: it ran too long
        last = [line.strip() for line in output.splitlines() if line.strip()]
        return Level(rate, failure=f"perf_analyzer exit {process.returncode}: {last[-1] if last else 'no output'}", estimated=True)
    (row,) = list(csv.DictReader(out.open()))
    delayed = re.search(r"([\d.]+)% of the requests were delayed", output)
    send_rate = re.search(r"Avg send request rate: ([\d.]+)", output)
    try:
        lag_us, over_1ms, export_rate = pa_lag(export, rate)
    except (OSError, ValueError, KeyError, IndexError):  # no export, or a partial one (killed while writing)
        lag_us, over_1ms, export_rate = {}, None, None
    export.unlink(missing_ok=True)  # tens of MB at high rates
    notes = [f"hung {PA_EXIT_GRACE_S:.0f} s after writing its results, killed"] if hung else []
    achieved = float(send_rate.group(1)) if send_rate else export_rate
    if achieved is None:
        achieved = float(row["Inferences/Second"])
        notes.append("no usable export: send rate taken as its throughput")
    (cpu0, t0), (cpu1, t1) = samples
    return Level(
        rate,
        note="; ".join(notes) or None,
        achieved=achieved,
        throughput=float(row["Inferences/Second"]),
        late=float(delayed.group(1)) / 100 if delayed else None,
        lag_us=lag_us,
        over_1ms=over_1ms,
        cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0) if cpu0 is not None and cpu1 is not None else None,
        estimated=True,
    )


def measure_pa(pa: str, rates: list[int], url: str, args, workdir: Path, show: Callable[[Level], None]) -> list[Level]:
    """perf_analyzer at each rate of the ladder `rates`, one run per rate, up to the first failure."""
    levels = []
    for rate in rates:
        levels.append(run_perf_analyzer(pa, rate, url, args, workdir))
        show(levels[-1])
        if not levels[-1].ok:
            break
    return levels


def loadgen_level(raw: dict) -> Level:
    open_loop, client = raw["open_loop"], raw["client"]
    return Level(
        raw["value"],
        achieved=open_loop["achieved_rate_per_s"],
        throughput=client["throughput_infer_per_s"],
        late=open_loop["late_fraction"],
        lag_us=open_loop["schedule_lag_us"],
        over_1ms=open_loop["late_fraction"],
        errors=client["error_count"],
        workers=raw["workers"],
        failure=f"level incomplete: {raw['incomplete']}" if raw["incomplete"] else None,
    )


def run_loadgen(workers: int, rates: list[int], url: str, args, workdir: Path, progress: Callable[[Level], None]) -> list[Level]:
    """One loadgen run over the ladder `rates` (ascending, evenly spaced), stopped with SIGINT at
    the first failed level. 0 workers: one process, no --workers."""
    report = workdir / f"{next(RUN_NUMBERS):02d}-loadgen-w{workers}-{rates[0]}-{rates[-1]}"
    step = rates[1] - rates[0] if len(rates) > 1 else 1
    command = [sys.executable, "-m", "loadgen", "run", "-m", MODEL, "-u", url, "-i", args.protocol,
               "--request-rate-range", f"{rates[0]}:{rates[-1]}:{step}", *(["--workers", str(workers)] if workers else []),
               "-p", str(args.p), "-r", str(LOADGEN_WINDOWS), "-s", str(NEVER_STABLE), "--report-dir", str(report)]  # fmt: skip
    log = (workdir / f"{report.name}.log").open("w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    levels: list[Level] = []
    deadline = time.monotonic() + 120 + len(rates) * (3 * LOADGEN_WINDOWS * args.p / 1000 + 10)
    try:
        while True:
            done = process.poll() is not None
            summary = report / "summary.json"  # replaced (written, then renamed) after every level
            if summary.exists():
                for raw in json.loads(summary.read_text())["levels"][len(levels) :]:
                    levels.append(loadgen_level(raw))
                    progress(levels[-1])
            if done or (levels and not levels[-1].ok):
                break
            if time.monotonic() > deadline:
                levels.append(Level(rates[min(len(levels), len(rates) - 1)], failure="loadgen did not finish the level in time"))
                break
            time.sleep(0.2)
    finally:
        end_session(process)
        log.seek(0)
        output = log.read()
        log.close()
    if not levels:
        last = [line.strip() for line in output.splitlines() if line.strip()]
        return [Level(rates[0], failure=f"loadgen exit {process.returncode}: {last[-1] if last else 'no output'}")]
    return levels


# --- the search ------------------------------------------------------------------------------


def ladder(start: int, end: int, step: int) -> list[int]:
    return list(range(start, end + 1, step))


def refine(passed: int, failed: int, steps: int, floor: int) -> list[int]:
    """Up to `steps` evenly spaced rates strictly between `passed` and `failed`, none below `floor`."""
    if passed < floor:  # from the floor itself
        step = max(1, round((failed - floor) / steps))
        return [rate for rate in range(floor, failed, step)][:steps]
    step = max(1, round((failed - passed) / (steps + 1)))
    return [rate for rate in range(passed + step, failed, step)][:steps]


def confirmed(found: Search, measure: Callable[[list[int]], list[Level]], rates: list[int], retries: int) -> None:
    """Measure the ladder `rates` up to its first failure; a failed rate is measured again, up to
    `retries` times, and the ladder goes on above it if a retry passes."""
    while rates:
        levels = measure(rates)
        for level in levels:
            found.record(level)
        last = levels[-1]
        if last.ok:
            return  # the whole ladder passed
        for _ in range(retries):
            again = measure([int(last.rate)])[0]
            found.record(again)
            if again.ok:
                break
        else:
            return  # failed every time: the first failure of this ladder
        rates = [rate for rate in rates if rate > last.rate]


def search(client: str, measure: Callable[[list[int]], list[Level]], coarse: list[int], steps: int, retries: int, floor: int) -> Search:
    """Measure ladders until the highest sustained rate is bracketed finely enough."""
    found = Search(client)
    rates = coarse
    for _ in range(MAX_ROUNDS):
        confirmed(found, measure, rates, retries)
        verdicts = found.verdicts()
        found.first_fail = min((v for v in verdicts.values() if not v.ok), key=lambda v: v.rate, default=None)
        below = [v for v in verdicts.values() if v.ok and (found.first_fail is None or v.rate < found.first_fail.rate)]
        found.best = max(below, key=lambda v: v.rate, default=None)
        if found.first_fail is None:
            break  # the whole coarse ladder passed: the maximum is above it
        passed = int(found.best.rate) if found.best else 0
        if found.first_fail.rate - passed <= max(RESOLUTION * passed, MIN_GAP):
            break
        rates = refine(passed, int(found.first_fail.rate), steps, floor)
        if not rates:
            break
    return found


# --- the printout ----------------------------------------------------------------------------


def us(value: float | None, estimated: bool = False) -> str:
    return "n/a" if value is None else f"{'≈' if estimated else ''}{value:.0f}"


def pct(value: float | None, estimated: bool = False) -> str:
    return "n/a" if value is None else f"{'≈' if estimated else ''}{100 * value:.2f}"


def progress(client: str) -> Callable[[Level], None]:
    """A printer of each measured level's verdict, to stderr."""

    def show(level: Level) -> None:
        verdict = "ok" if level.ok else "FAIL: " + "; ".join(level.reasons)
        late = "n/a" if level.late is None else f"{level.late:.2%}"
        lag = level.lag_us.get("p99")
        print(f"  {client} {level.rate:g}/s: achieved {level.achieved or 0:.0f}/s, late {late}, "
              f"lag p99 {us(lag, level.estimated)} us: {verdict}", file=sys.stderr, flush=True)  # fmt: skip

    return show


def verdict_line(found: Search) -> str:
    shown = []
    for rate, tries in sorted(found.tries.items()):
        figures = []
        for level in tries:
            if level.failure:
                figure = level.failure
            elif level.estimated:
                late = "<=1%" if level.late is None else f"{level.late:.2%}"
                figure = f"delayed {late}, ≈{pct(level.over_1ms)}% > 1 ms"
            else:
                figure = f"late {level.late:.2%}"
            if level.note:
                figure += f"; {level.note}"
            figures.append(f"{'ok' if level.ok else 'FAIL'} ({figure})")
        shown.append(f"{rate:g} " + " then ".join(figures))
    return f"- {found.client}: " + ", ".join(shown)


def print_table(searches: list[Search], reference: Search) -> None:
    header = ("client", "max sustained req/s", "vs perf_analyzer", "achieved send/s", "completed infer/s", "lag p50 us",
              "lag p99 us", "late % (own definition)", "sent > 1 ms late %", "CPU % of a core", "first failing req/s",
              "failed because")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    top = reference.best.rate if reference.best else None
    for found in searches:
        best, fail = found.best, found.first_fail
        ratio = f"{best.rate / top:.2f}" if best and top else "n/a"
        fail_rate = f"{fail.rate:g}" if fail else f"none up to {max(found.tries):g}"
        none = f"none >= {min(found.tries):g}"
        why = "; ".join(fail.reasons) if fail else "-"
        if best is None:
            print(f"| {found.client} | {none} | n/a | | | | | | | | {fail_rate} | {why} |")
            continue
        if best.estimated:
            late = "<=1" if best.late is None else pct(best.late)
        else:
            late = pct(best.late)
        cpu = "+".join(f"{w['cpu_pct']:.0f}" for w in best.workers) if best.workers else us(best.cpu_pct)
        print(f"| {found.client} | {best.rate:g} | {ratio} | {best.achieved:.0f} | {best.throughput:.0f} | "
              f"{us(best.lag_us.get('p50'), best.estimated)} | {us(best.lag_us.get('p99'), best.estimated)} | {late} | "
              f"{pct(best.over_1ms, best.estimated)} | {cpu} | {fail_rate} | {why} |")  # fmt: skip
        for w in best.workers:
            lag = w["schedule_lag_us"]
            print(f"| ↳ worker {w['worker']} (pid {w['pid']}) | {w['share']:g} | | | {w['throughput_infer_per_s']:.0f} | "
                  f"{us(lag.get('p50'))} | {us(lag.get('p99'))} | {pct(w['late_fraction'])} | {pct(w['late_fraction'])} | "
                  f"{w['cpu_pct']:.0f}{' OVERLOADED' if w['overloaded'] else ''} | | |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers-list", default="1,2", help="loadgen worker counts; 0: one process, no --workers (default 1,2)")
    parser.add_argument("-i", "--protocol", choices=("http", "grpc"), default="http", help="protocol (default http)")
    parser.add_argument("-p", type=int, default=1000, help="measurement window in ms for both tools (default 1000)")
    parser.add_argument("--coarse", default="500:6000:500", help="coarse ladder START:END:STEP in requests/s (default 500:6000:500)")
    parser.add_argument("--refine-steps", type=int, default=4, help="rates per refining ladder (default 4)")
    parser.add_argument("--min-rate", type=int, default=100, help="lowest rate the search goes down to (default 100)")
    parser.add_argument("--retries", type=int, default=1, help="measurements again of a failed rate before it counts as failed (default 1)")
    parser.add_argument("--pa-sync", action="store_true", help="perf_analyzer with its default synchronous API instead of --async")
    args = parser.parse_args()
    worker_counts = [int(n) for n in args.workers_list.split(",")]
    coarse = ladder(*(int(v) for v in args.coarse.split(":")))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop what was started

    began = time.monotonic()
    load_before = os.getloadavg()
    pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-workers-"))
    server = EmbeddedServer(REPOSITORY, workdir / "server.log")
    endpoints = server.start()
    url = endpoints.http if args.protocol == "http" else endpoints.grpc
    searches: list[Search] = []

    try:
        measure = lambda rates: measure_pa(pa, rates, url, args, workdir, progress("perf_analyzer"))  # noqa: E731
        searches.append(search("perf_analyzer", measure, coarse, args.refine_steps, args.retries, args.min_rate))
        for n in worker_counts:
            name = f"loadgen {n} worker{'s' if n > 1 else ''}" if n else "loadgen 1 process (no --workers)"
            searches.append(search(name, lambda rates, n=n, name=name: run_loadgen(n, rates, url, args, workdir, progress(name)),
                                   coarse, args.refine_steps, args.retries, args.min_rate))  # fmt: skip
    finally:
        server.stop()
    elapsed = time.monotonic() - began

    print(f"\nHighest constant request rate sustained against `{MODEL}` ({REPOSITORY.relative_to(ROOT)}) over "
          f"{args.protocol}, one embedded server; 3 windows of -p {args.p} after a warm-up; perf_analyzer "
          f"{'synchronous (its default)' if args.pa_sync else '--async'}\n")  # fmt: skip
    print_table(searches, searches[0])
    print("\nSustained: achieved send rate and completed throughput >= 98% of the target, schedule lag p99 <= 10 ms, "
          "no failed request. Late (reported, not judged): loadgen, sent "
          "> 1 ms after the intended time; perf_analyzer, its own 'delayed' share (its thread got to the request "
          "after its scheduled time, by any amount; printed only over 1%, so '<=1' when it printed none). "
          "'≈': perf_analyzer's lag, estimated from its --profile-export-file send times (a lower bound). "
          "CPU: perf_analyzer's process sampled over 2 windows; loadgen, each worker's process over its reported "
          "windows (w0+w1).\n")  # fmt: skip
    print("Rates measured (in ascending order; a retried rate shows each try):")
    for found in searches:
        print(verdict_line(found))
    print(f"\nMachine: {os.cpu_count()} cores; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after. "
          f"On {os.cpu_count()} cores the server, perf_analyzer or loadgen's driver, Ray's processes and every worker "
          "share the CPUs, so the 2-worker figure is bounded by this machine, not by the design. "
          f"Bench time {elapsed / 60:.1f} min; files in {workdir}.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
