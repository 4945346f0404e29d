"""Several models at once: a scenario's `models:` list as one RunConfig per model, and the checks
that span them (the options that belong to the whole run, the levels stepping together, the SLAs
that name their model)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loadgen.config import RunConfig, prepare
from loadgen.errors import UsageError
from loadgen.options import MODELS_KEY, build_config
from loadgen.replay import check_duration, check_models, read_schedule, replay_batch_size

# The options a model of a mix may set for itself; every other one is the whole run's (one server,
# one clock, one report folder), set at the top of the scenario or on the command line.
PER_MODEL = frozenset({
    "model-name", "model-version", "protocol", "streaming", "token-output", "header", "request-timeout",
    "concurrency-range", "request-rate-range", "request-distribution", "request-intervals", "schedule-file", "replay-speed",
    "replay-loop", "max-inflight", "seed",
    "latency-threshold", "goodput-latency-ms", "goodput-ttft-ms", "goodput-itl-ms", "sla",
    "batch-size", "shape", "input-data", "prompt-tokens", "max-tokens", "string-length", "validation-rtol", "validation-atol",
})  # fmt: skip
LOADS = ("concurrency-range", "request-rate-range", "request-intervals", "schedule-file")
# What a mix cannot do yet, and why, said as one line each.
REFUSED = {
    "binary-search": "bisects one model's range",
    "target-throughput": "plans capacity for one model",
    "trace-rate": "joins one model's requests to their traces",
    "trace-level": "joins one model's requests to their traces",
    "trace-collector-port": "joins one model's requests to their traces",
    "export-metrics-port": "counts one model's requests",
    "filename": "is one model's CSV (each model's is results.MODEL.csv in the report folder)",
}
PREFIX = re.compile(r"(?P<model>[^:<>=!\s]+):(?P<rest>.+)")


@dataclass(frozen=True)
class MixConfig:
    """Each model's run, in the scenario's order; the whole run's options are the same in each.

    The models are driven at the same time, level by level: level i of the run is each model's
    level i (a model with one level holds it at every level).
    """

    runs: tuple[RunConfig, ...]

    @property
    def names(self) -> list[str]:
        return [run.target.model_name for run in self.runs]

    @property
    def first(self) -> RunConfig:
        """The whole run's options (the server, the windows, the outputs) as every model has them."""
        return self.runs[0]

    @property
    def level_count(self) -> int:
        return max(len(level_values(run)) for run in self.runs)

    def values(self, index: int) -> list[float]:
        """Each model's value at level `index`."""
        return [values[index] if len(values) > 1 else values[0] for values in (level_values(run) for run in self.runs)]


def level_values(run: RunConfig) -> list[float]:
    """A model's levels: its range's values, or the one level of --request-intervals."""
    load = run.load
    if load.single_level:
        return [0.0]  # the intervals' or the recording's own rate, known once read
    values = load.load_range.values()
    if values is None:
        raise UsageError(f"{run.target.model_name}: an open-ended {load.range_flag} (end 0) does not step with the other "
                         "models: give it an end")
    return values


