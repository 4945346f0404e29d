"""report.html: one self-contained page from a run's result and its plots.

Everything is inline (CSS, plots as data: URIs) and a Content-Security-Policy forbids any fetch, so
the file can be mailed or archived and opens offline. There is no JavaScript: <details> folds.
The frame, tables and formatting are loadgen.report.html_page's, shared with tune.html.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from loadgen.measurement import LevelResult, drain_text, outstanding_text
from loadgen.merge import OVERLOADED_CPU_PCT, OVERLOADED_LAG_US, WorkerFigures
from loadgen.report.base import Plot, file_safe, model_name, stream_goodput_bounds, stream_percentile_keys, write_atomic
from loadgen.report.html_page import FAIL, MISSING, PASS, WARN, model_configs, num, page, percent, plots_section, table, when
from loadgen.report.response_timeline import response_timeline_svg
from loadgen.report.roofline_html import roofline_section
from loadgen.report.waterfall import waterfall_svg
from loadgen.result import SCHEMA_VERSION, RunResult
from loadgen.server_stats import ServerFigures
from loadgen.sla import UNSTABLE_NOTE, Verdict, format_value
from loadgen.tail import MIN_TRACES, LevelTracing, TailAttribution, tail_line


def render_html(result: RunResult, plots: Sequence[Plot], path: Path, mix_plots: Sequence[Sequence[Plot]] = ()) -> None:
    """Write the run's report page at `path`, atomically (a reader never sees half a page). For a mix,
    `mix_plots` are each model's, in the mix's order, and each model's sections come under its name."""
    model = " + ".join(model_name(part) for part in result.mix) if result.mix else result.model.name or MISSING
    if result.mix:
        sections = [_part_html(part, part_plots) for part, part_plots in zip(result.mix, mix_plots or [()] * len(result.mix))]
        shared = [_metrics(result)]
    else:
        sections, shared = [_sections(result, plots), _metrics(result), *_configuration(result)], []
    body = [
        f"<h1>loadgen report: {escape(model)}</h1>",
        _header(result),
        *sections,
        *shared,
        "<h2>Environment</h2>", _key_values(result.environment),
        "<h2>Server</h2>", _key_values(result.server_metadata),
    ]
    if not result.mix:
        body.append(model_configs(result.model_configs or {}))
    title = f"loadgen: {model}, {when(result.started_at)}"
    write_atomic(path, page(title, body))


def _sections(result: RunResult, plots: Sequence[Plot]) -> str:
    """One model's figures: its levels, streaming, plots, breakdowns, load, workers, composing models, traces."""
    levels = result.levels
    return "".join([
        _levels(levels, bool(result.config.gates.slas), result.config.gates.goodput_latency_ms),
        _streaming(result),
        plots_section(plots),
        _breakdown(levels),
        _open_loop(levels),
        _workers(levels),
        _composing(levels),
        roofline_section(result),
        _traces(levels),
    ])  # fmt: skip


def _configuration(result: RunResult) -> list[str]:
    return ["<h2>Configuration</h2>", _key_values(result.config.to_dict())]


def _part_html(part: RunResult, plots: Sequence[Plot]) -> str:
    """A mix's model: its verdict, sections, configuration and model configurations under a heading naming it,
    their headings a rank lower (h2 → h3, h3 → h4) so the page's outline nests them."""
    name = model_name(part)
    inner = "".join([f'<p class="verdict{"" if part.sla_passed else " fail"}">{escape(_part_verdict(part))}</p>',
                     _sections(part, plots), *_configuration(part), model_configs(part.model_configs or {})])
    for rank in (3, 2):
        inner = inner.replace(f"<h{rank}", f"<h{rank + 1}").replace(f"</h{rank}>", f"</h{rank + 1}>")
    return f'<section id="model-{escape(file_safe(name))}"><h2>Model: {escape(name)}</h2>{inner}</section>'


