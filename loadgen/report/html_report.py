"""report.html: one self-contained page from a run's result and its plots.

Everything is inline (CSS, plots as data: URIs) and a Content-Security-Policy forbids any fetch, so
the file can be mailed or archived and opens offline. There is no JavaScript: <details> folds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from loadgen.measurement import LevelResult, drain_text, outstanding_text
from loadgen.merge import OVERLOADED_CPU_PCT, OVERLOADED_LAG_US, WorkerFigures
from loadgen.report.base import Plot, write_atomic
from loadgen.report.waterfall import waterfall_svg
from loadgen.result import SCHEMA_VERSION, RunResult
from loadgen.server_stats import ServerFigures
from loadgen.sla import UNSTABLE_NOTE, Verdict, format_value
from loadgen.tail import MIN_TRACES, LevelTracing, TailAttribution, tail_line

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MISSING = "—"
WARN = "⚠ "
FAIL = "✗"
PASS = "✓"
FLAGS = (WARN, FAIL)  # a cell starting with one flags its row

CSS = """
body { margin: 0; background: #f6f7f9; color: #1f2328;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; min-height: 100vh; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 2px solid #d0d7de; font-size: 20px; }
h3 { margin: 20px 0 8px; font-size: 16px; }
.meta { color: #59636e; margin: 0 0 16px; }
.verdict { padding: 12px 16px; border-radius: 6px; border-left: 5px solid #1a7f37; background: #dafbe1; }
.verdict.warn { border-color: #bf8700; background: #fff8c5; }
.verdict.fail { border-color: #cf222e; background: #ffebe9; }
.verdict p { margin: 0; font-weight: 600; }
.verdict ul { margin: 6px 0 0; padding-left: 20px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 4px 0 12px; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 9px; border-bottom: 1px solid #e1e4e8; text-align: right; white-space: nowrap; }
th { background: #eef1f4; font-weight: 600; vertical-align: bottom; white-space: normal; }
th.t, td.t { text-align: left; }
td.t { white-space: normal; overflow-wrap: break-word; }
tbody tr:nth-child(even) { background: #f6f8fa; }
tbody tr.warn { background: #fff8c5; }
table.kv td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: #59636e; }
figure { margin: 16px 0 28px; }
figure h3 { margin-top: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
svg.waterfall { display: block; max-width: 100%; height: auto; margin: 4px 0 12px; }
pre { background: #f6f8fa; padding: 12px; overflow-x: auto; font-size: 13px; border-radius: 6px; }
"""


def render_html(result: RunResult, plots: Sequence[Plot], path: Path) -> None:
    """Write the run's report page at `path`, atomically (a reader never sees half a page)."""
    model = result.model.name or MISSING
    levels = result.levels
    body = [
        f"<h1>loadgen report: {escape(model)}</h1>",
        _header(result),
        _levels(levels, bool(result.config.gates.slas), result.config.gates.goodput_latency_ms),
        _plots(plots),
        _breakdown(levels),
        _open_loop(levels),
        _workers(levels),
        _composing(levels),
        _traces(levels),
        _metrics(result),
        "<h2>Configuration</h2>", _key_values(result.config.to_dict()),
        "<h2>Environment</h2>", _key_values(result.environment),
        "<h2>Server</h2>", _key_values(result.server_metadata),
        _model_configs(result.model_configs or {}),
    ]
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>loadgen: {escape(model)}, {escape(_when(result.started_at))}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body><main>
{chr(10).join(body)}
</main></body>
</html>
"""
    write_atomic(path, page)


# Formatting: every figure may be null ("not measured"), shown as a dash, never as 0.

def _num(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def _ms(us: float | None, digits: int = 2) -> str:
    return MISSING if us is None else _num(us / 1000, digits)


def _percent(fraction: float | None, digits: int = 1) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.{digits}f} %"


def _bytes(count: int | None) -> str:
    if count is None:
        return MISSING
    return f"{count / 2**30:,.2f} GiB" if count >= 2**30 else f"{count / 2**20:,.1f} MiB"


def _when(iso: str | None) -> str:
    return MISSING if iso is None else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _level_name(level: LevelResult) -> str:
    return f"{level.label} {level.value:g}"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: Collection[int] = (0,),
           css: str = "") -> str:
    """An HTML table; every header and cell is escaped here, so callers pass plain text.

    The `text_columns` (indices) are left-aligned text (names, messages), the others right-aligned figures.
    """
    def tag(name: str, column: int, text: str) -> str:
        css = ' class="t"' if column in text_columns else ""
        return f"<{name}{css}>{escape(text)}</{name}>"

    lines = [f'<div class="scroll"><table class="{css}"><thead><tr>']
    lines += [tag("th", column, text) for column, text in enumerate(head)]
    lines.append("</tr></thead><tbody>")
    for row in rows:
        cells = [MISSING if cell is None else str(cell) for cell in row]
        flagged = any(cell.startswith(FLAGS) for cell in cells)
        lines.append('<tr class="warn">' if flagged else "<tr>")
        lines += [tag("td", column, text) for column, text in enumerate(cells)]
        lines.append("</tr>")
    lines.append("</tbody></table></div>")
    return "".join(lines)


def _header(result: RunResult) -> str:
    levels, gates = result.levels, result.config.gates
    started, finished = result.started_at, result.finished_at
    meta = f"Started {_when(started)}, finished {_when(finished)}"
    if started and finished:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        meta += f" ({seconds:,.0f} s)"
    meta += f" · loadgen {result.loadgen_version or MISSING}"
    if result.upgraded_from:  # read from an older file: figures it did not record show as a dash
        meta += f" · summary.json upgraded from schema version {result.upgraded_from} to {SCHEMA_VERSION}"

    unstable = len(result.unstable_levels)
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
    breached = sum(not _sla_met(level) for level in levels)
    if gates.slas:
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
    head = [levels[0].label, "Throughput (infer/s)", *goodput_head, "Avg (ms)", "p50 (ms)", "p90 (ms)", "p95 (ms)", "p99 (ms)",
            "Successes", "Errors", "Error rate", "Stable", "Count check", *(["SLA"] if with_sla else []),
            *(["Incomplete"] if with_incomplete else [])]
    rows = []
    errors = []  # (level, kind, share, message, count): messages are user-facing and may be long, so listed apart
    for level in levels:
        client, check = level.client, level.count_check
        percentiles = client.percentile_latency_us
        rows.append([
            f"{level.value:g}", _num(client.throughput_infer_per_s),
            *([_num(client.goodput_infer_per_s)] if with_goodput else []), _ms(client.avg_latency_us),
            *(_ms(percentiles.get(p)) for p in (50, 90, 95, 99)),
            _num(client.request_count, 0), _num(client.error_count, 0), _percent(client.error_rate, 2),
            "yes" if level.stable else WARN + "no",
            WARN + f"mismatch ({check.client_success} vs {check.server_success})" if check.mismatch else "ok",
            *([_sla_mark(level)] if with_sla else []),
            *([WARN + level.incomplete if level.incomplete else "no"] if with_incomplete else []),
        ])
        for kind in client.error_kinds:
            share = _percent(client.share(kind.count), 2)
            errors += [(_level_name(level), kind.kind, share, message, count) for message, count in kind.messages.items()]
    html = "<h2>Levels</h2>" + _table(head, rows, text_columns=(0, len(head) - 1) if with_incomplete else (0,))
    if with_sla:
        html += _sla_verdicts(levels)
    if errors:
        html += "<h3>Errors</h3><p>The first distinct messages of each kind of error.</p>"
        html += _table(["Level", "Kind", "Kind's share of requests", "Message", "Count"], errors, text_columns=(0, 1, 3))
    return html + _unanswered(levels)


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
    return ("<h3>Requests left without an answer</h3>" + _table(["Level", "When", "What happened"], rows, text_columns=(0, 1, 2)))


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
    return "<h3>SLA verdicts</h3>" + _table(["Level", "Expression", "Value", "Verdict", "Reason"], rows,
                                            text_columns=(0, 1, 3, 4))


def _verdict_mark(verdict: Verdict, level: LevelResult) -> str:
    mark = f"{PASS} PASS" if verdict.passed else f"{FAIL} FAIL"
    if not level.stable:
        return (mark if not verdict.passed else WARN + "PASS") + f", {UNSTABLE_NOTE}"
    return mark


def _plots(plots: Sequence[Plot]) -> str:
    figures = []
    for plot in plots:
        data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
        figures.append(f'<figure id="{escape(plot.name)}"><h3>{escape(plot.title)}</h3>'
                       f'<img alt="{escape(plot.title)}" src="data:image/png;base64,{data}"></figure>')
    return "<h2>Plots</h2>" + ("".join(figures) or "<p>No plots.</p>")


def _breakdown(levels: Sequence[LevelResult]) -> str:
    if not levels:
        return ""
    keys = list(levels[0].breakdown_us)
    head = [levels[0].label, *(key.replace("_", " ").capitalize() for key in keys), "Avg latency"]
    rows = [[f"{level.value:g}", *(_num(level.breakdown_us.get(key)) for key in keys),
             _num(level.client.avg_latency_us)] for level in levels]
    return "<h2>Latency breakdown (µs)</h2>" + _table(head, rows)


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
            _level_name(level), _num(loop.target_rate_per_s), _num(loop.achieved_rate_per_s),
            (WARN if loop.cannot_keep_up else "") + f"{loop.late_count} ({_percent(loop.late_fraction)})",
            _num(loop.held_back_count, 0), _ms(lag["p50"]), _ms(lag["p99"]), _ms(lag["max"]),
            _ms(level.client.percentile_latency_us.get(99)), _ms(loop.sent_percentile_latency_us.get(99)),
        ])
    return ("<h2>Open loop</h2><p>Latency runs from each request's intended send time; "
            "the latency from the actual send is shown beside it.</p>" + _table(head, rows))


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
                _num(worker.request_count, 0), _num(worker.error_count, 0),
                _num(worker.throughput_infer_per_s), _ms(lag.get("p50")), _ms(lag.get("p99")), _ms(lag.get("max")),
                _percent(worker.late_fraction) if lag else MISSING, _num(worker.cpu_pct), _worker_status(worker),
            ])
        title = _level_name(level) + (f" (incomplete: {level.incomplete})" if level.incomplete else "")
        sections.append(f"<details open><summary>{escape(title)}</summary>"
                        f"{_table(head, rows, text_columns=(1, len(head) - 1))}</details>")
    return ("<h2>Workers</h2><p>Each worker process's part of the level. A worker is overloaded when it used "
            f"{OVERLOADED_CPU_PCT:g}% of a CPU core or more, or its p99 send lag was over {OVERLOADED_LAG_US / 1e3:g} ms: "
            "then it, not the server, limits the load.</p>" + "".join(sections))


def _server_rows(server: ServerFigures, depth: int = 0) -> list[list[str]]:
    """The model and its composing models, depth-first, names indented by nesting depth."""
    name = "\u2003" * depth + ("↳ " if depth else "") + f"{server.name} v{server.version}"
    row = [name, *(_num(getattr(server, key)) for key in
                   ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us", "overhead_us",
                    "avg_request_latency_us")), _num(server.success_count, 0)]
    return [row] + [r for child in server.composing for r in _server_rows(child, depth + 1)]


def _composing(levels: Sequence[LevelResult]) -> str:
    if not levels:
        return ""
    head = ["Model", "Queue", "Compute input", "Compute infer", "Compute output", "Overhead", "Avg request latency",
            "Successes"]
    sections = [f"<details open><summary>{escape(_level_name(level))}</summary>"
                f"{_table(head, _server_rows(level.server))}</details>" for level in levels]
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
    return "<h3>Per-stage latency</h3>" + _table(["Model", "Part", "p50 (ms)", "p90 (ms)", "p99 (ms)", "Max (ms)", "Traces"],
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
    rows = [[share.model if share.model is not None else "(outside the server)", share.part, _percent(share.share),
             _ms(share.extra_us, 3)] for share in tail.shares]
    return html + _table(["Model", "Part", "Share of the extra time", "Extra (ms)"], rows, text_columns=(0, 1))


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
    measured = [(_level_name(level), level.metrics) for level in result.levels if level.metrics]
    missed = [_level_name(level) for level in result.levels if not level.metrics]
    if missed:
        html += f"<p>No metrics scrape succeeded during {escape(', '.join(missed))}.</p>"
    if not measured:
        return html

    html += _table(["Level", "Scrapes", "CPU utilization", "Max CPU memory", "Total CPU memory",
                    "Energy/inference (J)"],
                   [[name, m.scrape_count, _percent(m.avg_cpu_utilization),
                     _bytes(m.max_cpu_memory_used_bytes), _bytes(m.cpu_memory_total_bytes),
                     _num(m.energy_per_inference_j, 3)] for name, m in measured])

    gpus = [[name, gpu.uuid, _percent(gpu.avg_utilization), _num(gpu.avg_power_w),
             _bytes(gpu.max_memory_used_bytes), _bytes(gpu.total_memory_bytes), _num(gpu.energy_j)]
            for name, m in measured for gpu in m.gpus]
    html += "<h3>GPUs</h3>"
    html += (_table(["Level", "GPU", "Utilization", "Power (W)", "Max memory used", "Total memory", "Energy (J)"], gpus,
                    text_columns=(0, 1))
             if gpus else "<p>The server exposes no GPU metrics.</p>")

    models = [[name, f"{model.name} v{model.version}", _num(model.max_pending, 0),
               _num(model.success, 0),
               ", ".join(f"{reason} {count}" for reason, count in model.failure.items() if count) or "0",
               _num(model.statistics_success, 0),
               WARN + "mismatch" if model.mismatch else "ok"]
              for name, m in measured for model in m.models]
    if models:
        html += "<h3>Models</h3>" + _table(
            ["Level", "Model", "Max pending", "Successes", "Failures", "Statistics API successes", "Cross-check"],
            models, text_columns=(0, 1))
    return html


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
    return _table(["Key", "Value"], rows, text_columns=(0, 1), css="kv")


def _model_configs(configs: dict) -> str:
    sections = [f"<details><summary>{escape(name)}</summary>"
                f"<pre>{escape(json.dumps(config, indent=2))}</pre></details>" for name, config in configs.items()]
    return "<h2>Model configurations</h2>" + ("".join(sections) or "<p>Not recorded.</p>")
