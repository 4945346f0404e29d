"""Two runs compared level by level: each figure's change, the noise around it, and which ones regressed.
Two mixes of models are compared model by model, matched by name.

A figure regressed when it got worse by more than the limit, and the runs' own noise makes it
`confidence_pct` sure that it did (README, "Re-rendering and comparing runs"). Each run's noise in
a figure is the larger of the spread between its reported windows and the sampling error of its
merged latency histogram; drift between the two runs is what the limit allows for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadgen.errors import UsageError
from loadgen.measurement import LevelResult, WindowFigures
from loadgen.report.base import drove_sequences
from loadgen.result import COMPLETE, RunResult
from loadgen.significance import mean_standard_error_ns, percentile_standard_error_ns, t_cdf, t_quantile, welch_df, window_standard_error
from loadgen.stats import ClientStats
from loadgen.stream_stats import StreamStats

# From A/A runs on a shared 2-core machine (README): at 95%, unchanged pairs were flagged; at 99%, none.
DEFAULT_CONFIDENCE_PCT = 99.0

# (figure, its attribute of a level's ClientStats and of each WindowFigures, the percentile in it or None,
# True when higher is better)
FIGURES = (
    ("throughput", "throughput_infer_per_s", None, True),
    ("avg latency", "avg_latency_us", None, False),
    ("p50 latency", "percentile_latency_us", 50, False),
    ("p90 latency", "percentile_latency_us", 90, False),
    ("p95 latency", "percentile_latency_us", 95, False),
    ("p99 latency", "percentile_latency_us", 99, False),
)
# Compared after throughput when both runs counted goodput within the same --goodput-latency-ms.
GOODPUT = ("goodput", "goodput_infer_per_s", None, True)
RATES = ("throughput", "goodput")  # the figures in infer/s; the others are latencies
# Two streamed runs' (--streaming) own figures, after those: (figure, "ttft" or "itl", its key in StreamStats' figures).
STREAM_FIGURES = tuple((f"{key} {kind.upper()}", kind, key) for kind in ("ttft", "itl") for key in ("avg", "p50", "p90", "p99"))
TOKENS = "tokens/s"  # output tokens per second: higher is better, and no noise figure (windows do not record it)
SEQUENCES = "sequences/s"  # a sequence model's completed sequences per second: higher is better, no noise figure
SEQUENCE_NOISE_NOTE = "sequences/s: judged by the limit alone (windows do not record it)"
STREAM_NOISE_NOTE = ("TTFT, ITL: each run's noise is its histogram's sampling error alone (windows do not record them), "
                     "a floor; tokens/s: judged by the limit alone")


@dataclass(frozen=True)
class Noise:
    """One run's standard error of one figure, in the figure's unit, and the degrees of freedom behind it."""

    standard_error: float
    # The reported windows less one, even where the histogram's part is the larger: latencies come in
    # bursts, not independently, so only the windows tell how far that part can be trusted.
    df: float


@dataclass(frozen=True)
class FigureDelta:
    figure: str
    baseline: float
    candidate: float
    change_pct: float | None  # None when the baseline is 0
    higher_is_better: bool
    beyond_limit: bool  # worse by more than the limit
    regression: bool  # beyond the limit, and significantly so (or, without noise figures, beyond it at all)
    standard_error_pct: float | None = None  # of change_pct, in percentage points; None: no noise figures (limit only)
    df: float | None = None  # Welch–Satterthwaite degrees of freedom of standard_error_pct
    margin_pct: float | None = None  # the change is within ±margin_pct of change_pct, each side at the confidence
    confidence_pct: float | None = None  # how sure it is that the figure got worse by more than the limit

    @property
    def tested(self) -> bool:
        """Judged against the runs' noise, not by the limit alone."""
        return self.standard_error_pct is not None

    @property
    def within_noise(self) -> bool:
        return self.beyond_limit and not self.regression

    @property
    def surely_worse_pct(self) -> float | None:
        """How much worse the figure got at least, at the confidence: the limit it needs to pass."""
        if self.change_pct is None:
            return None
        return (-self.change_pct if self.higher_is_better else self.change_pct) - (self.margin_pct or 0.0)


