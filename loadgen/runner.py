"""A run's lifecycle: the server (embedded or given), the sweep, and the report folder."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import signal
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import uvloop

from loadgen.config import RunConfig, Target, prepare
from loadgen.errors import Interrupted, LoadgenError, ServerGone, UsageError
from loadgen.health import ServerWatch
from loadgen.listener import Listeners, RunListener
from loadgen.live_metrics import LiveMetrics
from loadgen.mix import MixConfig, prepare_mix
from loadgen.mix_sweep import MixSweep
from loadgen.profile_export import ProfileExport
from loadgen.otlp_collector import listen as listen_for_traces
from loadgen.redact import redact_url
from loadgen.report.csv_report import CsvReport
from loadgen.report.json_report import JsonReport
from loadgen.report.junit import JunitReport
from loadgen.report.metrics_csv import MetricsCsvReport
from loadgen.report.render import SUMMARY, HtmlReport
from loadgen.report.workers_csv import WorkersCsvReport
from loadgen.result import COMPLETE, FAILED, INTERRUPTED, RunResult
from loadgen.scraper import metrics_url, server_metrics_url
from loadgen.server import EmbeddedServer, Endpoints
from loadgen.sweep import Sweep
from loadgen.tracing import TRACE_FILE, Tracer, clear_trace_files
from loadgen.transport import Transport, open_transport
from loadgen.workers import preflight

SERVER_LOG = "server.log"


def default_model_repository() -> Path:
    """./model_repository, else the one shipped beside the loadgen package in its source tree."""
    here = Path.cwd() / "model_repository"
    if here.is_dir():
        return here
    shipped = Path(__file__).resolve().parent.parent / "model_repository"
    if shipped.is_dir():
        return shipped
    raise UsageError("no model_repository/ here or beside loadgen: pass --model-repository DIR, or -u to use a running server")


def check_model_in_repository(repository: Path, model: str) -> None:
    """The embedded server loads only the model measured (and an ensemble's steps): one that is not
    in its repository is a mistake to say before it starts."""
    repository = Path(repository)
    if repository.is_dir() and not (repository / model).is_dir():
        models = sorted(entry.name for entry in repository.iterdir() if (entry / "config.pbtxt").is_file())
        raise UsageError(f"model {model} is not in {repository}: -m names one of {', '.join(models) or 'none'}")


def default_report_dir(model: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}"


class Interrupts:
    """SIGINT, SIGTERM and SIGHUP, while a run is on: the sweep is cancelled (its finished levels are then
    written and the server stopped) instead of the process dying where it stands."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.task: asyncio.Task | None = None  # the sweep, once it runs
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        self.signal_name = self.signal_name or signal.Signals(signum).name
        task = self.task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def served(config: RunConfig, endpoints: Endpoints, repository: Path) -> RunConfig:
    """`config` pointed at the embedded server's endpoint for its protocol."""
    url = endpoints.http if config.target.protocol == "http" else endpoints.grpc
    return replace(config, target=replace(config.target, url=url, model_repository=repository))


def check_writable(directory: Path, flag: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".loadgen-write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write in {directory} ({exc.strerror or exc}): give {flag} a folder you can write to") from None


def _failure(exc: BaseException, interrupts: Interrupts | None) -> tuple[str, str]:
    """(status, stop reason) of a run that `exc` ended."""
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        signal_name = interrupts.signal_name if interrupts is not None else None
        return INTERRUPTED, f"interrupted by {signal_name or 'SIGINT'}"
    if isinstance(exc, LoadgenError):
        return FAILED, f"failed: {exc}"
    return FAILED, f"failed: {type(exc).__name__}: {exc}"


async def sweep_over(
    config: RunConfig,
    transport: Transport,
    listener: RunListener,
    metrics_at: str | None = None,
    server_exit: Callable[[], str | None] | None = None,
    interrupts: Interrupts | None = None,
    tracer: Tracer | None = None,
) -> RunResult:
    """The sweep of `config` over an open `transport`, from its first level to its last report;
    with a `tracer`, each level gets its figures from Triton's traces.

    `listener` hears of it all: the start, each level, window and warning, and the end, which it
    hears of whatever ended the run (a failure, an interruption, a server gone) with the levels that
    finished. What ended the run is raised after that; else a failure of `listener` to finish.
    """
    return await drive(await Sweep.open(config, transport, tracer), transport, listener, metrics_at, server_exit, interrupts)


async def drive(
    sweep: Sweep | MixSweep,
    transport: Transport,
    listener: RunListener,
    metrics_at: str | None = None,
    server_exit: Callable[[], str | None] | None = None,
    interrupts: Interrupts | None = None,
) -> RunResult:
    """An opened sweep (one model's, or a mix's) from its first level to its last report; `transport`
    is the one whose server is watched. As `sweep_over`."""
    config = sweep.config
    try:
        # What exists now (libraries, prepared requests) lives all run: keep it out of the collector's
        # full passes, which otherwise pause the load for tens of milliseconds.
        gc.freeze()
        listener.run_started(config)
        status, ended_by = COMPLETE, None
        try:
            if metrics_at is not None:
                await sweep.start_metrics(metrics_at, listener)
            await sweep.start_tracing(listener)
            watch = ServerWatch(redact_url(config.target.url), transport.server_live, server_exit)
            await watch.guard(sweep.run(listener))
        except ServerGone as exc:
            during = f" during {sweep.measuring}" if sweep.measuring else ""
            ended_by = ServerGone(f"{exc}{during}: {len(sweep.levels)} finished level(s) kept")
            status, sweep.stop_reason = FAILED, f"failed: {ended_by}"
        except BaseException as exc:  # interrupted, or failed: the finished levels are written all the same
            ended_by = exc
            status, sweep.stop_reason = _failure(exc, interrupts)
        await sweep.stop_metrics()
        await sweep.stop_tracing(listener)
        result = sweep.result(status)
        if status == COMPLETE and not config.outputs.no_roofline:
            # Imported here: ONNX Runtime is slow to import, and only a finished run needs it.
            from loadgen.roofline_run import with_roofline

            known = len(result.warnings)
            result = with_roofline(result)  # the load has stopped: the direct timing has the machine
            for note in result.warnings[known:]:
                listener.warning(note)
        unwritten = None
        try:
            listener.run_finished(result)
        except LoadgenError as exc:  # raised once the rest of the run is closed, unless something worse ended it
            unwritten = exc
    finally:
        await sweep.close()  # the workers' processes and connections, whatever happened

    if ended_by is not None:
        raise ended_by
    if unwritten is not None:
        raise unwritten
    return result


def _open(target: Target) -> AbstractAsyncContextManager[Transport]:
    return open_transport(target.protocol, target.url, target.headers, target.tls, target.request_timeout_ms,
                          target.connect_timeout_s)  # fmt: skip


async def _sweep(
    config: RunConfig | MixConfig,
    metrics_at: str | None,
    listener: RunListener,
    interrupts: Interrupts,
    server_exit: Callable[[], str | None] | None,
    tracer: Tracer | None,
) -> RunResult:
    interrupts.task = asyncio.current_task()
    if isinstance(config, RunConfig):
        async with _open(config.target) as transport:
            return await sweep_over(config, transport, listener, metrics_at, server_exit, interrupts, tracer)
    async with contextlib.AsyncExitStack() as stack:  # each model over its own transport (its own protocol)
        transports = [await stack.enter_async_context(_open(run.target)) for run in config.runs]
        return await drive(await MixSweep.open(config, transports), transports[0], listener, metrics_at, server_exit, interrupts)


def run(config: RunConfig | MixConfig, listeners: Sequence[RunListener] = ()) -> RunResult:
    """Run a sweep (of one model, or of a mix of models at once), starting the embedded server when
    no URL is given, and write the report folder.

    The folder holds summary.json, the CSVs, the metrics time series (with --collect-metrics),
    the plots, report.html and (embedded server) the server's log; a run that fails or is
    interrupted part way still writes the levels it finished, and summary.json and the CSVs are
    rewritten after every level. The server is stopped whatever happens; SIGINT and SIGTERM
    abandon the requests in flight and raise Interrupted once the report is written.

    `listeners` (the console, progress) hear of the run after the report files are written and
    before report.html is.
    """
    # Files read and TLS checked now, before any server starts.
    mix = prepare_mix(config) if isinstance(config, MixConfig) else None
    config = mix.first if mix is not None else prepare(config)
    target, outputs = config.target, config.outputs
    models = tuple(mix.names) if mix is not None else (target.model_name,)
    report_dir = outputs.report_dir or default_report_dir(target.model_name)
    # The files first: a level is on disk before the console and the progress line show it.
    everyone: list[RunListener] = [
        JsonReport(report_dir / SUMMARY),
        CsvReport(report_dir / "results.csv"),
        MetricsCsvReport(report_dir / "metrics.csv"),
        WorkersCsvReport(report_dir / "workers.csv"),
    ]
    if outputs.csv_file is not None:
        everyone.append(CsvReport(outputs.csv_file))
    if outputs.junit_file is not None:
        everyone.append(JunitReport(outputs.junit_file))
    if outputs.profile_export_file is not None:
        everyone.append(ProfileExport(outputs.profile_export_file, models if mix is not None else ()))
    everyone += listeners
    live = LiveMetrics(target.model_name) if outputs.export_metrics_port is not None else None
    if live is not None:
        everyone.append(live)
    everyone.append(HtmlReport(report_dir))  # last: the slowest, and it needs nothing the others write
    # Mistakes that would otherwise surface only once the server is up, or the first level done.
    if config.load.workers is not None:
        preflight(config.load)
    check_writable(report_dir, "--report-dir")
    files = ((outputs.csv_file, "-f"), (outputs.junit_file, "--junit"), (outputs.profile_export_file, "--profile-export-file"))
    for path, flag in files:
        if path is not None:
            check_writable(Path(path).parent, flag)
    metrics_at = metrics_url(outputs.metrics_url) if outputs.collect_metrics and outputs.metrics_url else None
    # Tracing: the embedded server writes its traces into the report folder, where loadgen reads them.
    trace_file = report_dir.resolve() / TRACE_FILE if outputs.tracing and target.url is None else None
    if trace_file is not None:
        clear_trace_files(trace_file)
    listening = Listeners(everyone)
    server = collector_socket = None
    with Interrupts() as interrupts:
        try:
            if outputs.trace_collector is not None:  # a busy port fails now, before any load
                collector_socket = listen_for_traces(*outputs.trace_collector)
            tracer = Tracer(outputs.trace_rate, trace_file, collector_socket) if outputs.tracing else None
            if live is not None:
                live.serve(outputs.export_metrics_port)
            if target.url is None:
                repository = target.model_repository or default_model_repository()
                for model in models:
                    check_model_in_repository(repository, model)
                # Only the models measured load (an ensemble with its steps): the others' start-up is not the run's.
                server = EmbeddedServer(repository, report_dir / SERVER_LOG, trace_file=trace_file, explicit_models=models)
                endpoints = server.start()
                config = served(config, endpoints, repository)
                if mix is not None:
                    mix = MixConfig(tuple(served(each, endpoints, repository) for each in mix.runs))
                if outputs.collect_metrics and metrics_at is None:
                    metrics_at = endpoints.metrics_url
            elif outputs.collect_metrics and metrics_at is None:
                metrics_at = server_metrics_url(target.url)
            server_exit = server.exit_status if server is not None else None
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(_sweep(mix or config, metrics_at, listening, interrupts, server_exit, tracer))
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise Interrupted(f"interrupted by {interrupts.signal_name or 'SIGINT'}") from None
        finally:
            if server is not None:
                server.stop()  # after the transport closed its connections: Triton would wait for them, then cut its files
                if tracer is not None and (note := tracer.finish()) is not None:
                    listening.warning(note)
            if live is not None:
                live.close()
            if collector_socket is not None:
                collector_socket.close()