def _part_verdict(part: RunResult) -> str:
    """A mix's model in one line: its levels, unstable ones, and SLA verdict."""
    levels = part.levels
    line = f"{_count(len(levels))} measured, {len(part.unstable_levels)} unstable."
    if part.config.gates.slas:
        line += " " + _sla_line(len(levels), sum(not _sla_met(level) for level in levels))
    return line


def _ms(us: float | None, digits: int = 2) -> str:
    return MISSING if us is None else num(us / 1000, digits)


def _bytes(count: int | None) -> str:
    if count is None:
        return MISSING
    return f"{count / 2**30:,.2f} GiB" if count >= 2**30 else f"{count / 2**20:,.1f} MiB"


def _level_name(level: LevelResult) -> str:
    return f"{level.label} {level.value:g}"


def _header(result: RunResult) -> str:
    """The run's status, warnings and verdict; for a mix, over every model's levels, and each model's in a line."""
    levels = [level for part in result.parts for level in part.levels]
    gates = result.config.gates
    with_slas = any(part.config.gates.slas for part in result.parts)
    started, finished = result.started_at, result.finished_at
    meta = f"Started {when(started)}, finished {when(finished)}"
    if started and finished:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        meta += f" ({seconds:,.0f} s)"
    meta += f" · loadgen {result.loadgen_version or MISSING}"
    if result.upgraded_from:  # read from an older file: figures it did not record show as a dash
        meta += f" · summary.json upgraded from schema version {result.upgraded_from} to {SCHEMA_VERSION}"

    unstable = sum(len(part.unstable_levels) for part in result.parts)
    incomplete = sum(bool(level.incomplete) for level in levels)
    mismatched = sum(level.count_check.mismatch for level in levels)
    stop_reason, warnings = result.stop_reason, result.warnings
    verdict = f"Stopped: {stop_reason}." if stop_reason else "Finished."
    verdict += f" {_count(len(levels))} measured, {unstable} unstable"
    if incomplete:
        verdict += f", {incomplete} incomplete"
    if mismatched:
        verdict += f", {mismatched} with a count cross-check mismatch"
    lines = [verdict + "."]
    lines += [f"{model_name(part)}: {_part_verdict(part)}" for part in result.mix]
    breached = sum(not _sla_met(level) for level in levels)
    if with_slas:
        lines.append(_sla_line(len(levels), breached))
        if unstable and not gates.binary_search:
            lines.append(f"{_count(unstable)} never stabilized: {'its' if unstable == 1 else 'their'} verdicts rest on figures "
                         "that did not settle" + (" (--require-stable: the run fails)." if gates.require_stable else "."))
    elif gates.require_stable and unstable:
        lines.append(f"Stability breached: {_count(unstable)} never stabilized (--require-stable).")
    lines += _capacity_lines(result)
    # A binary search breaches bounds on purpose; it fails only when no level met them (sla_passed).
    failed = not result.sla_passed
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    css = ("verdict fail" if failed else
           "verdict warn" if stop_reason or warnings or unstable or incomplete or mismatched else "verdict")
    return (f'<p class="meta">{escape(meta)}</p>'
            f'<div class="{css}">{"".join(f"<p>{escape(line)}</p>" for line in lines)}'
            f'{f"<ul>{items}</ul>" if items else ""}</div>')


def _capacity_lines(result: RunResult) -> list[str]:
    plan, gates = result.capacity, result.config.gates
    if plan is None:
        searched = gates.binary_search or gates.target_throughput is not None
        return ["Capacity: no level met every bound."] if searched and result.levels else []
    lines = [
        f"Capacity: {plan.throughput_infer_per_s:,.1f} infer/s per server within every bound, "
        f"at {str(plan.level_label).lower()} {plan.level_value:g}."
    ]
    if plan.replicas is not None:
        lines.append(
            f"{plan.target_throughput_infer_per_s:,.1f} infer/s with {plan.headroom_pct:g}% headroom "
            f"needs {plan.replicas} server{'' if plan.replicas == 1 else 's'}."
        )
    return lines


