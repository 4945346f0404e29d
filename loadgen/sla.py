"""SLAs: bounds like `p99_ms<50` that every level must meet, checked against a measured level.

An expression is `METRIC OP NUMBER`, OP one of <, <=, >, >=, ==, !=, NUMBER a float (50, 0.01, 1e3).
Metrics, their unit in their name:

- `avg_ms`: the client's average latency.
- `pN_ms`: the client's Nth latency percentile (`p99_ms`, `p99.9_ms`): one the run reported, or a
  point of its latency curve.
- `throughput`: inferences per second; `error_rate`: failed requests / all requests, 0..1.
- `goodput`: inferences per second of the successful requests within --goodput-latency-ms (with
  --streaming, also within --goodput-ttft-ms and --goodput-itl-ms).
- `MODEL.FIELD_ms`: the server's figures for the top model or any composing model, at any depth;
  FIELD is queue, compute_input, compute_infer, compute_output, compute, overhead or latency (the
  average request latency). The name splits at its last dot, so model names may hold dots.
  These are averages, from the statistics API.
- `MODEL.PART_pN_ms`: with tracing (--trace-rate), the Nth percentile (any N, `p99.9` too) of one
  part of a model over the level's traced requests (loadgen.tail): PART is queue, compute_input,
  compute_infer, compute_output, latency (the model's whole time: its `total`) or scheduling (an
  ensemble's time between its steps). Without traces it fails, saying why.
- `gpu_util`: mean utilization over the GPUs, 0..1; `gpu_power_w`: their summed average power;
  `gpu_memory_bytes`: the largest memory used on any GPU; `cpu_util`: CPU utilization, 0..1;
  `energy_per_inference_j`: GPU energy per inference. These need --collect-metrics.
- `lag_p99_ms`: the 99th percentile of how late requests were sent; `achieved_rate`: requests sent
  per second. Open-loop levels only.
- With --streaming (loadgen.stream_stats): `ttft_avg_ms` and `ttft_pN_ms`, the time to the first
  response; `itl_avg_ms` and `itl_pN_ms`, the inter-response latency (every gap between consecutive
  responses of a request); `tokens_per_s`, output tokens per second (needs a token output);
  `responses_per_request`, the average number of responses that carried outputs. pN: the run's
  p50, p90, p99 and --percentile exactly, any other N (p99.9 too) from the level's histogram, within
  its bucket's width (1/2048). On a level that was not streamed they fail, saying so.
- `sequences_per_s`: a sequence model's (sequence_batching) sequences completed per second over the
  merged windows. On any other model's level it fails, saying so.

A figure that was not measured fails its SLA, with the reason: a gate must not pass on missing data.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loadgen.errors import UsageError
from loadgen.stats import CURVE_PERCENTILES, ClientStats, OpenLoopStats, percentile_of_sorted

if TYPE_CHECKING:  # a level holds its verdicts: loadgen.measurement imports this module
    from loadgen.measurement import LevelResult
    from loadgen.histogram import LatencyHistogram
    from loadgen.metrics import MetricsFigures
    from loadgen.stream_stats import StreamStats

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
EXPRESSION = re.compile(r"\s*(?P<metric>[^<>=!\s]+)\s*(?P<op><=|>=|==|!=|<|>)\s*"
                        r"(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*")
PERCENTILE = re.compile(r"p(?P<percentile>\d+(?:\.\d+)?)_ms")
# MODEL.FIELD_ms → the figure of the model's ServerFigures, in µs.
MODEL_FIELDS = {
    "queue": "queue_us", "compute_input": "compute_input_us", "compute_infer": "compute_infer_us",
    "compute_output": "compute_output_us", "compute": "compute_us", "overhead": "overhead_us",
    "latency": "avg_request_latency_us",
}
# MODEL.PART_pN_ms → (loadgen.tail's part name) the Nth percentile of that part over the traced requests.
TRACE_FIELDS = {
    "queue": "queue", "compute_input": "compute_input", "compute_infer": "compute_infer",
    "compute_output": "compute_output", "latency": "total", "scheduling": "scheduling",
}
# Matched before the MODEL.FIELD_ms split, which would cut `p99.9` at its dot.
STREAMED = re.compile(r"(?P<figure>ttft|itl)_p(?P<percentile>\d+(?:\.\d+)?)_ms")
TRACED = re.compile(r"(?P<model>.+)\.(?P<field>" + "|".join(TRACE_FIELDS) + r")_p(?P<percentile>\d+(?:\.\d+)?)_ms")
METRIC_FORMS = ("avg_ms, pN_ms (e.g. p99_ms, p99.9_ms), throughput, goodput, error_rate, MODEL.FIELD_ms (FIELD: "
                + ", ".join(MODEL_FIELDS)
                + "), MODEL.PART_pN_ms with tracing (PART: " + ", ".join(TRACE_FIELDS)
                + "), gpu_util, gpu_power_w, gpu_memory_bytes, cpu_util, energy_per_inference_j, lag_p99_ms, "
                  "achieved_rate, with --streaming ttft_avg_ms, ttft_pN_ms, itl_avg_ms, itl_pN_ms, tokens_per_s, "
                  "responses_per_request, with a sequence model sequences_per_s")


@dataclass(frozen=True)
class Sla:
    expression: str  # as given, without spaces
    metric: str
    op: str
    threshold: float


@dataclass(frozen=True)
class Verdict:
    expression: str
    value: float | None  # in the metric's unit; None when not measured
    passed: bool
    reason: str  # why it failed; empty when it passed
    level_stable: bool = True  # False: the level never stabilized, so the verdict rests on figures that did not settle

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression, "value": self.value, "passed": self.passed, "reason": self.reason,
            "level_stable": self.level_stable,
        }  # fmt: skip


class _NotMeasured(Exception):
    """The level lacks the figure; the message says why."""


def parse_sla(text: str) -> Sla:
    """`p99_ms < 50` → Sla; a UsageError names what is wrong with a malformed expression or unknown metric."""
    match = EXPRESSION.fullmatch(text)
    if match is None:
        raise UsageError(f"--sla {text!r} is not METRIC OP NUMBER with OP one of {', '.join(OPERATORS)}, "
                         "e.g. --sla 'p99_ms<50'")
    metric, op, number = match["metric"], match["op"], match["number"]
    _check_metric(text, metric)
    threshold = float(number)
    if math.isinf(threshold):
        raise UsageError(f"--sla {text!r}: {number} is beyond a float's range; give a threshold like 50 or 1e6")
    return Sla(expression=f"{metric}{op}{number}", metric=metric, op=op, threshold=threshold)


def _check_metric(text: str, metric: str) -> None:
    if metric in FIXED_METRICS:
        return
    percentile = PERCENTILE.fullmatch(metric) or STREAMED.fullmatch(metric) or TRACED.fullmatch(metric)
    if percentile is not None:
        if float(percentile["percentile"]) > 100:
            raise UsageError(f"--sla {text!r}: percentile {percentile['percentile']} is over 100; use p0_ms to p100_ms")
        return
    traced = re.fullmatch(r"(?P<model>.*)\.(?P<part>[^.]+)_p\d+(?:\.\d+)?_ms", metric)
    if traced is not None and traced["part"] in TRACE_FIELDS:  # the model name is what is missing
        raise UsageError(f"--sla {text!r}: no model name before '.{traced['part']}_p...'; use MODEL.PART_pN_ms, "
                         f"e.g. centernet.{traced['part']}_p99_ms")
    if traced is not None:
        raise UsageError(f"--sla {text!r}: unknown traced part {traced['part']!r}; use MODEL.PART_pN_ms with PART one of "
                         f"{', '.join(TRACE_FIELDS)} and a model name, e.g. {traced['model'] or 'MODEL'}.compute_infer_p99_ms")
    model, dot, field = metric.rpartition(".")
    if not dot:
        raise UsageError(f"--sla {text!r}: unknown metric {metric!r}; use {METRIC_FORMS}")
    name = field.removesuffix("_ms")
    if not field.endswith("_ms") or name not in MODEL_FIELDS:
        example = name if name in MODEL_FIELDS else "compute_infer"
        raise UsageError(f"--sla {text!r}: unknown model figure {field!r}; use MODEL.FIELD_ms with FIELD one of "
                         f"{', '.join(MODEL_FIELDS)}, e.g. {model or 'MODEL'}.{example}_ms")
    if not model:
        raise UsageError(f"--sla {text!r}: no model name before '.{field}'; use MODEL.FIELD_ms, e.g. centernet.{field}")


def evaluate(slas: Sequence[Sla], level: LevelResult) -> list[Verdict]:
    """Each SLA's verdict on one level."""
    return [_verdict(sla, level) for sla in slas]