def build_mix(top: Mapping[str, Any], flags: Mapping[str, Any], models: Sequence[Mapping[str, Any]], path: Path) -> MixConfig:
    """The run of `models` (a scenario's items) over the scenario's `top` options and the command
    line's `flags`: an item's own keys win, then the flags, then the top of the file. An item's load
    (a range or intervals) replaces the one it would inherit. The run's SLAs (the flags' --sla, else
    the top's) apply to every model, or to the one their `MODEL:` prefix names; an item's add to its model's."""
    for index, item in enumerate(models):
        whole_run = sorted(key for key in item if key not in PER_MODEL)
        if whole_run:
            raise UsageError(f"config file {path}: {MODELS_KEY}[{index}] sets {whole_run[0]}, which applies to the whole run "
                             f"(one server, one clock): set it at the top of the file or as a flag")
        if "model-name" not in item:
            raise UsageError(f"config file {path}: {MODELS_KEY}[{index}] has no model-name: name the model it drives")
    names = [str(item["model-name"]) for item in models]
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise UsageError(f"config file {path}: model {twice} is listed twice in {MODELS_KEY}: give each model once")
    inherited = {**top, **{name: value for name, value in flags.items() if value is not None}}
    for name, why in REFUSED.items():
        if inherited.get(name):
            raise UsageError(f"--{name} {why}: it does not apply to several models at once; drop it or drive one model")
    shared_slas = [str(text) for text in inherited.pop("sla", None) or []]
    routed = _route_slas(shared_slas, names)
    runs = []
    for item, name in zip(models, names):
        options = dict(inherited)
        if any(key in item for key in LOADS):
            for key in LOADS:
                options.pop(key, None)
        options.update(item)
        options["sla"] = [*routed[name], *(str(text) for text in item.get("sla") or [])] or None
        try:
            runs.append(build_config(options))
        except UsageError as exc:
            raise UsageError(f"model {name}: {exc}") from None
    mix = MixConfig(tuple(runs))
    _check_levels(mix)
    return mix


def _route_slas(slas: Sequence[str], names: Sequence[str]) -> dict[str, list[str]]:
    """Each model's share of the run's SLAs: a `MODEL:` prefix names one model, none applies to each."""
    routed: dict[str, list[str]] = {name: [] for name in names}
    for text in slas:
        match = PREFIX.fullmatch(text.strip())
        if match is None:
            for name in names:
                routed[name].append(text)
        elif match["model"] in routed:
            routed[match["model"]].append(match["rest"])
        else:
            raise UsageError(f"--sla {text!r} names model {match['model']}, which is not in the mix "
                             f"({', '.join(names)}): prefix it with one of them, or drop the prefix to apply it to each")
    return routed


def _check_levels(mix: MixConfig) -> None:
    counts = {run.target.model_name: len(level_values(run)) for run in mix.runs}
    stepping = {count for count in counts.values() if count > 1}
    if len(stepping) > 1:
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise UsageError(f"the models' ranges step together, level by level, but have different numbers of levels ({shown}): "
                         "give each the same number, or one value that holds for every level")
    if mix.first.load.workers is not None and any(run.load.request_intervals is not None for run in mix.runs):
        raise UsageError("--request-intervals in a mix of models does not apply to --workers: give a --request-rate-range")



def prepare_mix(mix: MixConfig) -> MixConfig:
    """Each model's files read (loadgen.config.prepare), a schedule file once for the models that
    replay it: when several do, every line names its model, and each replays its own lines."""
    runs = list(mix.runs)
    files = {run.load.schedule_file for run in runs if run.load.schedule_file is not None}
    for path in files:
        sharing = [index for index, run in enumerate(runs) if run.load.schedule_file == path]
        names = [runs[index].target.model_name for index in sharing]
        plan = read_schedule(path)
        check_models(plan, names)
        if len(sharing) > 1 and (unnamed := next((entry for entry in plan.entries if entry.model is None), None)) is not None:
            raise UsageError(f"--schedule-file {plan.source} line {unnamed.line} names no model, and {', '.join(names)} replay "
                             "the file: give each line its model")  # fmt: skip
        for index in sharing:
            run = runs[index]
            check_duration(plan, run.load.replay_speed)
            entries = plan.for_model(run.target.model_name, only_model=True)
            if not entries:
                raise UsageError(f"--schedule-file {plan.source} has no line for model {run.target.model_name}: give it lines, "
                                 "or give that model a load of its own")  # fmt: skip
            batch_size = replay_batch_size(plan, entries, run.inputs.batch_size)
            runs[index] = replace(run, load=replace(run.load, replay=plan), inputs=replace(run.inputs, batch_size=batch_size))
    return MixConfig(tuple(prepare(run) for run in runs))