@dataclass(frozen=True)
class LevelComparison:
    label: str
    value: float
    stable: bool  # both runs were stable at this level
    complete: bool  # neither run's level ended early (a lost worker)
    deltas: tuple[FigureDelta, ...]


@dataclass(frozen=True)
class RunState:
    """How a run ended, and the levels it lacks that the other run has."""

    status: str
    stop_reason: str | None
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE


@dataclass(frozen=True)
class Comparison:
    limit_pct: float
    confidence_pct: float
    levels: tuple[LevelComparison, ...]
    baseline: RunState
    candidate: RunState
    notes: tuple[str, ...]  # figures judged by the limit alone, and why; goodput not compared, and why

    @property
    def regressions(self) -> list[tuple[LevelComparison, FigureDelta]]:
        return [(level, delta) for level in self.levels for delta in level.deltas if delta.regression]

    @property
    def complete(self) -> bool:
        return self.baseline.complete and self.candidate.complete

    @property
    def passing_limit_pct(self) -> float:
        """The smallest --max-regression this comparison passes: of two runs of the same build, the drift between them."""
        bounds = [d.surely_worse_pct for level in self.levels for d in level.deltas if d.surely_worse_pct is not None]
        return max([0.0, *bounds])


@dataclass(frozen=True)
class MixComparison:
    """Two mixes of models compared model by model (matched by name)."""

    models: tuple[tuple[str, Comparison], ...]
    only: tuple[str, ...]  # a line for each model in one run only, not compared
    baseline: RunState
    candidate: RunState

    @property
    def regressions(self) -> list[tuple[str, LevelComparison, FigureDelta]]:
        return [(name, level, delta) for name, comparison in self.models for level, delta in comparison.regressions]

    @property
    def complete(self) -> bool:
        return self.baseline.complete and self.candidate.complete


def _at(figures: ClientStats | WindowFigures, attribute: str, percentile: int | None) -> float | None:
    """One figure of a level's client figures or of a window; None where it was not recorded."""
    value = getattr(figures, attribute)
    return (value or {}).get(percentile) if percentile is not None else value


def _noise(level: LevelResult, figure: str, attribute: str, percentile: int | None) -> Noise | None:
    """The larger of the window spread and the histogram's sampling error; None without two reported windows of the figure.

    The histogram's part is a floor for windows that agree by chance; the windows' part catches what
    the histogram cannot, the load and the machine changing from window to window.
    """
    values = [_at(window, attribute, percentile) for window in level.reported_windows]
    if len(values) < 2 or any(value is None for value in values):
        return None
    spread = window_standard_error(values)
    histogram = level.latency_histogram
    sampling_ns = 0.0  # throughput and goodput: the windows are their only noise figure (a count is not Poisson in closed loop)
    if histogram is not None and histogram.count > 1 and figure == "avg latency":
        sampling_ns = mean_standard_error_ns(histogram)
    elif histogram is not None and histogram.count > 1 and figure not in RATES:
        sampling_ns = percentile_standard_error_ns(histogram, float(percentile))
    return Noise(max(spread, sampling_ns / 1e3), len(values) - 1)


def _lacking_noise(untested: dict[tuple[str, ...], list[str]], figure: str, noise: tuple[Noise | None, Noise | None]) -> tuple[str, ...]:
    """The runs without a noise figure for `figure`; noted in `untested` (which runs → the figures)."""
    lacking = tuple(run for run, n in zip(("baseline", "candidate"), noise) if n is None)
    if lacking and figure not in untested.setdefault(lacking, []):
        untested[lacking].append(figure)
    return lacking


def _stream_figures(stream: StreamStats, kind: str) -> dict[str, float] | None:
    """A streamed level's TTFT or ITL figures (µs); None where not measured (no success, or no request with two responses)."""
    if not stream.request_count:
        return None
    return stream.ttft_us if kind == "ttft" else stream.itl_us