def _verdict(sla: Sla, level: LevelResult) -> Verdict:
    try:
        value = _measure(sla.metric, level)
    except _NotMeasured as missing:
        return Verdict(sla.expression, None, False, f"not measured: {missing}", level.stable)
    if OPERATORS[sla.op](value, sla.threshold):
        return Verdict(sla.expression, value, True, "", level.stable)
    return Verdict(sla.expression, value, False,
                   f"{sla.metric} = {format_value(value)}, needs {sla.op} {format_value(sla.threshold)}", level.stable)


UNSTABLE_NOTE = "on a level that never stabilized"


def describe(verdict: Verdict) -> str:
    """One console line: `p99_ms<50: PASS (p99_ms = 31.2)` or `p99_ms<50: FAIL (p99_ms = 61.2, needs < 50)`,
    with `, on a level that never stabilized` when it did not."""
    note = "" if verdict.level_stable else f", {UNSTABLE_NOTE}"
    if not verdict.passed:
        return f"{verdict.expression}: FAIL ({verdict.reason}{note})"
    metric = parse_sla(verdict.expression).metric
    return f"{verdict.expression}: PASS ({metric} = {format_value(verdict.value)}{note})"  # type: ignore[arg-type]


def format_value(value: float) -> str:
    """Six significant digits, and whole numbers in full (bytes) rather than in exponent form."""
    return f"{value:.0f}" if abs(value) >= 1e6 else f"{value:.6g}"


