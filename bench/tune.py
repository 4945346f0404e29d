"""How many candidates `loadgen tune`'s guided search and the grid need to come within 5% of the grid's best.

    python bench/tune.py [--ensembles tunable,centernet] [--repeats 1] [--within-pct 5]

For each ensemble the bench writes a --knobs file small enough for the whole grid to run here
(the spaces are printed), then runs `loadgen tune --search guided` and `loadgen tune --search
grid` on that space with the same load options and --remeasure 0, each with its own embedded
server (tune starts and stops it). The ensembles:

- tunable (tests/model_repos/tunable, a best configuration known by construction: batcher sleeps
  20 ms per execute call, so dynamic batching multiplies it; worker sleeps 5 ms per request, so
  instances do): batcher 1 or 2 instances, dynamic batching off or on with queue delay 0 or
  2000 us; worker 1, 2 or 4 instances, no batching; 18 candidates. Within p99_ms<100,
  concurrency 1:32, windows of 500 ms.
- centernet (model_repository/'s centernet-ensemble, the shipped one): image-preprocess and
  centernet-postprocess 1 or 2 instances, no batching; centernet 1 or 2 instances, dynamic
  batching off or on (queue delay 0, as shipped); 16 candidates. Within p99_ms<30 (a
  `loadgen run --concurrency-range 1:8 -p 1500` sweep of the shipped configuration here gave p99
  9.7, 16.1, 20.6, 24.3, 30.4, 36.7, 53.9, 43.5 ms at 1..8, 2026-12-02), concurrency 1:16,
  windows of 1500 ms.

From each run's tune.json: every candidate's throughput within the bounds (the binary search's
answer, first measurement; 0 when no level met them or it failed), in the order measured. The
reference is the grid's best in the same block. Per run the bench prints the candidates and the
wall time (server start to stop), its best and which configuration it was, the number of
candidates measured until the first within --within-pct of the grid's best ("never" when none
was), and, because the server's speed drifts between runs (up to ~20% here), two ratios to the
grid's best: the run's own best, and its best configuration's throughput as the grid measured it
(the same configuration judged in the same run as the reference, so drift between the runs
cancels).

The searches run in blocks, guided then grid, then with --repeats 2 grid then guided (ABBA), so
linear drift favours neither search. The bench prints the core count and the load average before
and after each run: other work shares this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import yaml
from common import ROOT

SEARCHES = ("guided", "grid")
RUN_NUMBERS = count(1)


@dataclass(frozen=True)
class Ensemble:
    name: str  # what --ensembles calls it
    repository: Path
    model: str
    knobs: dict[str, dict[str, list[Any]]]  # the --knobs file's content: the space searched
    sla: str
    concurrency_range: str
    window_ms: int


ENSEMBLES = {
    "tunable": Ensemble(
        "tunable", ROOT / "tests" / "model_repos" / "tunable", "tunable",
        {"batcher": {"instances": [1, 2], "dynamic_batching": [False, True], "max_queue_delay_us": [0, 2000]},
         "worker": {"instances": [1, 2, 4], "dynamic_batching": [False]}},
        "p99_ms<100", "1:32", 500,
    ),
    "centernet": Ensemble(
        "centernet", ROOT / "model_repository", "centernet-ensemble",
        {"image-preprocess": {"instances": [1, 2], "dynamic_batching": [False]},
         "centernet": {"instances": [1, 2], "dynamic_batching": [False, True], "max_queue_delay_us": [0]},
         "centernet-postprocess": {"instances": [1, 2], "dynamic_batching": [False]}},
        "p99_ms<30", "1:16", 1500,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class TuneRun:
    search: str
    block: int
    wall_s: float
    throughputs_infer_per_s: list[float]  # per candidate in the order measured; 0: none within the bounds
    keys: list[str]  # per candidate, its configuration
    stop_reason: str
    load_before: float
    load_after: float

    @property
    def best_index(self) -> int | None:
        measured = [i for i, value in enumerate(self.throughputs_infer_per_s) if value > 0]
        return max(measured, key=lambda i: (self.throughputs_infer_per_s[i], -i), default=None)

    @property
    def best_infer_per_s(self) -> float:
        return max(self.throughputs_infer_per_s, default=0.0)


def candidates_to_reach(run: TuneRun, reference_infer_per_s: float, within: float) -> int | None:
    """Candidates measured until the first within `within` (relative) of the reference, counting it; None: never."""
    for number, value in enumerate(run.throughputs_infer_per_s, start=1):
        if value > 0 and value >= reference_infer_per_s * (1 - within):
            return number
    return None


def run_tune(ensemble: Ensemble, search: str, block: int, knobs_file: Path, workdir: Path) -> TuneRun:
    report = workdir / f"{next(RUN_NUMBERS):02d}-{ensemble.name}-{search}"
    command = [sys.executable, "-m", "loadgen", "tune", "--model-repository", str(ensemble.repository), "-m", ensemble.model,
               "--search", search, "--remeasure", "0", "--knobs", str(knobs_file), "--sla", ensemble.sla,
               "--concurrency-range", ensemble.concurrency_range, "-p", str(ensemble.window_ms),
               "--max-candidates", "100", "--time-budget", "120", "--report-dir", str(report)]  # fmt: skip
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
    wall_s = time.monotonic() - started
    (report / "tune.out").write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1):  # 1: no candidate met the bounds, still a result
        raise RuntimeError(f"loadgen tune failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    result = json.loads((report / "tune.json").read_text())
    candidates = result["candidates"]
    return TuneRun(search, block, wall_s, [c["throughput_infer_per_s"] or 0.0 for c in candidates],
                   [c["key"] for c in candidates], result["stop_reason"], load_before, os.getloadavg()[0])  # fmt: skip


def space_text(knobs: dict[str, dict[str, list[Any]]]) -> str:
    return "; ".join(f"{model}: " + ", ".join(f"{knob} {values}" for knob, values in space.items())
                     for model, space in knobs.items())  # fmt: skip


def print_ensemble(ensemble: Ensemble, runs: list[TuneRun], within: float) -> None:
    print(f"\n{ensemble.model} ({ensemble.repository.relative_to(ROOT)}), within {ensemble.sla}, concurrency "
          f"{ensemble.concurrency_range}, windows of {ensemble.window_ms} ms; space: {space_text(ensemble.knobs)}\n")
    print(f"| block | search | candidates | wall s | load avg before/after | best infer/s | best configuration | "
          f"candidates to within {within:.0%} of the grid's best | best / grid's best | its configuration in the grid / grid's best |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        grid = next((r for r in runs if r.block == run.block and r.search == "grid"), None)
        best = run.best_index
        cells = ["no grid in this block"] * 3
        if grid is not None and grid.best_infer_per_s > 0:
            reference = grid.best_infer_per_s
            reached = candidates_to_reach(run, reference, within)
            in_grid = grid.throughputs_infer_per_s[grid.keys.index(run.keys[best])] if best is not None and run.keys[best] in grid.keys else None
            cells = [f"{reached}" if reached is not None else "never", f"{run.best_infer_per_s / reference:.3f}",
                     f"{in_grid / reference:.3f}" if in_grid is not None else "not in the grid"]  # fmt: skip
        print(f"| {run.block} | {run.search} | {len(run.throughputs_infer_per_s)} | {run.wall_s:.0f} | "
              f"{run.load_before:.1f}/{run.load_after:.1f} | {run.best_infer_per_s:.1f} | "
              f"{run.keys[best] if best is not None else 'none within the bounds'} | {' | '.join(cells)} |")
    for run in runs:
        print(f"\n{run.search} (block {run.block}), {run.stop_reason}: "
              + ", ".join(f"{value:.0f}" for value in run.throughputs_infer_per_s) + " infer/s in the order measured")


def summary(name: str, runs: list[TuneRun], within: float) -> str:
    parts = []
    for search in SEARCHES:
        reached, totals = [], []
        for run in (r for r in runs if r.search == search):
            grid = next((r for r in runs if r.block == run.block and r.search == "grid"), None)
            if grid is None or grid.best_infer_per_s <= 0:
                continue
            found = candidates_to_reach(run, grid.best_infer_per_s, within)
            reached.append(str(found) if found is not None else "never")
            totals.append(str(len(run.throughputs_infer_per_s)))
        parts.append(f"{search} {'/'.join(reached) or '-'} of {'/'.join(totals) or '-'}")
    return f"{name}: candidates to within {within:.0%} of the grid's best (of measured): " + ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ensembles", default="tunable,centernet", help=f"of {', '.join(ENSEMBLES)} (default both)")
    parser.add_argument("--repeats", type=int, default=1, help="blocks: guided, grid, then grid, guided, ... (default 1)")
    parser.add_argument("--within-pct", type=float, default=5.0, help="how close to the grid's best counts (default 5)")
    args = parser.parse_args()
    names = args.ensembles.split(",")
    unknown = [name for name in names if name not in ENSEMBLES]
    if unknown:
        parser.error(f"--ensembles: {', '.join(unknown)} unknown: give some of {', '.join(ENSEMBLES)}")
    within = args.within_pct / 100
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-tune-bench-"))
    load_before = os.getloadavg()
    results: dict[str, list[TuneRun]] = {}
    for name in names:
        ensemble = ENSEMBLES[name]
        knobs_file = workdir / f"{name}-knobs.yaml"
        knobs_file.write_text(yaml.safe_dump(ensemble.knobs))
        results[name] = []
        for block in range(args.repeats):
            for search in SEARCHES if block % 2 == 0 else SEARCHES[::-1]:
                try:
                    run = run_tune(ensemble, search, block, knobs_file, workdir)
                except RuntimeError as exc:
                    print(f"  {name} block {block} {search}: no result: {str(exc).splitlines()[-1]}", file=sys.stderr)
                    continue
                results[name].append(run)
                print(f"  {name} block {block} {search}: {len(run.throughputs_infer_per_s)} candidates in {run.wall_s:.0f} s, "
                      f"best {run.best_infer_per_s:.1f} infer/s, load average {run.load_before:.1f} -> {run.load_after:.1f}",
                      file=sys.stderr, flush=True)  # fmt: skip

    print(f"\nloadgen tune, guided against grid on the same space, --remeasure 0, {args.repeats} block(s) "
          f"(work files in {workdir})")
    for name, runs in results.items():
        print_ensemble(ENSEMBLES[name], runs, within)
    print()
    for name, runs in results.items():
        print(summary(ENSEMBLES[name].model, runs, within))
    print(f"\nMachine: {os.cpu_count()} cores; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