def _count(levels: int) -> str:
    return f"{levels} level{'' if levels == 1 else 's'}"


def _sla_line(measured: int, breached: int) -> str:
    if not measured:
        return "SLA: no level was measured."
    if breached:
        return f"SLA breached at {breached} of {_count(measured)}."
    return f"SLA: all {_count(measured)} met every SLA."


def _sla_met(level: LevelResult) -> bool:
    """Whether every SLA verdict of the level passed (old summaries and runs without SLA have none)."""
    return all(verdict.passed for verdict in level.sla)


def _levels(levels: Sequence[LevelResult], with_sla: bool, goodput_latency_ms: float | None) -> str:
    if not levels:
        return "<h2>Levels</h2><p>No level was measured.</p>"
    # Only a run that lost a worker has the column, so ordinary reports keep their shape.
    with_incomplete = any(level.incomplete for level in levels)
    with_goodput = goodput_latency_ms is not None
    goodput_head = [f"Goodput ≤ {goodput_latency_ms:g} ms (infer/s)"] if with_goodput else []
    # A sequence model's levels: its sequences beside the throughput, so other models' tables keep their shape.
    with_sequences = any(level.sequences is not None for level in levels)
    sequence_head = list(SEQUENCE_HEAD) if with_sequences else []
    head = [levels[0].label, "Throughput (infer/s)", *goodput_head, *sequence_head, "Avg (ms)", "p50 (ms)", "p90 (ms)",
            "p95 (ms)", "p99 (ms)",
            "Successes", "Errors", "Error rate", "Stable", "Count check", *(["SLA"] if with_sla else []),
            *(["Incomplete"] if with_incomplete else [])]
    rows = []
    errors = []  # (level, kind, share, message, count): messages are user-facing and may be long, so listed apart
    for level in levels:
        client, check = level.client, level.count_check
        percentiles = client.percentile_latency_us
        rows.append([
            f"{level.value:g}", num(client.throughput_infer_per_s),
            *([num(client.goodput_infer_per_s)] if with_goodput else []),
            *(_sequence_cells(level) if with_sequences else []), _ms(client.avg_latency_us),
            *(_ms(percentiles.get(p)) for p in (50, 90, 95, 99)),
            num(client.request_count, 0), num(client.error_count, 0), percent(client.error_rate, 2),
            "yes" if level.stable else WARN + "no",
            WARN + f"mismatch ({check.client_success} vs {check.server_success})" if check.mismatch else "ok",
            *([_sla_mark(level)] if with_sla else []),
            *([WARN + level.incomplete if level.incomplete else "no"] if with_incomplete else []),
        ])
        for kind in client.error_kinds:
            share = percent(client.share(kind.count), 2)
            errors += [(_level_name(level), kind.kind, share, message, count) for message, count in kind.messages.items()]
    html = "<h2>Levels</h2>" + table(head, rows, text_columns=(0, len(head) - 1) if with_incomplete else (0,))
    if with_sequences:
        html += SEQUENCES_NOTE
    if with_sla:
        html += _sla_verdicts(levels)
    if errors:
        html += "<h3>Errors</h3><p>The first distinct messages of each kind of error.</p>"
        html += table(["Level", "Kind", "Kind's share of requests", "Message", "Count"], errors, text_columns=(0, 1, 3))
    return html + _unanswered(levels)


SEQUENCE_HEAD = ("Sequences/s", "Sequences completed", "Sequences failed", "Sequences cut short")
SEQUENCES_NOTE = ("<p>Sequences: completed (every request answered without error) within the reported windows, and "
                  "per second over them; failed (a request failed) and cut short (still open when the level's load "
                  "stopped, their end never sent) over the whole level.</p>")


def _sequence_cells(level: LevelResult) -> list[str]:
    figures = level.sequences
    if figures is None:
        return [MISSING] * len(SEQUENCE_HEAD)
    return [num(figures.completed_per_s), num(figures.completed, 0), num(figures.failed, 0), num(figures.cut_short, 0)]