# Measuring: each function returns the figure in the metric's unit or raises _NotMeasured.

def _measure(metric: str, level: LevelResult) -> float:
    if metric in FIXED_METRICS:
        return FIXED_METRICS[metric](level)
    percentile = PERCENTILE.fullmatch(metric)
    if percentile is not None:
        return _percentile_ms(level, float(percentile["percentile"]))
    streamed = STREAMED.fullmatch(metric)
    if streamed is not None:
        return _streamed_percentile_ms(level, streamed["figure"], float(streamed["percentile"]))
    traced = TRACED.fullmatch(metric)
    if traced is not None:
        return _traced_ms(level, traced["model"], traced["field"], float(traced["percentile"]))
    model, _, field = metric.rpartition(".")
    return _model_ms(level, model, field.removesuffix("_ms"))


def _present(value: float | None, why: str) -> float:
    if value is None:
        raise _NotMeasured(why)
    return float(value)


def _latency_client(level: LevelResult) -> ClientStats:
    """The client figures, when latency was measured: with no success loadgen records 0 latencies, not real ones."""
    if not level.client.request_count:
        raise _NotMeasured("no request succeeded at this level")
    return level.client


def _avg_ms(level: LevelResult) -> float:
    return _latency_client(level).avg_latency_us / 1000


