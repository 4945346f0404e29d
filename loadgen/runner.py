"""A run's lifecycle: the server (embedded or given), the sweep, and the report folder."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import uvloop

from loadgen.config import RunConfig
from loadgen.errors import LoadgenError, UsageError
from loadgen.live_metrics import LiveMetrics
from loadgen.progress import Progress
from loadgen.report.base import ReportWriter
from loadgen.report.csv_report import CsvReport
from loadgen.report.json_report import JsonReport
from loadgen.report.junit import JunitReport
from loadgen.report.metrics_csv import MetricsCsvReport
from loadgen.report.render import SUMMARY, HtmlReport
from loadgen.scraper import metrics_url, server_metrics_url
from loadgen.server import EmbeddedServer
from loadgen.sweep import RunResult, Sweep
from loadgen.transport import open_transport

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


def default_report_dir(model: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}"


def _stop_reason(exc: BaseException) -> str:
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return "interrupted"
    if isinstance(exc, LoadgenError):
        return f"failed: {exc}"
    return f"failed: {type(exc).__name__}: {exc}"


async def _sweep(
    config: RunConfig, metrics_at: str | None, writers: Sequence[ReportWriter], progress: Progress | None
) -> RunResult:
    async with open_transport(config.protocol, config.url, config.headers) as transport:
        sweep = await Sweep.open(config, transport)
        # What exists now (libraries, prepared requests) lives all run: keep it out of the collector's
        # full passes, which otherwise pause the load for tens of milliseconds.
        gc.freeze()
        live = LiveMetrics(config.model_name) if config.export_metrics_port is not None else None
        if live is not None:
            live.serve(config.export_metrics_port)
            sweep.engine.observer = live.observe
        for writer in writers:
            writer.start(config)

        def on_level_start(schedule, engine):
            if progress is not None:
                progress.level_start(schedule, engine)
            if live is not None:
                live.level_start(schedule, engine)

        def on_level(level):
            if progress is not None:
                progress.level_done(level)
            for writer in writers:
                writer.level(level)

        try:
            if metrics_at is not None:
                await sweep.start_metrics(metrics_at, progress.warning if progress else None)
            await sweep.run(
                on_level_start=on_level_start,
                on_window=progress.window if progress else None,
                on_level=on_level,
            )
        except BaseException as exc:
            sweep.stop_reason = _stop_reason(exc)
            raise
        finally:
            await sweep.stop_metrics()
            if live is not None:
                live.close()
            # Also after a failure or an interruption: the finished levels are written.
            result = sweep.result()
            for writer in writers:
                writer.finish(result)
    return result


def run(config: RunConfig, writers: Sequence[ReportWriter] = (), progress: Progress | None = None) -> RunResult:
    """Run a sweep, starting the embedded server when no URL is given, and write the report folder.

    The folder holds summary.json, the CSVs, the metrics time series (with --collect-metrics),
    the plots, report.html and (embedded server) the server's log; a run that fails or is
    interrupted part way still writes the levels it finished. The server is stopped whatever
    happens.
    """
    report_dir = config.report_dir or default_report_dir(config.model_name)
    all_writers: list[ReportWriter] = [
        *writers,
        JsonReport(report_dir / SUMMARY),
        CsvReport(report_dir / "results.csv"),
        MetricsCsvReport(report_dir / "metrics.csv"),
    ]
    if config.csv_file is not None:
        all_writers.append(CsvReport(config.csv_file))
    if config.junit_file is not None:
        all_writers.append(JunitReport(config.junit_file))
    all_writers.append(HtmlReport(report_dir))  # last: the slowest, and it needs nothing the others write
    metrics_at = metrics_url(config.metrics_url) if config.collect_metrics and config.metrics_url else None
    server = None
    if config.url is None:
        server = EmbeddedServer(config.model_repository or default_model_repository(), report_dir / SERVER_LOG)
        endpoints = server.start()
        config = replace(config, url=endpoints.http if config.protocol == "http" else endpoints.grpc)
        if config.collect_metrics and metrics_at is None:
            metrics_at = endpoints.metrics_url
    elif config.collect_metrics and metrics_at is None:
        metrics_at = server_metrics_url(config.url)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(_sweep(config, metrics_at, all_writers, progress))
    finally:
        if server is not None:
            server.stop()
    return result