def _unanswered(levels: Sequence[LevelResult]) -> str:
    """Windows in which nothing completed while requests were out, and requests left failing or
    unanswered after a level's last window: a server that stopped answering."""
    rows = []
    for level in levels:
        for index, window in enumerate(level.windows, 1):
            if window.stalled:
                rows.append([_level_name(level), f"window {index}", WARN + outstanding_text(window.outstanding, window.oldest_outstanding_s)])
        drain = level.drain
        if drain and drain.errors:
            text = drain_text(drain.in_flight, drain.duration_s, drain.answered, drain.errors, drain.unanswered, drain.unanswered_age_s)
            rows.append([_level_name(level), "after the windows", (WARN if drain.unanswered else "") + text])
    if not rows:
        return ""
    return ("<h3>Requests left without an answer</h3>" + table(["Level", "When", "What happened"], rows, text_columns=(0, 1, 2)))


def _sla_mark(level: LevelResult) -> str:
    if not level.sla:
        return MISSING
    return PASS if _sla_met(level) else FAIL


def _sla_verdicts(levels: Sequence[LevelResult]) -> str:
    rows = [[_level_name(level), verdict.expression,
             MISSING if verdict.value is None else format_value(verdict.value),
             _verdict_mark(verdict, level), verdict.reason]
            for level in levels for verdict in level.sla]
    if not rows:
        return "<h3>SLA verdicts</h3><p>No level has SLA verdicts.</p>"
    return "<h3>SLA verdicts</h3>" + table(["Level", "Expression", "Value", "Verdict", "Reason"], rows,
                                           text_columns=(0, 1, 3, 4))


def _verdict_mark(verdict: Verdict, level: LevelResult) -> str:
    mark = f"{PASS} PASS" if verdict.passed else f"{FAIL} FAIL"
    if not level.stable:
        return (mark if not verdict.passed else WARN + "PASS") + f", {UNSTABLE_NOTE}"
    return mark


def _streaming(result: RunResult) -> str:
    """Per streamed level: time to first response and between responses, responses and tokens, and a timeline
    of its example requests' responses."""
    streamed = [level for level in result.levels if level.streaming is not None]
    if not streamed:
        return ""
    keys = ["avg", *stream_percentile_keys(result.config.windows.percentile)]
    bounds = ", ".join(f"{figure} ≤ {ms:g} ms" for figure, ms in stream_goodput_bounds(result.config.gates))
    head = ["Level", "Requests", "Responses/request", *(f"TTFT {key} (ms)" for key in keys),
            *(f"ITL {key} (ms)" for key in keys), "Output tokens", "Output tokens/s",
            *([f"Goodput, {bounds} (infer/s)"] if bounds else [])]
    rows, timelines = [], []
    for level in streamed:
        stream = level.streaming
        ttft = stream.ttft_us if stream.request_count else {}  # 0s without a success: not measured
        itl = stream.itl_us or {}
        rows.append([
            _level_name(level), num(stream.request_count, 0), num(stream.responses_per_request, 2),
            *(_ms(ttft.get(key)) for key in keys), *(_ms(itl.get(key)) for key in keys),
            num(stream.output_tokens, 0), num(stream.tokens_per_s),
            *([num(stream.goodput_infer_per_s)] if bounds else []),
        ])
        count = len(stream.examples)
        title = f"{_level_name(level)}: the responses of {count} example request{'' if count == 1 else 's'}"
        caption = (f"TTFT p50 {_ms(ttft.get('p50'))} ms, ITL p50 {_ms(itl.get('p50'))} ms, "
                   f"{stream.responses_per_request:,.2f} responses per request")
        timelines.append(f"<details open><summary>{escape(title)}</summary>"
                         + (response_timeline_svg(stream.examples, caption) if count else "<p>No request succeeded.</p>")
                         + "</details>")
    return ("<h2>Streaming</h2><p>Each streamed request's time to its first response (TTFT) and between its "
            "consecutive responses (ITL), over the level's reported windows; a dash where no request had two "
            "responses, or no output carried tokens. In open loop both run from the request's intended send time.</p>"
            + table(head, rows) + "<h3>Responses over time</h3><p>A few requests of each level: the ones nearest its "
            "median, p90 and p99 latency, its slowest and its first. A green tick per response that carried outputs, "
            "a black one at the final response.</p>" + "".join(timelines))


