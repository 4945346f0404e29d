"""The command line: parses, calls the library, maps typed failures to exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from loadgen import __version__
from loadgen.errors import Interrupted, LoadgenError, ServerGone, UsageError
from loadgen.config import RunConfig
from loadgen.options import BY_NAME, add_argument, add_run_arguments, build_config, load_config_file, read_scenario

if TYPE_CHECKING:
    from loadgen.mix import MixConfig

EXIT_BREACHED = 1  # an SLA, or a regression in compare
EXIT_INTERRUPTED = 130
SERVE_POLL_S = 0.5  # how soon `serve` notices its Triton has died


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage text, and our exit code
        raise UsageError(f"{message} (see {self.prog} --help)")


class _VersionAsked(Exception):
    """--version: main prints it and returns 0 (argparse's own action would exit the process)."""


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print loadgen's version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        raise _VersionAsked


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="measure a model over a concurrency sweep", description="Measure a model, perf_analyzer style.")
    add_run_arguments(p)
    p.add_argument("--config", metavar="FILE.yaml", help="scenario file; keys are the long flag names, flags override it")


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the embedded Triton server and keep it up", description="Run the bundled Triton server.")
    p.add_argument("--model-repository", metavar="DIR", help="model repository (default ./model_repository)")
    p.add_argument("--http-port", type=int, metavar="N", help="HTTP port (default: a free one)")
    p.add_argument("--grpc-port", type=int, metavar="N", help="gRPC port (default: a free one)")
    p.add_argument("--metrics-port", type=int, metavar="N", help="metrics port (default: a free one)")
    p.add_argument("--log-file", metavar="FILE", help="server log (default triton-server.log)")


def _tune_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="search an ensemble's model configurations for the most throughput within the bounds",
        description="Load candidate configurations of the ensemble's composing models (instances, dynamic batching, "
        "queue delay, batch sizes) and measure each one's highest throughput within --sla and -l; exit 0 with a best "
        "configuration, 1 when none meets the bounds.",
    )
    add_run_arguments(p)
    p.add_argument("--config", metavar="FILE.yaml", help="scenario file of run options; flags override it")
    p.add_argument("--search", choices=("guided", "grid"), default="guided",
                   help="guided: relieve the dominant stage step by step; grid: every combination (default guided)")
    p.add_argument("--max-candidates", type=int, default=50, metavar="N", help="most candidates measured (default 50)")
    p.add_argument("--time-budget", type=float, default=30.0, metavar="MIN", help="stop searching after MIN minutes (default 30)")
    p.add_argument("--knobs", metavar="FILE.yaml", help="per model, the values each knob may take (docs/tune.md)")
    p.add_argument("--max-instances", type=int, default=4, metavar="N", help="instances per model tried, 1 to N (default 4)")
    p.add_argument("--min-gain", default="5%", metavar="PCT",
                   help="guided search: a change is kept only above this gain and the measurement's noise (default 5%%)")
    p.add_argument("--remeasure", type=int, default=3, metavar="N", help="leading candidates measured again before the best is named (default 3)")
    p.add_argument("--resume", metavar="DIR", help="continue the tune whose report folder is DIR")
    p.add_argument("--yes-reload-models", action="store_true",
                   help="with -u: allow tune to reload the server's models (it needs --model-control-mode=explicit)")


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="re-render a run's plots and report.html from its summary.json, or a tune's tune.html from its tune.json")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a report folder written by loadgen run or loadgen tune")


def _compare_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two runs level by level; exit 1 on a regression",
        description="Per-level changes of throughput and latency with their noise; exits 1 when the candidate "
        "regressed beyond the limit with the given confidence.",
    )
    p.add_argument("baseline", metavar="BASELINE_DIR", help="the reference run's report folder")
    p.add_argument("candidate", metavar="CANDIDATE_DIR", help="the run under test's report folder")
    p.add_argument("--max-regression", default="5%", metavar="PCT", help="allowed worsening of any figure, the allowance for drift between runs (default 5%%)")
    p.add_argument("--confidence", metavar="PCT", help="how sure a worsening beyond the limit must be to count as a regression (default 99%%)")
    p.add_argument("--require-complete", action="store_true", help="exit 2 when either run is not complete (failed, interrupted)")


