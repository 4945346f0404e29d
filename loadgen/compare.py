"""Two runs compared level by level: the deltas of throughput and latency, and which ones regressed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadgen.errors import UsageError

# (figure, where it is in a level's client dict, True when higher is better)
FIGURES = (
    ("throughput", ("throughput_infer_per_s",), True),
    ("avg latency", ("avg_latency_us",), False),
    ("p50 latency", ("percentile_latency_us", "p50"), False),
    ("p90 latency", ("percentile_latency_us", "p90"), False),
    ("p95 latency", ("percentile_latency_us", "p95"), False),
    ("p99 latency", ("percentile_latency_us", "p99"), False),
)


@dataclass(frozen=True)
class FigureDelta:
    figure: str
    baseline: float
    candidate: float
    change_pct: float | None  # None when the baseline is 0
    regression: bool


@dataclass(frozen=True)
class LevelComparison:
    label: str
    value: float
    stable: bool  # both runs were stable at this level
    deltas: tuple[FigureDelta, ...]


@dataclass(frozen=True)
class Comparison:
    limit_pct: float
    levels: tuple[LevelComparison, ...]
    only_baseline: tuple[str, ...]
    only_candidate: tuple[str, ...]

    @property
    def regressions(self) -> list[tuple[LevelComparison, FigureDelta]]:
        return [(level, delta) for level in self.levels for delta in level.deltas if delta.regression]


def _figure(level: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = level["client"]
    for key in path:
        value = value[key]
    return float(value)


def _delta(figure: str, baseline: float, candidate: float, higher_is_better: bool, limit_pct: float) -> FigureDelta:
    if baseline == 0:
        return FigureDelta(figure, baseline, candidate, None, False)
    change_pct = (candidate - baseline) / baseline * 100
    worsening_pct = -change_pct if higher_is_better else change_pct
    return FigureDelta(figure, baseline, candidate, change_pct, worsening_pct > limit_pct)


def _name(level: dict[str, Any]) -> str:
    return f"{level['label']} {level['value']:g}"


def compare_runs(baseline: dict[str, Any], candidate: dict[str, Any], limit_pct: float) -> Comparison:
    """Match levels by kind and value; a figure regressed when it worsened by more than `limit_pct` percent."""
    base_levels = {(lv["label"], lv["value"]): lv for lv in baseline["levels"]}
    cand_levels = {(lv["label"], lv["value"]): lv for lv in candidate["levels"]}
    common = [key for key in base_levels if key in cand_levels]
    if not common:
        raise UsageError(
            "the two runs have no level in common "
            f"(baseline: {', '.join(map(_name, base_levels.values())) or 'none'}; "
            f"candidate: {', '.join(map(_name, cand_levels.values())) or 'none'}): compare runs of the same sweep"
        )
    levels = []
    for key in common:
        base, cand = base_levels[key], cand_levels[key]
        deltas = tuple(
            _delta(figure, _figure(base, path), _figure(cand, path), higher_is_better, limit_pct)
            for figure, path, higher_is_better in FIGURES
        )
        levels.append(LevelComparison(key[0], key[1], base["stable"] and cand["stable"], deltas))
    return Comparison(
        limit_pct=limit_pct,
        levels=tuple(levels),
        only_baseline=tuple(_name(lv) for key, lv in base_levels.items() if key not in cand_levels),
        only_candidate=tuple(_name(lv) for key, lv in cand_levels.items() if key not in base_levels),
    )


def _show(figure: str, value: float) -> str:
    return f"{value:,.1f} infer/s" if figure == "throughput" else f"{value / 1e3:,.2f} ms"


def comparison_lines(comparison: Comparison) -> list[str]:
    """A table of every compared figure, regressions marked, and a closing verdict."""
    rows = [("Level", "Figure", "Baseline", "Candidate", "Change", "")]
    for level in comparison.levels:
        for delta in level.deltas:
            change = f"{delta.change_pct:+.1f}%" if delta.change_pct is not None else "n/a"
            mark = "REGRESSION" if delta.regression else ""
            if not level.stable:
                mark = (mark + " (unstable level)").strip()
            rows.append(
                (f"{level.label} {level.value:g}", delta.figure, _show(delta.figure, delta.baseline),
                 _show(delta.figure, delta.candidate), change, mark)
            )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5]).rstrip() for row in rows]
    if comparison.only_baseline:
        lines.append(f"Only in the baseline (not compared): {', '.join(comparison.only_baseline)}")
    if comparison.only_candidate:
        lines.append(f"Only in the candidate (not compared): {', '.join(comparison.only_candidate)}")
    count = len(comparison.regressions)
    limit = f"{comparison.limit_pct:g}%"
    lines.append(f"Result: {count} regression{'s' if count != 1 else ''} beyond {limit}" if count else f"Result: no regression beyond {limit}")
    return lines