def _stream_noise(level: LevelResult, kind: str, key: str) -> Noise | None:
    """The sampling error of the level's TTFT or ITL histogram, as latency's part (b); None without two reported windows
    (the degrees of freedom, as latency's) or two samples."""
    stream = level.streaming
    histogram = stream.ttft_histogram if kind == "ttft" else stream.itl_histogram
    windows = len(level.reported_windows)
    if histogram is None or histogram.count < 2 or windows < 2:
        return None
    error_ns = mean_standard_error_ns(histogram) if key == "avg" else percentile_standard_error_ns(histogram, float(key[1:]))
    return Noise(error_ns / 1e3, windows - 1)


def _stream_deltas(
    base: LevelResult, cand: LevelResult, limit_pct: float, confidence_pct: float, lacking: dict[str, list[str]],
    untested: dict[tuple[str, ...], list[str]],
) -> list[FigureDelta]:
    """TTFT and ITL at each reported percentile, then tokens/s, of two streamed levels: the figures both measured.
    `lacking` gathers, per figure left out, which runs lacked it; `untested`, the figures without noise, as latency's."""
    base_stream, cand_stream = base.streaming, cand.streaming
    deltas = []
    for figure, kind, key in STREAM_FIGURES:
        figures = _stream_figures(base_stream, kind), _stream_figures(cand_stream, kind)
        if None in figures:
            lacking.setdefault(kind.upper(), []).extend(run for run, f in zip(("baseline", "candidate"), figures) if f is None)
            continue
        noise = _stream_noise(base, kind, key), _stream_noise(cand, kind, key)
        untested_by = _lacking_noise(untested, figure, noise)
        deltas.append(_delta(figure, figures[0][key], figures[1][key], False, None if untested_by else noise, limit_pct,
                             confidence_pct))  # fmt: skip
    rates = base_stream.tokens_per_s, cand_stream.tokens_per_s
    if None in rates:
        lacking.setdefault(TOKENS, []).extend(run for run, rate in zip(("baseline", "candidate"), rates) if rate is None)
    else:
        deltas.append(_delta(TOKENS, rates[0], rates[1], True, None, limit_pct, confidence_pct))
    return deltas


def _stream_notes(baseline: RunResult, candidate: RunResult, compared: bool, lacking: dict[str, list[str]]) -> tuple[str, ...]:
    """Why streaming figures were left out, or how they were judged."""
    streamed = [any(level.streaming is not None for level in run.levels) for run in (baseline, candidate)]
    if streamed[0] != streamed[1]:
        only = "baseline" if streamed[0] else "candidate"
        return (f"TTFT, ITL, tokens/s: not compared: only the {only} run streamed (--streaming)",)
    why = {"TTFT": "had no success", "ITL": "had no request with two responses", TOKENS: "counted no tokens"}
    notes = [f"{figure}: not compared at some levels, where the {' and '.join(sorted(set(runs)))} {why[figure]}"
             for figure, runs in lacking.items()]
    return ((STREAM_NOISE_NOTE,) if compared else ()) + tuple(notes)


def _sequence_notes(baseline: RunResult, candidate: RunResult, compared: bool) -> tuple[str, ...]:
    """How sequences/s was judged, or why it was left out: only one run drove a sequence model."""
    drove = [drove_sequences(run) for run in (baseline, candidate)]
    if drove[0] != drove[1]:
        only = "baseline" if drove[0] else "candidate"
        return (f"sequences/s: not compared: only the {only} run drove sequences (a sequence model)",)
    return (SEQUENCE_NOISE_NOTE,) if compared else ()


def _one_sided(distance: float, standard_error: float, df: float) -> float:
    """P(the true value exceeds the limit) for an estimate `distance` above it."""
    if standard_error == 0.0:
        return 1.0 if distance > 0 else 0.0
    return t_cdf(distance / standard_error, df)