def _export_schedule_parser(sub) -> None:
    p = sub.add_parser(
        "export-schedule",
        help="turn a run's --profile-export-file into a --schedule-file that replays its sends",
        description="Write a schedule file (JSON lines) to stdout: one line per request of the run's export, at its "
        "intended time (open loop) or send time (closed loop) from the first.",
    )
    p.add_argument("source", metavar="RUN_DIR_OR_EXPORT.json",
                   help="a report folder whose run wrote --profile-export-file, or the export file itself")


def _profile_model_parser(sub) -> None:
    p = sub.add_parser(
        "profile-model",
        help="count an ONNX model's FLOPs, parameters and bytes per layer and time it directly in ONNX Runtime",
        description="Per layer and in total: parameters, FLOPs (1 multiply-accumulate = 2 FLOPs), bytes read and "
        "written, arithmetic intensity; then, as trtexec times an engine, a warm-up and timed ONNX Runtime runs (CPU) "
        "with the thread settings of the model's config.pbtxt when the file sits in a Triton model directory.",
    )
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX file")
    p.add_argument("-b", "--batch-size", type=int, default=1, metavar="N", help="batch size: a dynamic first dimension (default 1)")
    p.add_argument("--shape", action="append", metavar="NAME:D1,D2",
                   help="an input's dynamic dimensions, without the batch dimension as perf_analyzer's or with it (repeatable)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.add_argument("--no-timing", action="store_true", help="count only: no ONNX Runtime session, no roof")
    p.add_argument("--warmup", type=float, default=200.0, metavar="MS", help="trtexec's --warmUp: run untimed for MS milliseconds first (default 200)")
    p.add_argument("--iterations", type=int, default=10, metavar="N", help="trtexec's --iterations: time at least N runs (default 10)")
    p.add_argument("--duration", type=float, default=3.0, metavar="S", help="trtexec's --duration: time runs for at least S seconds (default 3)")
    p.add_argument("--cov-warn", default="5%", metavar="PCT",
                   help="warn that the timing is unstable above this coefficient of variation of the latency (default 5%%)")
    p.add_argument("--intra-op-threads", type=int, metavar="N",
                   help="ONNX Runtime intra-op threads, over the config.pbtxt's (default: the config's, else ONNX Runtime's)")
    for name in ("peak-tflops", "peak-bandwidth-gbs"):
        add_argument(p, BY_NAME[name])


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="loadgen", description="Load-testing harness for NVIDIA Triton Inference Server.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _run_parser(sub)
    _serve_parser(sub)
    _tune_parser(sub)
    _report_parser(sub)
    _compare_parser(sub)
    _export_schedule_parser(sub)
    _profile_model_parser(sub)
    return p


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The run options of `args`, over those of its --config file."""
    options = load_config_file(Path(args.config)) if args.config else {}
    options.update({name: value for name, value in vars(args).items() if value is not None and name in BY_NAME})
    return build_config(options)


def _mix_or_run_config(args: argparse.Namespace) -> RunConfig | MixConfig:
    """`run`'s options: one model's, or with a scenario's `models:` list, a mix of models at once."""
    scenario = read_scenario(Path(args.config)) if args.config else None
    if scenario is None or scenario.models is None:
        return _run_config(args)
    from loadgen.mix import build_mix

    flags = {name: value for name, value in vars(args).items() if value is not None and name in BY_NAME}
    return build_mix(scenario.options, flags, scenario.models, Path(args.config))


def _run(args: argparse.Namespace) -> int:
    from loadgen.mix import MixConfig
    from loadgen.progress import Progress
    from loadgen.report.console import ConsoleReport
    from loadgen.runner import default_report_dir, run

    config = _mix_or_run_config(args)
    first = config.first if isinstance(config, MixConfig) else config
    report_dir = first.outputs.report_dir or default_report_dir("+".join(config.names) if isinstance(config, MixConfig)
                                                                 else first.target.model_name)  # fmt: skip
    runs = config.runs if isinstance(config, MixConfig) else (config,)
    runs = tuple(replace(each, outputs=replace(each.outputs, report_dir=report_dir)) for each in runs)
    config = MixConfig(runs) if isinstance(config, MixConfig) else runs[0]
    try:
        console = ConsoleReport(sys.stdout, mix=config.runs if isinstance(config, MixConfig) else ())
        result = run(config, [console, Progress(sys.stderr, first.windows.max_trials)])
    finally:
        if (report_dir / "summary.json").exists():  # also the finished levels of a failed run
            print(f"\nReport: {report_dir}", file=sys.stderr)
    return 0 if result.sla_passed else EXIT_BREACHED


def _tune(args: argparse.Namespace) -> int:
    from loadgen.config import parse_percent
    from loadgen.progress import Progress
    from loadgen.report.tune_console import TuneConsole
    from loadgen.runner import default_report_dir
    from loadgen.tuner import TuneOptions, tune

    for flag, value, least in (("--max-candidates", args.max_candidates, 1), ("--max-instances", args.max_instances, 1),
                               ("--remeasure", args.remeasure, 0)):  # fmt: skip
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    if not args.time_budget > 0:
        raise UsageError(f"--time-budget must be a positive number of minutes, got {args.time_budget:g}")
    config = _run_config(args)
    options = TuneOptions(args.search, args.max_candidates, args.time_budget * 60, Path(args.knobs) if args.knobs else None,
                          args.max_instances, parse_percent(args.min_gain, "--min-gain"), args.remeasure,
                          Path(args.resume) if args.resume else None, args.yes_reload_models)  # fmt: skip
    tune_dir = options.resume or config.outputs.report_dir or default_report_dir(f"tune-{config.target.model_name}")
    config = replace(config, outputs=replace(config.outputs, report_dir=tune_dir))
    try:
        result = tune(config, options, TuneConsole(sys.stdout, str(tune_dir)),
                      lambda: [Progress(sys.stderr, config.windows.max_trials)])  # fmt: skip
    finally:
        if (tune_dir / "tune.json").exists():
            print(f"\nReport: {tune_dir}", file=sys.stderr)
    return 0 if result.best is not None else EXIT_BREACHED


def _report(args: argparse.Namespace) -> int:
    from loadgen.report.render import SUMMARY, load_summary, load_tune, render_report
    from loadgen.report.tune_html import render_tune_report
    from loadgen.tuner import TUNE_FILE

    run_dir = Path(args.run_dir)
    if (run_dir / TUNE_FILE).exists() and not (run_dir / SUMMARY).exists():  # a tune's folder
        print(f"Report: {render_tune_report(load_tune(run_dir / TUNE_FILE), run_dir)}")
        return 0
    print(f"Report: {render_report(load_summary(run_dir), run_dir)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from loadgen.compare import DEFAULT_CONFIDENCE_PCT, compare, comparison_lines
    from loadgen.config import parse_percent
    from loadgen.report.render import load_summary

    limit_pct = parse_percent(args.max_regression, "--max-regression")
    confidence_pct = DEFAULT_CONFIDENCE_PCT if args.confidence is None else parse_percent(args.confidence, "--confidence")
    comparison = compare(load_summary(Path(args.baseline)), load_summary(Path(args.candidate)), limit_pct, confidence_pct)
    print("\n".join(comparison_lines(comparison)))
    if args.require_complete and not comparison.complete:
        runs = [f"the {role} run is {state.status}" for role, state in (("baseline", comparison.baseline), ("candidate", comparison.candidate))
                if not state.complete]  # fmt: skip
        raise UsageError(f"--require-complete: {' and '.join(runs)}; compare complete runs")
    return EXIT_BREACHED if comparison.regressions else 0


def _export_schedule(args: argparse.Namespace) -> int:
    from loadgen.schedule_export import export_schedule

    lines = export_schedule(Path(args.source))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _profile_model(args: argparse.Namespace) -> int:
    import json

    from loadgen.config import check_peaks, parse_percent, parse_shape
    from loadgen.direct_timing import OrtThreads, threads_for_file, time_model
    from loadgen.model_cost import load_onnx, model_cost
    from loadgen.report.model_profile import profile_json, profile_lines
    from loadgen.roof import resolve_roof

    for flag, value, least in (("-b", args.batch_size, 1), ("--iterations", args.iterations, 1),
                               ("--intra-op-threads", args.intra_op_threads, 1)):  # fmt: skip
        if value is not None and value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    for flag, value in (("--warmup", args.warmup), ("--duration", args.duration)):
        if not value >= 0:
            raise UsageError(f"{flag} must be 0 or more, got {value:g}")
    cov_warn = parse_percent(args.cov_warn, "--cov-warn")
    peak_tflops, peak_bandwidth_gbs = getattr(args, "peak-tflops"), getattr(args, "peak-bandwidth-gbs")
    check_peaks(peak_tflops, peak_bandwidth_gbs)
    shapes = dict(parse_shape(text) for text in args.shape or [])
    path = Path(args.model)
    model = load_onnx(path)
    cost = model_cost(model, args.batch_size, shapes)
    timing = roof = None
    if not args.no_timing:
        threads = threads_for_file(path)
        if args.intra_op_threads is not None:
            threads = OrtThreads(args.intra_op_threads, threads.inter_op, f"--intra-op-threads; inter-op from {threads.source}")
        timing = time_model(model, batch_size=args.batch_size, shapes=shapes, threads=threads, warmup_ms=args.warmup,
                            iterations=args.iterations, duration_s=args.duration)  # fmt: skip
        # The roof for the threads the session had: ONNX Runtime's default intra-op pool spans the cores.
        roof = resolve_roof(threads=threads.intra_op or os.cpu_count() or 1, local=True, peak_tflops=peak_tflops,
                            peak_bandwidth_gbs=peak_bandwidth_gbs)  # fmt: skip
    data = profile_json(cost, timing, cov_warn, roof)
    print(json.dumps(data, indent=2) if args.json else "\n".join(profile_lines(str(path), data)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from loadgen.runner import default_model_repository
    from loadgen.server import EmbeddedServer

    repository = Path(args.model_repository) if args.model_repository else default_model_repository()
    server = EmbeddedServer(repository, Path(args.log_file or "triton-server.log"), args.http_port, args.grpc_port, args.metrics_port)
    endpoints = server.start()
    ended = None
    try:
        if server.swept.servers:  # on stderr: stdout is the URLs other tools read
            print(f"Cleaned up after {server.swept.servers} earlier embedded server(s) that died: {server.swept.summary()}", file=sys.stderr)
        print(f"HTTP:    http://{endpoints.http}")
        print(f"gRPC:    grpc://{endpoints.grpc}")
        print(f"Metrics: {endpoints.metrics_url}")
        print(f"Triton is up (pid {server.pid}), log in {server.log_path}. Ctrl-C to stop.", flush=True)
        while (ended := server.exit_status()) is None:
            time.sleep(SERVE_POLL_S)
    except KeyboardInterrupt:
        pass  # SIGINT or SIGTERM is how a server is meant to end
    finally:
        removed = server.stop()
    if ended is not None:
        raise ServerGone(f"the embedded Triton server {ended}: {removed.summary()}")
    return 0


COMMANDS = {"run": _run, "tune": _tune, "serve": _serve, "report": _report, "compare": _compare,
            "export-schedule": _export_schedule, "profile-model": _profile_model}  # fmt: skip


def _interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP (a closed terminal) unwind like Ctrl-C, so servers are stopped and
    finished results written. SIGINT too, even when loadgen was started with it ignored (a
    background job of a shell without job control inherits that, and Python then leaves it so)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    _interrupt_on_termination()
    # grpc's core logs a failed TLS handshake on stderr at INFO, beside our one-line error.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        args = parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except _VersionAsked:
        print(f"loadgen {__version__}")
        return 0
    except Interrupted as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return exc.exit_code
    except LoadgenError as exc:
        print(f"loadgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