def _breakdown(levels: Sequence[LevelResult]) -> str:
    if not levels:
        return ""
    keys = list(levels[0].breakdown_us)
    head = [levels[0].label, *(key.replace("_", " ").capitalize() for key in keys), "Avg latency"]
    rows = [[f"{level.value:g}", *(num(level.breakdown_us.get(key)) for key in keys),
             num(level.client.avg_latency_us)] for level in levels]
    return "<h2>Latency breakdown (µs)</h2>" + table(head, rows)


def _open_loop(levels: Sequence[LevelResult]) -> str:
    """How well each request rate was kept, and latency from the actual send beside the honest one."""
    rated = [level for level in levels if level.open_loop is not None]
    if not rated:
        return ""
    head = ["Level", "Target /s", "Sent /s", "Late (>1 ms)", "Held back", "Lag p50 (ms)", "Lag p99 (ms)",
            "Lag max (ms)", "p99 from due (ms)", "p99 from sent (ms)"]
    rows = []
    for level in rated:
        loop = level.open_loop
        lag = loop.schedule_lag_us
        rows.append([
            _level_name(level), num(loop.target_rate_per_s), num(loop.achieved_rate_per_s),
            (WARN if loop.cannot_keep_up else "") + f"{loop.late_count} ({percent(loop.late_fraction)})",
            num(loop.held_back_count, 0), _ms(lag["p50"]), _ms(lag["p99"]), _ms(lag["max"]),
            _ms(level.client.percentile_latency_us.get(99)), _ms(loop.sent_percentile_latency_us.get(99)),
        ])
    return ("<h2>Open loop</h2><p>Latency runs from each request's intended send time; "
            "the latency from the actual send is shown beside it.</p>" + table(head, rows))


def _worker_status(worker: WorkerFigures) -> str:
    if worker.lost:
        return f"{FAIL} lost: {worker.lost}"
    return WARN + "overloaded" if worker.overloaded else "ok"


def _workers(levels: Sequence[LevelResult]) -> str:
    """Each worker's part of each level (--workers), so an overloaded or lost worker stands out."""
    spread = [level for level in levels if level.workers]
    if not spread:
        return ""
    head = ["Worker", "Host", "PID", "Share", "Successes", "Errors", "Throughput (infer/s)", "Lag p50 (ms)",
            "Lag p99 (ms)", "Lag max (ms)", "Late (>1 ms)", "CPU (% of a core)", "Status"]
    sections = []
    for level in spread:
        rows = []
        for worker in level.workers:
            lag = worker.schedule_lag_us  # {} in closed loop: nothing was scheduled
            rows.append([
                worker.worker, worker.host, worker.pid, f"{worker.share:g}",
                num(worker.request_count, 0), num(worker.error_count, 0),
                num(worker.throughput_infer_per_s), _ms(lag.get("p50")), _ms(lag.get("p99")), _ms(lag.get("max")),
                percent(worker.late_fraction) if lag else MISSING, num(worker.cpu_pct), _worker_status(worker),
            ])
        title = _level_name(level) + (f" (incomplete: {level.incomplete})" if level.incomplete else "")
        sections.append(f"<details open><summary>{escape(title)}</summary>"
                        f"{table(head, rows, text_columns=(1, len(head) - 1))}</details>")
    return ("<h2>Workers</h2><p>Each worker process's part of the level. A worker is overloaded when it used "
            f"{OVERLOADED_CPU_PCT:g}% of a CPU core or more, or its p99 send lag was over {OVERLOADED_LAG_US / 1e3:g} ms: "
            "then it, not the server, limits the load.</p>" + "".join(sections))