def _delta(
    figure: str,
    base: float,
    cand: float,
    higher_is_better: bool,
    noise: tuple[Noise, Noise] | None,
    limit_pct: float,
    confidence_pct: float,
) -> FigureDelta:
    if base == 0:
        return FigureDelta(figure, base, cand, None, higher_is_better, False, False)
    change_pct = (cand - base) / base * 100
    worsening_pct = -change_pct if higher_is_better else change_pct
    beyond = worsening_pct > limit_pct
    if noise is None:
        return FigureDelta(figure, base, cand, change_pct, higher_is_better, beyond, beyond)
    base_noise, cand_noise = noise
    # change = cand/base - 1: each run's error carried through (the delta method), in percentage points.
    parts = [
        ((100 * cand * base_noise.standard_error / base**2) ** 2, base_noise.df),
        ((100 * cand_noise.standard_error / base) ** 2, cand_noise.df),
    ]
    standard_error_pct = math.sqrt(sum(variance for variance, _ in parts))
    df = welch_df(parts)
    margin_pct = t_quantile(confidence_pct / 100, df) * standard_error_pct
    confidence = 100 * _one_sided(worsening_pct - limit_pct, standard_error_pct, df)
    # Significant when the worsening's lower confidence bound is still beyond the limit.
    regression = beyond and worsening_pct - margin_pct > limit_pct
    return FigureDelta(figure, base, cand, change_pct, higher_is_better, beyond, regression, standard_error_pct, df, margin_pct, confidence)


def _name(level: LevelResult) -> str:
    return f"{level.label} {level.value:g}"


def _state(run: RunResult, missing: list[str]) -> RunState:
    return RunState(run.status, run.stop_reason, tuple(missing))


def _untested_note(figures: list[str], runs: list[str]) -> str:
    which = " and ".join(runs)
    return (
        f"{', '.join(figures)}: judged by the limit alone, without a confidence: the {which} "
        f"{'lacks' if len(runs) == 1 else 'lack'} {'it' if len(figures) == 1 else 'them'} in some reported window "
        "(a summary.json older than version 5, a window without a success, or a level of one window)"
    )


def _figures(baseline: RunResult, candidate: RunResult) -> tuple[tuple, tuple[str, ...]]:
    """The figures to compare, and why goodput is not among them when only one run measured it, or
    the two counted it within different bounds (goodputs of different bounds are different figures)."""
    base, cand = (run.config.gates.goodput_latency_ms for run in (baseline, candidate))
    if base is not None and base == cand:
        return (FIGURES[0], GOODPUT, *FIGURES[1:]), ()
    if base is None and cand is None:
        return FIGURES, ()
    if base is not None and cand is not None:
        why = f"the baseline counted it within {base:g} ms, the candidate within {cand:g} ms"
    else:
        why = f"only the {'baseline' if base is not None else 'candidate'} run measured it (--goodput-latency-ms)"
    return FIGURES, (f"goodput: not compared: {why}",)


def _levels(run: RunResult) -> str:
    names = ", ".join(_name(level) for level in run.levels) or "none"
    return names if run.status == COMPLETE else f"{names}, a run {run.status}"


