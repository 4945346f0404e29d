"""`loadgen tune`: searches an ensemble's composing-model configurations for the most throughput
within the bounds (docs in README, "Tuning an ensemble's configuration"; tune.json in docs/tune.md).

The server runs with explicit model control. Each candidate the search proposes (loadgen.tune_search)
is loaded with configuration overrides (loadgen.model_control: the user's files are never edited)
and measured by the same binary search as `run --binary-search`, its run written to its own folder
under the tune's. tune.json is rewritten after every candidate, so a killed tune keeps what it
measured and `--resume` continues it: the search replays the recorded results and measures only
what it had not. Once the search ends, the leading candidates are measured again, in ABBA order at
the level that set their throughput, and the best is named on the mean; its configuration is
written out as a deployable repository (loadgen.best_repository).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import uvloop
import yaml

from loadgen.best_repository import write_best_repository
from loadgen.config import Range, RunConfig, prepare
from loadgen.errors import Interrupted, LoadgenError, ModelLoadError, ServerError, ServerGone, UsageError
from loadgen.knobs import (
    Candidate,
    ModelConfig,
    apply_candidate,
    candidate_key,
    default_candidate,
    default_space,
    ensemble_steps,
    narrow_space,
    parse_pbtxt,
    to_json,
)
from loadgen.listener import Listeners, RunListener
from loadgen.model_control import check_model_control, current_configs, load_configs
from loadgen.report.base import write_atomic
from loadgen.report.csv_report import CsvReport
from loadgen.report.json_report import JsonReport
from loadgen.report.tune_html import render_tune_report
from loadgen.result import RunResult
from loadgen.runner import (
    Interrupts,
    check_model_in_repository,
    check_writable,
    default_model_repository,
    default_report_dir,
    sweep_over,
)
from loadgen.scraper import server_metrics_url
from loadgen.server import EmbeddedServer
from loadgen.transport import Transport, open_transport
from loadgen.tune_result import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    LOAD_FAILED,
    MEASURED,
    NO_LEVEL,
    RUN_FAILED,
    CandidateResult,
    TuneResult,
)
from loadgen.tune_search import GridSearch, GuidedSearch, Proposal, Search, best_index, leaders

TUNE_FILE = "tune.json"
SERVER_LOG = "server.log"
DEFAULT_CONCURRENCY = Range(1, 32, 1)  # searched when no range is given
LOAD_TIMEOUT_S = 300.0  # the most one candidate's models may take to load and become ready


@dataclass(frozen=True)
class TuneOptions:
    search: str  # guided or grid
    max_candidates: int
    time_budget_s: float
    knobs_file: Path | None
    max_instances: int
    min_gain_pct: float  # the guided search keeps a change only above this gain (and the noise)
    remeasure: int  # leading candidates measured again before the best is named
    resume: Path | None
    yes_reload_models: bool

    def record(self) -> dict[str, Any]:
        return {"search": self.search, "max_candidates": self.max_candidates, "time_budget_s": self.time_budget_s,
                "knobs_file": str(self.knobs_file) if self.knobs_file else None, "max_instances": self.max_instances,
                "min_gain_pct": self.min_gain_pct, "remeasure": self.remeasure}  # fmt: skip


class TuneListener:
    """What the console hears of a tune; every method optional."""

    def candidate_started(self, index: int, proposal: Proposal) -> None: ...

    def candidate_finished(self, result: CandidateResult) -> None: ...

    def remeasuring(self, indices: Sequence[int]) -> None: ...

    def tune_finished(self, result: TuneResult) -> None: ...


def check_tunable(config: RunConfig) -> None:
    """What tune refuses before anything starts: a run without a bound, and options that make no
    sense once per candidate."""
    gates, outputs = config.gates, config.outputs
    if not gates.slas and gates.latency_threshold_ms is None:
        raise UsageError("tune needs a bound to stay within: give --sla EXPR (e.g. 'p99_ms<100') or -l MS")
    refused = {"-f": outputs.csv_file, "--junit": outputs.junit_file, "--profile-export-file": outputs.profile_export_file,
               "--export-metrics-port": outputs.export_metrics_port, "--workers": config.load.workers,
               "--trace-rate/--trace-level": outputs.trace_rate if outputs.tracing else None}  # fmt: skip
    for flag, value in refused.items():
        if value is not None:
            raise UsageError(f"{flag} does not apply to tune (each candidate's run is in its own folder): "
                             f"drop it, and use it with loadgen run on the best configuration")  # fmt: skip


def candidate_figures(result: RunResult) -> dict[str, Any]:
    """A candidate's CandidateResult fields from its run: the binary search's answer and, at the
    level that gave it (or the first level, when none met the bounds), p99, window spread, each
    composing model's queue + compute per request, and the server's CPU and GPU utilization."""
    capacity = result.capacity
    levels = {level.value: level for level in result.levels}
    level = levels.get(capacity.level_value) if capacity is not None else (result.levels[0] if result.levels else None)
    figures: dict[str, Any] = {"outcome": MEASURED if capacity is not None else NO_LEVEL}
    if capacity is None:  # why: a bound breached already at the range's start, or no level stable
        figures["message"] = result.stop_reason
    if capacity is not None:
        figures |= {"throughput_infer_per_s": capacity.throughput_infer_per_s, "level_value": capacity.level_value,
                    "servers_needed": capacity.replicas}  # fmt: skip
    if level is None:
        return figures
    throughputs = [window.throughput_infer_per_s for window in level.reported_windows]
    mean = sum(throughputs) / len(throughputs) if throughputs else 0.0
    # A nested ensemble's figures are its steps' sums: its steps count, not itself.
    stage_time_us = {model.name: model.queue_us + model.compute_us for model in level.server.walk() if not model.composing}
    metrics = level.metrics
    gpus = [gpu.avg_utilization for gpu in metrics.gpus if gpu.avg_utilization is not None] if metrics else []
    p99_us = level.client.percentile_latency_us.get(99) if level.client.request_count else None
    return figures | {
        "p99_ms": p99_us / 1e3 if p99_us is not None else None,
        "spread": (max(throughputs) - min(throughputs)) / mean if mean > 0 else None,
        "stage_time_us": stage_time_us,
        "cpu_utilization": metrics.avg_cpu_utilization if metrics else None,
        "gpu_utilization": sum(gpus) / len(gpus) if gpus else None,
    }


class _Tune:
    """One tune over an open transport: the search loop, the re-measurement, the result."""

    def __init__(self, config: RunConfig, options: TuneOptions, knobs: dict[str, Any], tune_dir: Path,
                 listener: TuneListener, run_listeners: Callable[[], Sequence[RunListener]], interrupts: Interrupts) -> None:  # fmt: skip
        self.config, self.options, self.knobs, self.dir, self.listener = config, options, knobs, tune_dir, listener
        self.run_listeners, self.interrupts = run_listeners, interrupts
        self.metrics_at: str | None = None
        self._loaded: tuple[Candidate, dict[str, dict[str, Any]]] | None = None  # what the server has loaded, as read back
        self.server_exit: Callable[[], str | None] | None = None
        self.candidates: list[CandidateResult] = []
        self.started_at = datetime.now().isoformat(timespec="seconds")
        self.status, self.stop_reason = COMPLETE, None
        self.base: dict[str, ModelConfig] = {}
        self.models: list[str] = []

    def connect(self, url: str, metrics_at: str, server_exit: Callable[[], str | None] | None) -> None:
        """The server is up: where its requests and metrics go, and how to tell it died."""
        self.config = replace(self.config, target=replace(self.config.target, url=url))
        self.metrics_at = self.config.outputs.metrics_url or metrics_at
        self.server_exit = server_exit

    def finish(self, status: str, reason: str | None) -> None:
        self.status, self.stop_reason = status, reason
        self._write(finished=True)

    @property
    def ensemble(self) -> str:
        return self.config.target.model_name

    def result(self, finished: bool = False) -> TuneResult:
        load_range = self.config.load.load_range
        searched = {"flag": self.config.load.range_flag, "start": load_range.start, "end": load_range.end}
        return TuneResult(self.ensemble, self.options.search, self.options.record() | {"bounds": self._bounds(), "range": searched},
                          tuple(self.candidates), best_index(self.candidates), self.status if finished else "running", self.stop_reason,
                          self.started_at, datetime.now().isoformat(timespec="seconds") if finished else None)  # fmt: skip

    def _bounds(self) -> dict[str, Any]:
        gates = self.config.gates
        return {"sla": [sla.expression for sla in gates.slas], "latency_threshold_ms": gates.latency_threshold_ms,
                "target_throughput": gates.target_throughput, "headroom_pct": gates.headroom_pct}  # fmt: skip

    def _write(self, finished: bool = False) -> None:
        write_atomic(self.dir / TUNE_FILE, json.dumps(self.result(finished).to_dict(), indent=2) + "\n")

    async def run(self, transport: Transport, prior: Sequence[CandidateResult]) -> None:
        ensemble_config, self.base = await current_configs(transport, self.ensemble)
        self.models = ensemble_steps(ensemble_config)
        spaces = {model: default_space(self.base[model], ensemble_config.max_batch_size, self.options.max_instances)
                  for model in self.models}  # fmt: skip
        spaces = narrow_space(spaces, self.knobs, self.base, ensemble_config.max_batch_size)
        start = default_candidate(self.base, self.models)
        search: Search = (GridSearch(spaces, start, self.options.max_candidates) if self.options.search == "grid"
                          else GuidedSearch(spaces, start, self.options.min_gain_pct / 100))  # fmt: skip
        recorded = {candidate.key: candidate for candidate in prior}
        began = time.monotonic()
        while (proposal := search.next()) is not None:
            if len(self.candidates) == self.options.max_candidates:
                self.stop_reason = f"--max-candidates {self.options.max_candidates} reached"
                break
            key = candidate_key(proposal.candidate)
            if key in recorded:  # measured before --resume: replayed, not measured again
                result = replace(recorded.pop(key), index=len(self.candidates))
            else:
                spent = time.monotonic() - began
                measured = [candidate.duration_s for candidate in self.candidates if candidate.duration_s]
                if measured and spent + sum(measured) / len(measured) > self.options.time_budget_s:
                    self.stop_reason = f"time budget of {self.options.time_budget_s / 60:g} min spent"
                    break
                self.listener.candidate_started(len(self.candidates), proposal)
                result = await self._measure(transport, proposal)
            self.candidates.append(result)
            search.record(result)
            self._write()
            self.listener.candidate_finished(result)
            if result.outcome == RUN_FAILED and self.server_exit is not None and self.server_exit() is not None:
                raise ServerGone(f"the embedded Triton server {self.server_exit()} while measuring candidate {result.index}: "
                                 f"{result.message}")  # fmt: skip
        else:
            self.stop_reason = search.stop_reason
        await self._remeasure(transport)

    async def _load(self, transport: Transport, candidate: Candidate) -> dict[str, dict[str, Any]]:
        """Load `candidate` unless it is what the server has loaded (the ABBA turn's middle)."""
        if self._loaded is not None and self._loaded[0] == candidate:
            return self._loaded[1]
        self._loaded = None  # a failed load leaves the server with part of it
        configs = await load_configs(transport, self.ensemble, apply_candidate(self.base, candidate), LOAD_TIMEOUT_S)
        self._loaded = (candidate, configs)
        return configs

    async def _sweep(self, transport: Transport, config: RunConfig, run_dir: Path) -> RunResult:
        listeners = Listeners([JsonReport(run_dir / "summary.json"), CsvReport(run_dir / "results.csv"), *self.run_listeners()])
        # No roofline per candidate: the search compares throughputs, and the direct timing would take its time.
        run_config = replace(config, outputs=replace(config.outputs, report_dir=run_dir, no_roofline=True))
        return await sweep_over(run_config, transport, listeners, self.metrics_at, self.server_exit, self.interrupts)

    async def _measure(self, transport: Transport, proposal: Proposal) -> CandidateResult:
        index = len(self.candidates)
        run_dir = Path("candidates") / f"{index:03d}"
        wanted = apply_candidate(self.base, proposal.candidate)
        common = {"index": index, "settings": proposal.candidate, "reason": proposal.reason, "run_dir": str(run_dir),
                  "configs": {model: to_json(config) for model, config in wanted.items()}}  # fmt: skip
        started = time.monotonic()
        try:
            common["configs"] = await self._load(transport, proposal.candidate)
        except ModelLoadError as exc:
            return CandidateResult(**common, outcome=LOAD_FAILED, message=str(exc), duration_s=time.monotonic() - started)
        try:
            run = await self._sweep(transport, self.config, self.dir / run_dir)
        except (UsageError, asyncio.CancelledError):
            raise
        except LoadgenError as exc:
            return CandidateResult(**common, outcome=RUN_FAILED, message=str(exc), duration_s=time.monotonic() - started)
        return CandidateResult(**common, **candidate_figures(run), duration_s=time.monotonic() - started)

    async def _remeasure(self, transport: Transport) -> None:
        """The leaders measured again at their level, in ABBA order (first to last, then back):
        drift between the search's early and late candidates is up to 20% on a shared machine."""
        chosen = leaders(self.candidates, self.options.remeasure)
        if len(chosen) < 2:
            return
        self.listener.remeasuring(chosen)
        for turn, index in enumerate([*chosen, *reversed(chosen)]):
            candidate = self.candidates[index]
            await self._load(transport, candidate.settings)
            level = Range(candidate.level_value, candidate.level_value, 1)
            load = replace(self.config.load, concurrency_range=level, request_rate_range=None) \
                if self.config.load.request_rate_range is None else replace(self.config.load, request_rate_range=level)  # fmt: skip
            config = replace(self.config, load=load, gates=replace(self.config.gates, binary_search=False))
            run = await self._sweep(transport, config, self.dir / f"{candidate.run_dir}-again{turn // len(chosen) + 1}")
            throughput = run.levels[0].client.throughput_infer_per_s if run.levels else 0.0
            self.candidates[index] = replace(candidate, remeasured_infer_per_s=(*candidate.remeasured_infer_per_s, throughput))
            self._write()

    async def restore(self, transport: Transport) -> None:
        """A -u server gets its own configuration back."""
        if self.base:
            await load_configs(transport, self.ensemble, self.base, LOAD_TIMEOUT_S)


def read_prior(tune_dir: Path, ensemble: str, search: str) -> list[CandidateResult]:
    """The candidates a killed tune in `tune_dir` measured (--resume)."""
    path = tune_dir / TUNE_FILE
    try:
        data = json.loads(path.read_text())
        prior = TuneResult.from_dict(data)
    except FileNotFoundError:
        raise UsageError(f"--resume {tune_dir}: no {TUNE_FILE} there: give the report folder of an earlier tune") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--resume {tune_dir}: {TUNE_FILE} cannot be read ({exc}): start a new tune") from None
    if (prior.ensemble, prior.search) != (ensemble, search):
        raise UsageError(f"--resume {tune_dir}: that tune searched {prior.ensemble} with --search {prior.search}: "
                         "give the same model and search")  # fmt: skip
    return [candidate for candidate in prior.candidates if candidate.outcome != RUN_FAILED]


def read_knobs(path: Path) -> dict[str, Any]:
    """--knobs FILE.yaml: model name -> knob -> a value or a list of values (docs/tune.md)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--knobs {path}: {exc.strerror or exc}: give a readable YAML file") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise UsageError(f"--knobs {path} is not valid YAML: fix its syntax") from None
    if not isinstance(data, dict):
        raise UsageError(f"--knobs {path} must map model names to knobs, e.g. 'centernet: {{instances: [1, 2]}}'")
    return data


def tune(config: RunConfig, options: TuneOptions, listener: TuneListener = TuneListener(),
         run_listeners: Callable[[], Sequence[RunListener]] = tuple) -> TuneResult:  # fmt: skip
    """Tune the ensemble `config` names (module docstring); the result is also in the tune's
    folder as tune.json, with each candidate's run and, when a candidate met the bounds, best/."""
    check_tunable(config)
    load = config.load
    if load.request_rate_range is None and not load.single_level and load.concurrency_range == Range(1, 1, 1):
        config = replace(config, load=replace(load, concurrency_range=DEFAULT_CONCURRENCY))
    elif load.single_level or not 0 < load.load_range.start < load.load_range.end:
        raise UsageError(f"tune searches a range for its highest level within the bounds: give {load.range_flag} "
                         f"START:END with END above START (default --concurrency-range {DEFAULT_CONCURRENCY.start:g}:{DEFAULT_CONCURRENCY.end:g})")  # fmt: skip
    config = prepare(replace(config, gates=replace(config.gates, binary_search=True),
                             outputs=replace(config.outputs, collect_metrics=True)))  # fmt: skip
    target = config.target
    if target.url is not None and not options.yes_reload_models:
        raise UsageError("tune reloads the models of the server it is given, changing what it serves: "
                         "add --yes-reload-models to allow it (the server needs --model-control-mode=explicit)")  # fmt: skip
    knobs = read_knobs(options.knobs_file) if options.knobs_file is not None else {}
    tune_dir = options.resume or config.outputs.report_dir or default_report_dir(f"tune-{target.model_name}")
    prior = read_prior(tune_dir, target.model_name, options.search) if options.resume else []
    check_writable(tune_dir, "--report-dir")
    repository = None if target.url is not None else (target.model_repository or default_model_repository())
    if repository is not None:
        check_model_in_repository(repository, target.model_name)
    server = EmbeddedServer(repository, tune_dir / SERVER_LOG, explicit_models=(target.model_name,)) if repository else None
    with Interrupts() as interrupts:
        session = _Tune(config, options, knobs, tune_dir, listener, run_listeners, interrupts)
        try:
            if server is not None:
                endpoints = server.start()
                session.connect(endpoints.http if target.protocol == "http" else endpoints.grpc, endpoints.metrics_url,
                                server.exit_status)  # fmt: skip
            else:
                session.connect(target.url, server_metrics_url(target.url), None)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(_tune(session, prior, remote=server is None))
        except (KeyboardInterrupt, asyncio.CancelledError):
            session.finish(INTERRUPTED, f"interrupted by {interrupts.signal_name or 'SIGINT'}")
            raise Interrupted(session.stop_reason) from None
        except LoadgenError as exc:
            session.finish(FAILED, f"failed: {exc}")
            raise
        finally:
            if server is not None:
                server.stop()
    result = session.result(finished=True)
    if result.best is not None:
        best = result.candidates[result.best]
        files = None if repository is None else {
            model: parse_pbtxt((repository / model / "config.pbtxt").read_text(), str(repository / model / "config.pbtxt"))
            for model in session.models}  # fmt: skip
        write_best_repository(repository, tune_dir / "best", apply_candidate(files or session.base, best.settings))
    session.finish(COMPLETE, session.stop_reason)
    render_tune_report(result, tune_dir)
    listener.tune_finished(result)
    return result


async def _tune(session: _Tune, prior: Sequence[CandidateResult], remote: bool) -> None:
    session.interrupts.task = asyncio.current_task()
    target = session.config.target
    async with open_transport(target.protocol, target.url, target.headers, target.tls, target.request_timeout_ms,
                              target.connect_timeout_s) as transport:  # fmt: skip
        if remote:
            await check_model_control(transport, target.model_name)
        try:
            await session.run(transport, prior)
        finally:
            if remote:
                try:
                    await session.restore(transport)
                except ServerError as exc:
                    session.stop_reason = f"{session.stop_reason or ''}; the server's own configuration could not be loaded back: {exc}".lstrip("; ")