def _server_rows(server: ServerFigures, depth: int = 0) -> list[list[str]]:
    """The model and its composing models, depth-first, names indented by nesting depth."""
    name = "\u2003" * depth + ("↳ " if depth else "") + f"{server.name} v{server.version}"
    row = [name, *(num(getattr(server, key)) for key in
                   ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us", "overhead_us",
                    "avg_request_latency_us")), num(server.success_count, 0)]
    return [row] + [r for child in server.composing for r in _server_rows(child, depth + 1)]


def _composing(levels: Sequence[LevelResult]) -> str:
    if not levels:
        return ""
    head = ["Model", "Queue", "Compute input", "Compute infer", "Compute output", "Overhead", "Avg request latency",
            "Successes"]
    sections = [f"<details open><summary>{escape(_level_name(level))}</summary>"
                f"{table(head, _server_rows(level.server))}</details>" for level in levels]
    return "<h2>Server figures per model (µs)</h2>" + "".join(sections)


def _traces(levels: Sequence[LevelResult]) -> str:
    """Per traced level: its per-stage distributions, its tail's attribution and its slowest traced request."""
    traced = [level for level in levels if level.tracing is not None]
    if not traced:
        return ""
    sections = []
    for level in traced:
        tracing = level.tracing
        title = f"{_level_name(level)}: {_requests(tracing.traces)} ({tracing.read:,} traces read)"
        few = (f"<p>{WARN}Fewer than {MIN_TRACES} traced requests: each p99 is about the largest sample, "
               "and the tail may be one request.</p>") if tracing.few else ""
        sections.append(f"<details open><summary>{escape(title)}</summary>{few}{_stage_table(tracing)}"
                        f"{_tail_attribution(tracing.tail)}{_slowest(tracing)}</details>")
    return ("<h2>Traces: where the time goes</h2><p>From Triton's traces of the requests that succeeded in each "
            "level's reported windows (--trace-rate). A model's parts: queue, compute input, infer and output, and "
            "total (its whole time); an ensemble's scheduling is its time outside its steps.</p>" + "".join(sections))


def _requests(count: int) -> str:
    return f"{count:,} traced request{'' if count == 1 else 's'}"


def _stage_table(tracing: LevelTracing) -> str:
    rows = [[stage.model, stage.part, *(_ms(getattr(stage, key), 3) for key in ("p50_us", "p90_us", "p99_us", "max_us")),
             (WARN if stage.traces < MIN_TRACES else "") + f"{stage.traces:,}"] for stage in tracing.stages]
    return "<h3>Per-stage latency</h3>" + table(["Model", "Part", "p50 (ms)", "p90 (ms)", "p99 (ms)", "Max (ms)", "Traces"],
                                                 rows, text_columns=(0, 1))


def _tail_attribution(tail: TailAttribution | None) -> str:
    html = "<h3>Tail attribution</h3>"
    if tail is None:
        return html + "<p>No request succeeded: no percentile to split the traced requests at.</p>"
    bands = tail.bands
    html += (f"<p>{escape(tail_line(tail))}. The {_requests(tail.tail_requests)} at or above the client's "
             f"p{bands.percentile:g} ({_ms(bands.tail_from_us)} ms), against the {tail.middle_requests:,} between its p40 "
             f"({_ms(bands.middle_from_us)} ms) and p60 ({_ms(bands.middle_to_us)} ms): each part's share of the extra "
             "time.</p>")
    if not tail.shares:
        return html
    rows = [[share.model if share.model is not None else "(outside the server)", share.part, percent(share.share),
             _ms(share.extra_us, 3)] for share in tail.shares]
    return html + table(["Model", "Part", "Share of the extra time", "Extra (ms)"], rows, text_columns=(0, 1))