def compare_runs(
    baseline: RunResult, candidate: RunResult, limit_pct: float, confidence_pct: float = DEFAULT_CONFIDENCE_PCT
) -> Comparison:
    """Match levels by kind and value; a figure regressed when it worsened by more than `limit_pct`
    percent with `confidence_pct` percent confidence, given the noise each run shows."""
    if not 50 < confidence_pct < 100:
        raise UsageError(f"confidence must be above 50% and below 100%, got {confidence_pct:g}%: fix --confidence")
    base_levels = {(lv.label, lv.value): lv for lv in baseline.levels}
    cand_levels = {(lv.label, lv.value): lv for lv in candidate.levels}
    common = [key for key in base_levels if key in cand_levels]
    if not common:
        raise UsageError(
            f"the two runs have no level in common (baseline: {_levels(baseline)}; candidate: {_levels(candidate)}): "
            "compare runs of the same sweep"
        )
    figures, goodput_notes = _figures(baseline, candidate)
    levels = []
    untested: dict[tuple[str, ...], list[str]] = {}  # which runs lack noise figures → the figures
    stream_lacking: dict[str, list[str]] = {}  # a streaming figure left out somewhere → the runs that lacked it
    stream_compared = sequences_compared = False
    for key in common:
        base, cand = base_levels[key], cand_levels[key]
        deltas = []
        for figure, attribute, percentile, higher_is_better in figures:
            noise = _noise(base, figure, attribute, percentile), _noise(cand, figure, attribute, percentile)
            lacking = _lacking_noise(untested, figure, noise)
            values = _at(base.client, attribute, percentile), _at(cand.client, attribute, percentile)
            deltas.append(
                _delta(figure, float(values[0]), float(values[1]), higher_is_better, None if lacking else noise, limit_pct, confidence_pct)
            )
        if base.streaming is not None and cand.streaming is not None:
            deltas += _stream_deltas(base, cand, limit_pct, confidence_pct, stream_lacking, untested)
            stream_compared = True
        if base.sequences is not None and cand.sequences is not None:
            deltas.append(_delta(SEQUENCES, base.sequences.completed_per_s, cand.sequences.completed_per_s, True, None,
                                 limit_pct, confidence_pct))  # fmt: skip
            sequences_compared = True
        stable = base.stable and cand.stable
        complete = not base.incomplete and not cand.incomplete
        levels.append(LevelComparison(key[0], key[1], stable, complete, tuple(deltas)))
    return Comparison(
        limit_pct=limit_pct,
        confidence_pct=confidence_pct,
        levels=tuple(levels),
        baseline=_state(baseline, [_name(lv) for k, lv in cand_levels.items() if k not in base_levels]),
        candidate=_state(candidate, [_name(lv) for k, lv in base_levels.items() if k not in cand_levels]),
        notes=goodput_notes + tuple(_untested_note(names, list(runs)) for runs, names in untested.items())
        + _stream_notes(baseline, candidate, stream_compared, stream_lacking)
        + _sequence_notes(baseline, candidate, sequences_compared),
    )


def compare(
    baseline: RunResult, candidate: RunResult, limit_pct: float, confidence_pct: float = DEFAULT_CONFIDENCE_PCT
) -> Comparison | MixComparison:
    """compare_runs, or model by model for two mixes; a mix against one model's run is refused."""
    if bool(baseline.mix) != bool(candidate.mix):
        mix, single = ("baseline", "candidate") if baseline.mix else ("candidate", "baseline")
        raise UsageError(f"the {mix} run measured several models at once and the {single} run one: "
                         "compare two mixes, or two runs of one model")
    if not baseline.mix:
        return compare_runs(baseline, candidate, limit_pct, confidence_pct)
    base = {part.config.target.model_name: part for part in baseline.mix}
    cand = {part.config.target.model_name: part for part in candidate.mix}
    common = [name for name in base if name in cand]
    if not common:
        raise UsageError(f"the two mixes have no model in common (baseline: {', '.join(base)}; candidate: {', '.join(cand)}): "
                         "compare runs of the same models")
    models = []
    for name in common:
        try:
            models.append((name, compare_runs(base[name], cand[name], limit_pct, confidence_pct)))
        except UsageError as exc:
            raise UsageError(f"model {name}: {exc}") from None
    only = [f"Model {name}: only in the baseline run, not compared." for name in base if name not in cand]
    only += [f"Model {name}: only in the candidate run, not compared." for name in cand if name not in base]
    return MixComparison(tuple(models), tuple(only), _state(baseline, []), _state(candidate, []))


def _show(figure: str, value: float) -> str:
    if figure == TOKENS:
        return f"{value:,.1f} tokens/s"
    if figure == SEQUENCES:
        return f"{value:,.1f} seq/s"
    return f"{value:,.1f} infer/s" if figure in RATES else f"{value / 1e3:,.2f} ms"


