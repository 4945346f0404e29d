"""SLA expressions: parsing, each metric family evaluated on measured levels, and what fails unmeasured."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from results import client, gpu, level as measured, metrics, open_loop

from loadgen.errors import UsageError
from loadgen.histogram import LatencyHistogram
from loadgen.measurement import LevelResult
from loadgen.server_stats import ServerFigures
from loadgen.sla import Sla, Verdict, describe, evaluate, parse_sla
from loadgen.stats import percentile_of_sorted
from loadgen.stream_stats import StreamStats
from loadgen.tail import join, level_tracing
from loadgen.traces import TraceReader

GPU_A, GPU_B = "GPU-1111aaaa", "GPU-2222bbbb"


def model(name: str, queue_us: float, infer_us: float, composing=()) -> ServerFigures:
    """A model's figures as given, an ensemble's too (not its composing models' sums)."""
    return ServerFigures(name, "1", 300, 200, 300, 0, queue_us + 200 + infer_us + 50 + 120, queue_us, 200.0, infer_us,
                         50.0, tuple(composing))  # fmt: skip


def level() -> LevelResult:
    """A closed-loop level of a nested ensemble on two GPUs."""
    tree = model("pipeline", 900, 9000, [
        model("pre-process", 100, 1000),
        model("inner.ensemble_v2", 800, 8000, [model("detector", 700, 7500), model("post_process", 100, 500)]),
    ])
    stats = client(300, 3, 3.0, 100.0, 20_500.0, {50: 20_000.0, 90: 24_000.0, 95: 27_000.0, 99: 31_200.0},
                   curve=[(0, 15_000.0), (50, 20_000.0), (97, 29_000.0), (99, 31_000.0), (99.9, 45_500.0), (100, 52_000.0)])
    figures = metrics([gpu(GPU_A, 0.5, 200.0, 6 * 2**30, 80 * 2**30, 600.0), gpu(GPU_B, 0.7, 250.5, 9 * 2**30, 80 * 2**30, 630.0)],
                      energy_per_inference_j=4.1, cpu_utilization=0.45)  # fmt: skip
    return measured(4, client_stats=stats, server_figures=tree, metrics=figures)


def open_loop_level() -> LevelResult:
    return replace(level(), label="Request Rate", value=120,
                   open_loop=open_loop(120.0, 118.5, 355, 2, {"p50": 80.0, "p99": 1_450.0, "max": 3_000.0}))


def verdict(expression: str, data: LevelResult) -> Verdict:
    (result,) = evaluate([parse_sla(expression)], data)
    return result


def value(expression: str, data: LevelResult | None = None) -> float:
    result = verdict(expression, level() if data is None else data)
    assert result.value is not None, result.reason
    return result.value


# Parsing

@pytest.mark.parametrize("text, expected", [
    ("p99_ms<50", Sla("p99_ms<50", "p99_ms", "<", 50.0)),
    ("avg_ms<=20", Sla("avg_ms<=20", "avg_ms", "<=", 20.0)),
    ("  error_rate  <  0.01 ", Sla("error_rate<0.01", "error_rate", "<", 0.01)),
    ("throughput >= 100", Sla("throughput>=100", "throughput", ">=", 100.0)),
    ("throughput>1e3", Sla("throughput>1e3", "throughput", ">", 1000.0)),
    ("goodput >= 95", Sla("goodput>=95", "goodput", ">=", 95.0)),
    ("gpu_util==.5", Sla("gpu_util==.5", "gpu_util", "==", 0.5)),
    ("cpu_util!=0", Sla("cpu_util!=0", "cpu_util", "!=", 0.0)),
    ("p99.9_ms<80.5", Sla("p99.9_ms<80.5", "p99.9_ms", "<", 80.5)),
    ("centernet.compute_infer_ms<10", Sla("centernet.compute_infer_ms<10", "centernet.compute_infer_ms", "<", 10.0)),
    ("my-model.v2_x.queue_ms <= 2.5E-1", Sla("my-model.v2_x.queue_ms<=2.5E-1", "my-model.v2_x.queue_ms", "<=", 0.25)),
    ("gpu_power_w<700", Sla("gpu_power_w<700", "gpu_power_w", "<", 700.0)),
    ("gpu_memory_bytes<8e9", Sla("gpu_memory_bytes<8e9", "gpu_memory_bytes", "<", 8e9)),
    ("energy_per_inference_j<=5", Sla("energy_per_inference_j<=5", "energy_per_inference_j", "<=", 5.0)),
    ("lag_p99_ms<2", Sla("lag_p99_ms<2", "lag_p99_ms", "<", 2.0)),
    ("achieved_rate>=119", Sla("achieved_rate>=119", "achieved_rate", ">=", 119.0)),
    ("p100_ms<1", Sla("p100_ms<1", "p100_ms", "<", 1.0)),
    ("middle.compute_infer_p99_ms<1", Sla("middle.compute_infer_p99_ms<1", "middle.compute_infer_p99_ms", "<", 1.0)),
    ("my.model.queue_p99.9_ms <= 2", Sla("my.model.queue_p99.9_ms<=2", "my.model.queue_p99.9_ms", "<=", 2.0)),
    ("ens.latency_p50_ms<3", Sla("ens.latency_p50_ms<3", "ens.latency_p50_ms", "<", 3.0)),
    ("ens.scheduling_p100_ms<1", Sla("ens.scheduling_p100_ms<1", "ens.scheduling_p100_ms", "<", 1.0)),
])
def test_parse(text, expected):
    assert parse_sla(text) == expected


@pytest.mark.parametrize("text, says", [
    ("p99<50", "unknown metric 'p99'; use avg_ms, pN_ms"),
    ("latency_ms<50", "unknown metric 'latency_ms'"),
    ("p99_ms 50", "is not METRIC OP NUMBER"),
    ("p99_ms<", "is not METRIC OP NUMBER"),
    ("<50", "is not METRIC OP NUMBER"),
    ("p99_ms<<50", "is not METRIC OP NUMBER"),
    ("p99_ms=50", "is not METRIC OP NUMBER"),
    ("p99_ms<fifty", "is not METRIC OP NUMBER"),
    ("p99_ms<nan", "is not METRIC OP NUMBER"),
    ("p99_ms<50ms", "is not METRIC OP NUMBER"),
    ("", "is not METRIC OP NUMBER"),
    ("p99_ms<50\nrm -rf", "is not METRIC OP NUMBER"),
    ("p101_ms<50", "percentile 101 is over 100"),
    ("centernet.compute_ms_x<1", "unknown model figure 'compute_ms_x'"),
    ("centernet.queue<1", "e.g. centernet.queue_ms"),
    (".queue_ms<1", "no model name before '.queue_ms'"),
    ("middle.compute_infer_p101_ms<1", "percentile 101 is over 100"),
    ("middle.compute_p99.9_ms<1", "unknown traced part 'compute'; use MODEL.PART_pN_ms"),
    (".queue_p99_ms<1", "no model name before '.queue_p...'"),
])
def test_bad_expressions_are_one_line_usage_errors(text, says):
    with pytest.raises(UsageError) as raised:
        parse_sla(text)
    message = str(raised.value)
    assert says in message
    assert message.startswith(f"--sla {text!r}")
    assert "\n" not in message


# Evaluating each metric family

def test_client_figures():
    assert value("avg_ms<100") == 20.5
    assert value("throughput>1") == 100.0
    assert value("error_rate<1") == pytest.approx(3 / 303)
    assert value("p99_ms<100") == 31.2  # the reported percentile, not the curve's 31.0
    assert value("p99.0_ms<100") == 31.2  # the same percentile, written differently
    assert value("p99.9_ms<100") == 45.5  # only on the curve
    assert value("p97_ms<100") == 29.0
    assert value("p100_ms<100") == 52.0


def test_goodput_is_the_levels_goodput():
    with_goodput = replace(level(), client=replace(level().client, goodput_infer_per_s=87.5))
    assert value("goodput>80", with_goodput) == 87.5
    assert verdict("goodput>=90", with_goodput) == Verdict("goodput>=90", 87.5, False, "goodput = 87.5, needs >= 90")
    no_success = replace(with_goodput, client=replace(with_goodput.client, request_count=0, goodput_infer_per_s=0.0))
    assert verdict("goodput>0", no_success) == Verdict("goodput>0", 0.0, False, "goodput = 0, needs > 0")  # 0 is measured


def test_model_figures_at_any_depth_with_dots_and_dashes_in_names():
    assert value("pipeline.queue_ms<100") == 0.9
    assert value("pipeline.latency_ms<100") == pytest.approx((900 + 200 + 9000 + 50 + 120) / 1000)
    assert value("pre-process.compute_infer_ms<100") == 1.0
    assert value("inner.ensemble_v2.compute_ms<100") == 8.25
    assert value("detector.compute_input_ms<100") == 0.2
    assert value("detector.compute_output_ms<100") == 0.05
    assert value("post_process.overhead_ms<100") == 0.12


def test_machine_metrics():
    assert value("gpu_util>0") == pytest.approx(0.6)  # the GPUs' mean
    assert value("gpu_power_w>0") == 450.5  # their sum
    assert value("gpu_memory_bytes>0") == 9 * 2**30  # the fullest GPU
    assert value("cpu_util>0") == 0.45
    assert value("energy_per_inference_j>0") == 4.1


def test_open_loop_metrics():
    data = open_loop_level()
    assert value("lag_p99_ms<2", data) == 1.45
    assert value("achieved_rate>=118", data) == 118.5
    assert verdict("lag_p99_ms<1", data) == Verdict("lag_p99_ms<1", 1.45, False, "lag_p99_ms = 1.45, needs < 1")


def test_verdicts_in_order_with_reasons():
    slas = [parse_sla(text) for text in ("p99_ms < 50", "p99_ms<30", "throughput>=100", "error_rate<0.001")]
    assert evaluate(slas, level()) == [
        Verdict("p99_ms<50", 31.2, True, ""),
        Verdict("p99_ms<30", 31.2, False, "p99_ms = 31.2, needs < 30"),
        Verdict("throughput>=100", 100.0, True, ""),
        Verdict("error_rate<0.001", pytest.approx(3 / 303), False, "error_rate = 0.00990099, needs < 0.001"),
    ]
    assert evaluate([], level()) == []


@pytest.mark.parametrize("op, passes", [("<", False), ("<=", True), (">", False), (">=", True), ("==", True),
                                        ("!=", False)])
def test_operators_at_equality(op, passes):
    assert verdict(f"throughput{op}100", level()).passed is passes
    assert verdict(f"throughput{op}99.99", level()).passed is (op in (">", ">=", "!="))


# Not measured: always a failure, with why

def not_measured(expression: str, data: LevelResult) -> str:
    result = verdict(expression, data)
    assert result.value is None and not result.passed
    assert result.reason.startswith("not measured: ")
    return result.reason.removeprefix("not measured: ")


def test_machine_metrics_not_measured():
    no_gpus = level()
    no_gpus = replace(no_gpus, metrics=replace(no_gpus.metrics, gpus=(), energy_per_inference_j=None))
    for metric in ("gpu_util", "gpu_power_w", "gpu_memory_bytes", "energy_per_inference_j"):
        assert not_measured(f"{metric}>=0", no_gpus) == "the server exposes no GPU metrics"
    assert verdict("cpu_util<1", no_gpus).passed  # the CPU is still measured

    no_metrics = replace(level(), metrics=None)
    for metric in ("gpu_util", "gpu_power_w", "gpu_memory_bytes", "cpu_util", "energy_per_inference_j"):
        assert "metrics were not collected" in not_measured(f"{metric}>=0", no_metrics)
        assert "--collect-metrics" in not_measured(f"{metric}>=0", no_metrics)

    partial = level()
    gpus = (partial.metrics.gpus[0], replace(partial.metrics.gpus[1], avg_power_w=None))
    partial = replace(partial, metrics=replace(partial.metrics, gpus=gpus, avg_cpu_utilization=None))
    assert not_measured("gpu_power_w<1000", partial) == f"the server reported no power for {GPU_B}"
    assert not_measured("cpu_util<1", partial) == "the server exposes no CPU utilization"


def test_model_not_in_run():
    assert not_measured("centernet.queue_ms<1", level()) == "no model 'centernet' in this run"
    assert not_measured("inner.queue_ms<1", level()) == "no model 'inner' in this run"  # not a name prefix


def test_open_loop_metrics_on_a_closed_loop_level():
    data = level()
    assert data.open_loop is None
    assert not_measured("lag_p99_ms<1", data).startswith("not an open-loop level")
    assert not_measured("achieved_rate>1", data).startswith("not an open-loop level")


def test_goodput_without_a_bound_is_not_measured():
    assert level().client.goodput_infer_per_s is None
    reason = not_measured("goodput>1", level())
    assert reason == "the run had no --goodput-latency-ms: add it to measure goodput"


def test_latency_without_a_success_is_not_zero():
    failed = replace(level(), client=client(0, 40, 3.0, 0.0, 0.0, {50: 0.0, 90: 0.0, 95: 0.0, 99: 0.0}, curve=[]))
    for expression in ("avg_ms<50", "p99_ms<50", "p99.9_ms<50"):
        assert not_measured(expression, failed) == "no request succeeded at this level"
    assert verdict("throughput>=0", failed).passed
    assert verdict("error_rate<0.5", failed) == Verdict("error_rate<0.5", 1.0, False, "error_rate = 1, needs < 0.5")

    idle = replace(failed, client=replace(failed.client, error_count=0))
    assert not_measured("error_rate<0.01", idle) == "no request completed at this level"


def test_percentile_the_run_did_not_record():
    reason = not_measured("p97.5_ms<50", level())
    assert reason.startswith("the run recorded no p97.5 latency; use a whole percentile or one of 99.5, 99.9")


# Console lines and summary.json

def test_describe_and_to_dict():
    passed, failed, missing = evaluate([parse_sla("p99_ms<50"), parse_sla("p99_ms < 30"), parse_sla("lag_p99_ms<1")],
                                       level())
    assert describe(passed) == "p99_ms<50: PASS (p99_ms = 31.2)"
    assert describe(failed) == "p99_ms<30: FAIL (p99_ms = 31.2, needs < 30)"
    assert describe(missing).startswith("lag_p99_ms<1: FAIL (not measured: not an open-loop level")
    assert failed.to_dict() == {"expression": "p99_ms<30", "value": 31.2, "passed": False,
                                "reason": "p99_ms = 31.2, needs < 30", "level_stable": True}
    assert missing.to_dict()["value"] is None


def test_a_verdict_on_an_unstable_level_says_so():
    passed, failed = evaluate([parse_sla("p99_ms<50"), parse_sla("p99_ms<30")], replace(level(), stable=False))
    assert not passed.level_stable and passed.passed and passed.to_dict()["level_stable"] is False
    assert describe(passed) == "p99_ms<50: PASS (p99_ms = 31.2, on a level that never stabilized)"
    assert describe(failed) == "p99_ms<30: FAIL (p99_ms = 31.2, needs < 30, on a level that never stabilized)"
    big = verdict("gpu_memory_bytes<8e9", level())
    assert big.reason == "gpu_memory_bytes = 9663676416, needs < 8000000000"  # bytes in full, not 9.66368e+09


# Per-stage percentiles from traces (a real capture of the stalling ensemble: tests/data/traces/stalling)

TRACES = Path(__file__).parent / "data" / "traces" / "stalling"


def traced_level() -> LevelResult:
    reader = TraceReader(TRACES / "trace.json")
    traces = reader.poll() + reader.finish()
    latency_us = json.loads((TRACES / "client.json").read_text())
    ordered = np.sort(np.array(list(latency_us.values())))
    tracing = level_tracing(join(latency_us, traces), len(traces), lambda p: percentile_of_sorted(ordered, p), 99)
    return replace(level(), tracing=tracing)


def test_stage_percentiles_of_any_rank_from_the_traces():
    data = traced_level()
    samples = data.tracing.samples_us
    infer = samples[("middle", "compute_infer")]
    assert value("middle.compute_infer_p99_ms<100", data) == percentile_of_sorted(infer, 99) / 1000 > 45  # a stall
    assert value("middle.compute_infer_p50_ms<100", data) < 2
    assert value("middle.queue_p99.9_ms<100", data) == percentile_of_sorted(samples[("middle", "queue")], 99.9) / 1000
    assert value("stalling-ensemble.latency_p90_ms<100", data) == percentile_of_sorted(
        samples[("stalling-ensemble", "total")], 90) / 1000
    assert value("stalling-ensemble.scheduling_p99_ms<100", data) > 0
    assert verdict("middle.compute_infer_p99_ms<1", data).reason.startswith("middle.compute_infer_p99_ms = ")
    assert value("pipeline.latency_ms<100", data) == value("pipeline.latency_ms<100")  # still the statistics API's average


def test_stage_percentiles_not_measured():
    assert "tracing was off (add --trace-rate N)" in not_measured("middle.queue_p99_ms<1", level())
    data = traced_level()
    assert not_measured("centernet.queue_p99_ms<1", data) == \
        "none of the 20 traced requests of this level went through model 'centernet'"
    assert not_measured("stalling-ensemble.queue_p99_ms<1", data).startswith("model 'stalling-ensemble' has no queue")
    assert "scheduling is an ensemble's" in not_measured("middle.scheduling_p99_ms<1", data)


def test_a_level_read_back_keeps_p50_p90_p99_and_max_of_each_stage():
    data = traced_level()
    read_back = replace(data, tracing=replace(data.tracing, samples_us=None))
    infer = next(stage for stage in data.tracing.stages if (stage.model, stage.part) == ("middle", "compute_infer"))
    assert value("middle.compute_infer_p99_ms<100", read_back) == infer.p99_us / 1000
    assert value("middle.compute_infer_p100_ms<100", read_back) == infer.max_us / 1000
    assert "keeps p50, p90, p99 and p100" in not_measured("middle.compute_infer_p99.9_ms<100", read_back)


# Streaming (--streaming): the level's StreamStats

def streamed(itl: bool = True, tokens: bool = True, goodput: float | None = None) -> LevelResult:
    """A streamed level: 100 requests of 16 responses; TTFT 40..139 ms, ITL 5..9 ms, from real histograms."""
    ttft_ns = np.arange(100) * 1_000_000 + 40_000_000
    itl_ns = np.tile(np.arange(5, 10) * 1_000_000, 300)
    return measured(2, streaming=StreamStats(
        request_count=100, response_count=1600, responses_per_request=16.0,
        ttft_us={"avg": 89_500.0, "p50": 90_000.0, "p90": 130_000.0, "p99": 139_000.0, "max": 139_000.0, "p75": 115_000.0},
        itl_us={"avg": 7_000.0, "p50": 7_000.0, "p90": 9_000.0, "p99": 9_000.0, "max": 9_000.0} if itl else None,
        output_tokens=6400 if tokens else None, tokens_per_s=2133.3 if tokens else None,
        ttft_histogram=LatencyHistogram.of(ttft_ns), itl_histogram=LatencyHistogram.of(itl_ns) if itl else None,
        examples=(), goodput_infer_per_s=goodput,
    ))  # fmt: skip


@pytest.mark.parametrize("text, expected", [
    ("ttft_avg_ms<100", 89.5), ("ttft_p50_ms<100", 90.0), ("ttft_p99_ms<150", 139.0), ("ttft_p100_ms<150", 139.0),
    ("ttft_p75_ms<150", 115.0),  # the run's --percentile: its own figure
    ("itl_avg_ms<10", 7.0), ("itl_p90_ms<10", 9.0), ("tokens_per_s>1000", 2133.3), ("responses_per_request==16", 16.0),
])  # fmt: skip
def test_streaming_figures(text, expected):
    assert value(text, streamed()) == pytest.approx(expected)


def test_a_streaming_percentile_the_run_did_not_report_comes_from_its_histogram():
    data = streamed()
    # TTFTs 40..139 ms by 1 ms: p99.9 is the 100th (139 ms), p10 the 11th (50 ms), within a bucket's width
    assert value("ttft_p99.9_ms<1000", data) == pytest.approx(139.0, rel=1 / 2048)
    assert value("ttft_p10_ms<1000", data) == pytest.approx(50.0, rel=1 / 2048)
    assert value("itl_p10_ms<1000", data) == pytest.approx(5.0, rel=1 / 2048)


def test_streaming_figures_not_measured():
    assert "the level was not streamed" in not_measured("ttft_p99_ms<50", level())
    assert "the level was not streamed" in not_measured("responses_per_request>1", level())
    assert "no request had two responses" in not_measured("itl_p99_ms<5", streamed(itl=False))
    assert "no request had two responses" in not_measured("itl_avg_ms<5", streamed(itl=False))
    assert value("ttft_avg_ms<100", streamed(itl=False)) == 89.5
    assert "name it with --token-output" in not_measured("tokens_per_s>1", streamed(tokens=False))
    failed = replace(streamed(), streaming=replace(streamed().streaming, request_count=0))
    assert not_measured("responses_per_request>1", failed) == "no streamed request succeeded at this level"


def test_a_streamed_levels_goodput_meets_every_bound():
    assert value("goodput>1", streamed(goodput=12.5)) == 12.5  # the streaming figure, --goodput-ttft-ms and -itl-ms too
    with_latency_bound = replace(streamed(), client=replace(streamed().client, goodput_infer_per_s=30.0))
    assert value("goodput>1", with_latency_bound) == 30.0  # no streaming bound: the latency bound's goodput


@pytest.mark.parametrize("text", ["ttft_p99_ms<50", "itl_p99.9_ms<5", "ttft_avg_ms<=20", "tokens_per_s>=100",
                                  "responses_per_request==16"])
def test_streaming_metrics_parse(text):
    sla = parse_sla(text)
    assert sla.metric == text.split("<")[0].split(">")[0].split("=")[0]


def test_a_streaming_percentile_over_100_is_refused():
    with pytest.raises(UsageError, match="percentile 101 is over 100"):
        parse_sla("ttft_p101_ms<5")