def _slowest(tracing: LevelTracing) -> str:
    html = "<h3>Slowest traced request</h3>"
    slowest = tracing.slowest
    if slowest is None:
        return html + ("<p>No traced request.</p>" if not tracing.traces
                       else "<p>Not recorded: summary.json before version 10 kept no request's timeline.</p>")
    return html + f"<p>Request {escape(slowest.request_id)}.</p>" + waterfall_svg(slowest)


def _metrics(result: RunResult) -> str:
    html = "<h2>Server metrics</h2>"
    if result.metrics_series is None:
        return html + "<p>Metrics were not collected: the run did not use --collect-metrics.</p>"
    together = _levels_together(result)
    # The server's figures are the first model's: a mix's models share each level's interval, so its scrapes.
    measured = [(name, levels[0].metrics, levels) for name, levels in together if levels[0].metrics]
    missed = [name for name, levels in together if not levels[0].metrics]
    if missed:
        html += f"<p>No metrics scrape succeeded during {escape(', '.join(missed))}.</p>"
    if not measured:
        return html

    def energy(levels: Sequence[LevelResult]) -> str:
        if not result.mix:
            return num(levels[0].metrics.energy_per_inference_j, 3)
        return ", ".join(f"{model_name(part)} {num(level.metrics.energy_per_inference_j, 3)}"
                         for part, level in zip(result.mix, levels) if level.metrics)  # fmt: skip

    html += table(["Level", "Scrapes", "CPU utilization", "Max CPU memory", "Total CPU memory",
                   "Energy/inference (J)"],
                  [[name, m.scrape_count, percent(m.avg_cpu_utilization),
                    _bytes(m.max_cpu_memory_used_bytes), _bytes(m.cpu_memory_total_bytes),
                    energy(levels)] for name, m, levels in measured])

    gpus = [[name, gpu.uuid, percent(gpu.avg_utilization), num(gpu.avg_power_w),
             _bytes(gpu.max_memory_used_bytes), _bytes(gpu.total_memory_bytes), num(gpu.energy_j)]
            for name, m, _ in measured for gpu in m.gpus]
    html += "<h3>GPUs</h3>"
    html += (table(["Level", "GPU", "Utilization", "Power (W)", "Max memory used", "Total memory", "Energy (J)"], gpus,
                   text_columns=(0, 1))
             if gpus else "<p>The server exposes no GPU metrics.</p>")

    models = [[name, f"{model.name} v{model.version}", num(model.max_pending, 0),
               num(model.success, 0),
               ", ".join(f"{reason} {count}" for reason, count in model.failure.items() if count) or "0",
               num(model.statistics_success, 0),
               WARN + "mismatch" if model.mismatch else "ok"]
              for name, _, levels in measured for level in levels if level.metrics for model in level.metrics.models]
    if models:
        html += "<h3>Models</h3>" + table(
            ["Level", "Model", "Max pending", "Successes", "Failures", "Statistics API successes", "Cross-check"],
            models, text_columns=(0, 1))
    return html


def _levels_together(result: RunResult) -> list[tuple[str, tuple[LevelResult, ...]]]:
    """Each level's name and what was measured in it: the run's level, or a mix's models' (they step together)."""
    if not result.mix:
        return [(_level_name(level), (level,)) for level in result.levels]
    count = min(len(part.levels) for part in result.mix)
    return [(f"level {index + 1} (" + ", ".join(f"{model_name(part)} {_level_name(part.levels[index])}" for part in result.mix) + ")",
             tuple(part.levels[index] for part in result.mix)) for index in range(count)]  # fmt: skip


def _value(key: str, value: Any) -> str:
    """A configuration or metadata value as text: bytes in MiB/GiB, flat lists joined, nested values as JSON."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_bytes") and isinstance(value, int):
        return _bytes(value)
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(map(str, value)) or MISSING
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _key_values(data: dict | None) -> str:
    if not data:
        return "<p>Not recorded.</p>"
    rows = [[key, _value(key, value)] for key, value in data.items()]
    return table(["Key", "Value"], rows, text_columns=(0, 1), css="kv")