def _sure(confidence_pct: float) -> str:
    """A confidence in whole percent, never rounded to a certainty it is not; tenths above 99 (--confidence 99.5)."""
    if confidence_pct < 1:
        return "<1%"
    if confidence_pct > 99.9:
        return ">99.9%"
    return f"{confidence_pct:.1f}%" if confidence_pct > 99 else f"{confidence_pct:.0f}%"


def _mark(level: LevelComparison, delta: FigureDelta) -> str:
    marks = []
    if delta.regression:
        marks.append("REGRESSION" if delta.tested else "REGRESSION (limit only)")
    elif delta.within_noise:
        marks.append("within noise")
    if not level.stable:
        marks.append("(unstable level)")
    if not level.complete:
        marks.append("(incomplete level)")
    return " ".join(marks)


def _run_line(role: str, state: RunState) -> str:
    reason = f" ({state.stop_reason})" if state.stop_reason else ""
    lacks = f": it lacks {', '.join(state.missing)}, not compared" if state.missing else ": it has every level the other run has"
    return f"The {role} run is {state.status}{reason}{lacks}."


def comparison_lines(comparison: Comparison | MixComparison) -> list[str]:
    """A table of every compared figure with its noise and confidence, regressions marked, and a closing verdict;
    for two mixes, each model's under its name, then the models in one run only and the verdict over all."""
    if isinstance(comparison, MixComparison):
        return _mix_lines(comparison)
    limit, confidence = f"{comparison.limit_pct:g}%", f"{comparison.confidence_pct:g}%"
    lines = [f"A REGRESSION is worse by more than {limit} with {confidence} confidence, given each run's own noise."]
    rows = [("Level", "Figure", "Baseline", "Candidate", "Change", f"±{confidence}", f"Sure >{limit} worse", "")]
    for level in comparison.levels:
        for delta in level.deltas:
            change = f"{delta.change_pct:+.1f}%" if delta.change_pct is not None else "n/a"
            margin = f"±{delta.margin_pct:.1f}%" if delta.margin_pct is not None else "n/a"
            sure = _sure(delta.confidence_pct) if delta.confidence_pct is not None else "n/a"
            rows.append(
                (f"{level.label} {level.value:g}", delta.figure, _show(delta.figure, delta.baseline),
                 _show(delta.figure, delta.candidate), change, margin, sure, _mark(level, delta))
            )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(7)]
    lines += [("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[7]).rstrip() for row in rows]
    lines += [f"Note: {note}." for note in comparison.notes]
    for role, state in (("baseline", comparison.baseline), ("candidate", comparison.candidate)):
        if not state.complete:
            lines.append(_run_line(role, state))
        elif state.missing:
            lines.append(f"Only in the {'candidate' if role == 'baseline' else 'baseline'} (not compared): {', '.join(state.missing)}")
    count = len(comparison.regressions)
    noisy = sum(delta.within_noise for level in comparison.levels for delta in level.deltas)
    within = f"; {noisy} change{'s' if noisy != 1 else ''} beyond {limit} within noise" if noisy else ""
    # Rounded up, so that the limit shown passes.
    lines.append(f"Passes with --max-regression {math.ceil(comparison.passing_limit_pct * 10) / 10:g}% or more.")
    if count:
        lines.append(f"Result: {count} regression{'s' if count != 1 else ''} beyond {limit}{within}")
    else:
        lines.append(f"Result: no regression beyond {limit}{within}")
    return lines


def _mix_lines(comparison: MixComparison) -> list[str]:
    lines = []
    for name, each in comparison.models:
        lines += [f"Model {name}:", *(f"  {line}" for line in comparison_lines(each)), ""]
    lines += list(comparison.only)
    regressed = [name for name, each in comparison.models if each.regressions]
    if regressed:
        lines.append(f"Result: {', '.join(regressed)} regressed ({len(comparison.regressions)} regressions in all)")
    else:
        lines.append(f"Result: no model regressed ({len(comparison.models)} compared)")
    return lines
