"""What `loadgen tune` prints: a line per candidate as it finishes, and the ranked table at the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from loadgen.tune_result import MEASURED, CandidateResult, TuneResult
from loadgen.tune_search import Proposal, ranking
from loadgen.tuner import TuneListener


def _figure(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def candidate_line(candidate: CandidateResult) -> str:
    """`[3] 41.2 infer/s within the bounds at concurrency 8, p99 88.0 ms (centernet: 2 inst ...)`."""
    if candidate.outcome == MEASURED:
        figures = (f"{candidate.throughput_infer_per_s:.1f} infer/s within the bounds at {candidate.level_value:g}, "
                   f"p99 {_figure(candidate.p99_ms)} ms")  # fmt: skip
    else:
        figures = candidate.outcome + (f": {candidate.message}" if candidate.message else "")
    return f"[{candidate.index}] {figures} ({candidate.key})"


def ranked_table(result: TuneResult) -> list[str]:
    """Every candidate, best first: each stage's settings, throughput within the bounds (the mean
    of its measurements), p99, server CPU and GPU utilization, servers for --target-throughput.
    `*` marks the repository's own configuration, `>` the best."""
    if not result.candidates:
        return ["No candidate was measured."]
    models = [model for model, _ in result.candidates[0].settings]
    head = ["", "#", *models, "infer/s", "runs", "level", "p99 ms", "CPU %", "GPU %", "servers", "outcome"]
    rows = []
    for index in ranking(result.candidates):
        candidate = result.candidates[index]
        mark = (">" if index == result.best else " ") + ("*" if index == 0 else " ")
        settings = dict(candidate.settings)
        rows.append([
            mark, str(index), *(settings[model].describe() if model in settings else "-" for model in models),
            _figure(candidate.mean_throughput_infer_per_s), str(1 + len(candidate.remeasured_infer_per_s)),
            "-" if candidate.level_value is None else f"{candidate.level_value:g}", _figure(candidate.p99_ms),
            _figure(candidate.cpu_utilization, 0, 100), _figure(candidate.gpu_utilization, 0, 100),
            "-" if candidate.servers_needed is None else str(candidate.servers_needed),
            candidate.outcome if candidate.outcome != MEASURED else "",
        ])  # fmt: skip
    widths = [max(len(row[column]) for row in (head, *rows)) for column in range(len(head))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (head, *rows)]


def closing_lines(result: TuneResult, tune_dir: str) -> list[str]:
    lines = [f"Tune of {result.ensemble} ({result.search} search, {len(result.candidates)} candidates): {result.stop_reason}."]
    default = result.default
    if result.best is None:
        lines.append("No candidate met the bounds.")
        return lines
    best = result.candidates[result.best]
    gain = ""
    if default is not None and default.mean_throughput_infer_per_s:
        gain = f", {best.mean_throughput_infer_per_s / default.mean_throughput_infer_per_s:.2f}x the default configuration"
    lines.append(f"Best: [{best.index}] {best.mean_throughput_infer_per_s:.1f} infer/s within the bounds{gain}: {best.key}")
    lines.append(f"Deployable repository: {tune_dir}/best/model_repository")
    searched = result.options.get("range")
    if searched and best.level_value is not None and best.level_value >= searched["end"]:
        lines.append(f"The best met the bounds at the range's end ({searched['end']:g}): its capacity may be higher; "
                     f"give a wider {searched['flag']}")  # fmt: skip
    return lines


class TuneConsole(TuneListener):
    def __init__(self, out: TextIO, tune_dir: str) -> None:
        self.out = out
        self.tune_dir = tune_dir

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def candidate_started(self, index: int, proposal: Proposal) -> None:
        self._print(f"[{index}] measuring: {proposal.reason}")

    def candidate_finished(self, result: CandidateResult) -> None:
        self._print(candidate_line(result))

    def remeasuring(self, indices: Sequence[int]) -> None:
        self._print(f"Measuring the leaders again, in ABBA order: {', '.join(f'[{index}]' for index in indices)}")

    def tune_finished(self, result: TuneResult) -> None:
        self._print("")
        for line in (*ranked_table(result), "", *closing_lines(result, self.tune_dir)):
            self._print(line)