def _percentile_ms(level: LevelResult, percentile: float) -> float:
    client = _latency_client(level)
    for point, latency_us in client.percentile_latency_us.items():
        if point == percentile:
            return latency_us / 1000
    for point, latency_us in client.latency_curve_us or ():
        if point == percentile:
            return latency_us / 1000
    tail = ", ".join(f"{p:g}" for p in CURVE_PERCENTILES if p != int(p))
    raise _NotMeasured(f"the run recorded no p{percentile:g} latency; use a whole percentile or one of {tail}")


def _throughput(level: LevelResult) -> float:
    return level.client.throughput_infer_per_s


def _goodput(level: LevelResult) -> float:
    streaming = level.streaming  # a streamed level's goodput meets every bound, --goodput-ttft-ms and -itl-ms too
    if streaming is not None and streaming.goodput_infer_per_s is not None:
        return streaming.goodput_infer_per_s
    return _present(level.client.goodput_infer_per_s, "the run had no --goodput-latency-ms: add it to measure goodput")


def _error_rate(level: LevelResult) -> float:
    client = level.client
    if not client.request_count and not client.error_count:
        raise _NotMeasured("no request completed at this level")  # loadgen records 0 errors of 0, not a rate
    return client.error_rate


def _streamed(level: LevelResult) -> StreamStats:
    """The level's streaming figures, when it has some: requests were streamed and one succeeded."""
    streaming = level.streaming
    if streaming is None:
        raise _NotMeasured("the level was not streamed: time to first response, inter-response latency, tokens and "
                           "responses are measured with --streaming")
    if not streaming.request_count:
        raise _NotMeasured("no streamed request succeeded at this level")
    return streaming


def _stream_figure_us(level: LevelResult, figure: str) -> tuple[dict[str, float], LatencyHistogram]:
    """A streamed level's TTFT or ITL figures (µs, by "avg", "p50", ..., "max") and their histogram (ns)."""
    streaming = _streamed(level)
    if figure == "ttft":
        return streaming.ttft_us, streaming.ttft_histogram
    if streaming.itl_us is None or streaming.itl_histogram is None:
        raise _NotMeasured("no request had two responses at this level: there is no inter-response latency")
    return streaming.itl_us, streaming.itl_histogram


def _streamed_percentile_ms(level: LevelResult, figure: str, percentile: float) -> float:
    """TTFT or ITL at `percentile`: the level's own figure where it has one (exact), else its histogram's."""
    figures_us, histogram = _stream_figure_us(level, figure)
    key = "max" if percentile == 100 else f"p{percentile:g}"
    if key in figures_us:
        return figures_us[key] / 1000
    return histogram.percentile(percentile) / 1e6


def _ttft_avg_ms(level: LevelResult) -> float:
    return _stream_figure_us(level, "ttft")[0]["avg"] / 1000


def _itl_avg_ms(level: LevelResult) -> float:
    return _stream_figure_us(level, "itl")[0]["avg"] / 1000


def _tokens_per_s(level: LevelResult) -> float:
    return _present(_streamed(level).tokens_per_s, "no output held the tokens: name it with --token-output (the default, "
                                                   "the model's only integer output, found none or several)")


def _responses_per_request(level: LevelResult) -> float:
    return _streamed(level).responses_per_request


def _sequences_per_s(level: LevelResult) -> float:
    if level.sequences is None:
        raise _NotMeasured("the level drove no sequences: sequences are measured on a sequence model (sequence_batching)")
    return level.sequences.completed_per_s


def _model_ms(level: LevelResult, model: str, field: str) -> float:
    found = next((server for server in (level.server, *level.server.walk()) if server.name == model), None)
    if found is None:
        raise _NotMeasured(f"no model {model!r} in this run")
    return getattr(found, MODEL_FIELDS[field]) / 1000


def _traced_ms(level: LevelResult, model: str, field: str, percentile: float) -> float:
    tracing = level.tracing
    if tracing is None:
        raise _NotMeasured("no traces at this level: tracing was off (add --trace-rate N), or the server was given "
                           "with -u (loadgen reads its embedded server's traces only)")
    part = TRACE_FIELDS[field]
    values = (tracing.samples_us or {}).get((model, part))
    if values is not None and values.size:
        return percentile_of_sorted(values, percentile) / 1000
    stage = next((stage for stage in tracing.stages if (stage.model, stage.part) == (model, part)), None)
    if stage is None:
        if not any(stage.model == model for stage in tracing.stages):
            raise _NotMeasured(f"none of the {tracing.traces} traced requests of this level went through model {model!r}")
        kind = "an ensemble's" if part == "scheduling" else "a model's own, which an ensemble has not"
        raise _NotMeasured(f"model {model!r} has no {field} in its traces ({field} is {kind})")
    # A level read back from summary.json keeps these of each stage only.
    kept = {50.0: stage.p50_us, 90.0: stage.p90_us, 99.0: stage.p99_us, 100.0: stage.max_us}
    if percentile not in kept:
        raise _NotMeasured(f"summary.json keeps p50, p90, p99 and p100 of each traced stage, not p{percentile:g}")
    return kept[percentile] / 1000


def _metrics(level: LevelResult) -> MetricsFigures:
    if level.metrics is None:
        raise _NotMeasured("metrics were not collected at this level (--collect-metrics, or no scrape succeeded)")
    return level.metrics


def _gpu_figures(level: LevelResult, attribute: str, what: str) -> list[float]:
    """One figure of every GPU; all of them, or the GPU that lacks it is named."""
    gpus = _metrics(level).gpus
    if not gpus:
        raise _NotMeasured("the server exposes no GPU metrics")
    return [_present(getattr(gpu, attribute), f"the server reported no {what} for {gpu.uuid}") for gpu in gpus]


def _gpu_util(level: LevelResult) -> float:
    figures = _gpu_figures(level, "avg_utilization", "utilization")
    return sum(figures) / len(figures)


def _gpu_power_w(level: LevelResult) -> float:
    return sum(_gpu_figures(level, "avg_power_w", "power"))


def _gpu_memory_bytes(level: LevelResult) -> float:
    return max(_gpu_figures(level, "max_memory_used_bytes", "memory use"))


def _cpu_util(level: LevelResult) -> float:
    return _present(_metrics(level).avg_cpu_utilization, "the server exposes no CPU utilization")


def _energy_per_inference_j(level: LevelResult) -> float:
    metrics = _metrics(level)
    if not metrics.gpus:
        raise _NotMeasured("the server exposes no GPU metrics")
    return _present(metrics.energy_per_inference_j, "the server reported no GPU energy, or no inference completed")


def _open_loop(level: LevelResult) -> OpenLoopStats:
    if level.open_loop is None:
        raise _NotMeasured("not an open-loop level (--request-rate-range or --request-intervals)")
    return level.open_loop


def _lag_p99_ms(level: LevelResult) -> float:
    return _present(_open_loop(level).schedule_lag_us.get("p99"), "no request was sent at this level") / 1000


def _achieved_rate(level: LevelResult) -> float:
    return _open_loop(level).achieved_rate_per_s


FIXED_METRICS: dict[str, Callable[[LevelResult], float]] = {
    "avg_ms": _avg_ms, "throughput": _throughput, "goodput": _goodput, "error_rate": _error_rate,
    "gpu_util": _gpu_util, "gpu_power_w": _gpu_power_w, "gpu_memory_bytes": _gpu_memory_bytes, "cpu_util": _cpu_util,
    "energy_per_inference_j": _energy_per_inference_j, "lag_p99_ms": _lag_p99_ms, "achieved_rate": _achieved_rate,
    "ttft_avg_ms": _ttft_avg_ms, "itl_avg_ms": _itl_avg_ms, "tokens_per_s": _tokens_per_s,
    "responses_per_request": _responses_per_request, "sequences_per_s": _sequences_per_s,
}
