"""Flag and config-file parsing."""

import pytest

import argparse
import dataclasses

from loadgen.config import DEFAULT_MODEL, Range, parse_header, parse_range, parse_shape, prepare
from loadgen.errors import UsageError
from loadgen.options import OPTIONS, SECTIONS, add_run_arguments, build_config, config_from_record, load_config_file


def test_ranges():
    assert parse_range("1:8:2", "--concurrency-range").values() == [1, 3, 5, 7]
    assert parse_range("4", "--concurrency-range").values() == [4]
    assert parse_range("2:4", "--concurrency-range").values() == [2, 3, 4]
    assert parse_range("1:0:2", "--concurrency-range").values() is None


@pytest.mark.parametrize("text", ["4:1", "1:4:0", "0:4", "a:b", "1:2:3:4", ""])
def test_bad_ranges(text):
    with pytest.raises(UsageError):
        parse_range(text, "--concurrency-range")


def test_shapes_and_headers():
    assert parse_shape("INPUT0:3,224,224") == ("INPUT0", (3, 224, 224))
    assert parse_shape("ns:name:4") == ("ns:name", (4,))
    for bad in ["INPUT0", "INPUT0:", "INPUT0:3,x", "INPUT0:0"]:
        with pytest.raises(UsageError):
            parse_shape(bad)
    assert parse_header("Authorization: Bearer x:y") == ("Authorization", "Bearer x:y")
    with pytest.raises(UsageError):
        parse_header("no-colon")


def test_defaults_and_overrides():
    config = build_config({})
    assert config.target.model_name == DEFAULT_MODEL and config.target.url is None
    assert config.load.concurrency_range == Range(1, 1, 1)
    assert config.windows.interval_ms == 5000 and config.windows.stability_pct == 10
    config = build_config({"measurement-interval": "2000", "percentile": 95, "header": ["A: b"], "concurrency-range": "1:4"})
    assert config.windows.interval_ms == 2000 and config.windows.percentile == 95
    assert config.target.headers == {"A": "b"}
    assert config.to_dict()["headers"] == {"A": "b"}  # credential-bearing values are masked (test_redact.py)


def test_url_needs_a_model():
    with pytest.raises(UsageError, match="-m"):
        build_config({"url": "localhost:8000"})


def test_open_range_needs_a_threshold():
    with pytest.raises(UsageError, match="latency-threshold"):
        build_config({"concurrency-range": "1:0"})


def test_config_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("concurrency_range: '1:2'\nmeasurement-interval: 1000\nverbose-csv: true\nshape: IN:4\n")
    assert load_config_file(path) == {
        "concurrency-range": "1:2", "measurement-interval": 1000, "verbose-csv": True, "shape": ["IN:4"]}


@pytest.mark.parametrize("text,message", [
    ("concurency-range: 1\n", "unknown key"),
    ("- a\n- b\n", "mapping"),
    ("a: [\n", "not valid YAML"),
    ("verbose-csv: maybe\n", "true or false"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_config_file(path)


def test_bad_values_from_a_config_file():
    with pytest.raises(UsageError, match="int"):
        build_config({"measurement-interval": "soon"})


def test_metrics_options():
    config = build_config({"collect-metrics": True, "metrics-url": "h:1/m", "metrics-interval": 250, "export-metrics-port": 9464})
    outputs = config.outputs
    assert (outputs.collect_metrics, outputs.metrics_url, outputs.metrics_interval_ms, outputs.export_metrics_port) == (
        True, "h:1/m", 250, 9464)  # fmt: skip
    assert build_config({}).outputs.collect_metrics is False and build_config({}).outputs.metrics_interval_ms == 1000


@pytest.mark.parametrize("options,message", [
    ({"metrics-url": "h:1/m"}, "--metrics-url only applies with --collect-metrics"),
    ({"metrics-interval": 100}, "--metrics-interval only applies with --collect-metrics"),
    ({"collect-metrics": True, "metrics-interval": 0}, "at least 1 ms"),
    ({"export-metrics-port": 70000}, "not a port number"),
])
def test_bad_metrics_options(options, message):
    with pytest.raises(UsageError, match=message):
        build_config(options)


def test_open_loop_and_capacity_options(tmp_path):
    config = build_config({"request-rate-range": "12.5:50:12.5", "request-distribution": "poisson", "seed": 3,
                           "max-inflight": 64, "sla": ["p99_ms<50"], "binary-search": True,
                           "target-throughput": 900, "headroom": "30%"})  # fmt: skip
    load, gates = config.load, config.gates
    assert load.open_loop and load.load_range.values() == [12.5, 25.0, 37.5, 50.0]
    assert (load.request_distribution, load.seed, load.max_inflight) == ("poisson", 3, 64)
    assert [sla.expression for sla in gates.slas] == ["p99_ms<50"]  # parsed once, carried
    assert (gates.binary_search, gates.target_throughput, gates.headroom_pct) == (True, 900, 30.0)
    assert config.to_dict()["request_rate_range"] == "12.5:50:12.5"
    gaps = tmp_path / "gaps.txt"
    gaps.write_text("1000\n2000\n")
    read = prepare(build_config({"request-intervals": str(gaps)}))
    assert read.load.open_loop and read.load.intervals_us == (1000, 2000)
    assert not build_config({}).load.open_loop


@pytest.mark.parametrize("options,message", [
    ({"concurrency-range": "1:4", "request-rate-range": "10"}, "are different loads"),
    ({"request-rate-range": "0"}, "starts below or at 0"),
    ({"request-rate-range": "10:20:0"}, "above 0"),
    ({"request-distribution": "uniform"}, "constant or poisson"),
    ({"binary-search": True, "concurrency-range": "1:8"}, "needs -l/--latency-threshold or --sla"),
    ({"binary-search": True, "latency-threshold": 10}, "end above start"),
    ({"sla": ["p99<5"]}, "unknown metric"),
    ({"headroom": "100%"}, "up to"),
    ({"max-inflight": 0}, "at least 1"),
    ({"request-rate-range": "10:0"}, "needs -l/--latency-threshold or --sla"),
])
def test_bad_open_loop_and_capacity_options(options, message):
    with pytest.raises(UsageError, match=message):
        build_config(options)


def test_goodput_latency_option(tmp_path):
    assert build_config({}).gates.goodput_latency_ms is None and build_config({}).to_dict()["goodput_latency_ms"] is None
    config = build_config({"goodput-latency-ms": "12.5", "sla": ["goodput>100"]})
    assert config.gates.goodput_latency_ms == 12.5 and config.to_dict()["goodput_latency_ms"] == 12.5
    assert config_from_record(config.to_dict()) == config
    path = tmp_path / "s.yaml"
    path.write_text("goodput_latency_ms: 40\n")
    assert build_config(load_config_file(path)).gates.goodput_latency_ms == 40.0


@pytest.mark.parametrize("value, message", [
    ("0", "--goodput-latency-ms must be a finite number of ms above 0, got 0: give the latency"),
    ("-5", "--goodput-latency-ms must be a finite number of ms above 0, got -5: give the latency"),
    ("inf", "--goodput-latency-ms must be a finite number, got 'inf'"),
    ("nan", "--goodput-latency-ms must be a finite number, got 'nan'"),
    ("fast", "--goodput-latency-ms must be a finite number, got 'fast'"),
])  # fmt: skip
def test_bad_goodput_latency_is_one_line(value, message):
    with pytest.raises(UsageError) as raised:
        build_config({"goodput-latency-ms": value})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_goodput_sla_needs_the_goodput_latency():
    with pytest.raises(UsageError) as raised:
        build_config({"sla": ["p99_ms<50", "goodput>100"]})
    assert str(raised.value) == ("--sla goodput needs --goodput-latency-ms: add the latency a request must stay within "
                                 "to count as goodput, e.g. --goodput-latency-ms 100")


def test_building_a_configuration_reads_no_file_and_prepare_reads_each_once(tmp_path):
    config = build_config({"request-intervals": "/nonexistent/gaps.txt"})  # no I/O yet
    assert config.load.intervals_us is None
    with pytest.raises(UsageError, match="cannot read"):
        prepare(config)
    gaps = tmp_path / "gaps.txt"
    gaps.write_text("500\n")
    prepared = prepare(build_config({"request-intervals": str(gaps)}))
    gaps.unlink()
    assert prepare(prepared).load.intervals_us == (500,)  # carried, not read again


def test_every_option_is_declared_once_and_sets_one_field():
    fields = {(option.section, option.field) for option in OPTIONS}
    assert len(fields) == len(OPTIONS) and len({option.name for option in OPTIONS}) == len(OPTIONS)
    for name, section in SECTIONS.items():
        declared = {field for section_name, field in fields if section_name == name}
        assert declared == {f.name for f in dataclasses.fields(section)} - {"intervals_us", "replay"}, name
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    help_text = " ".join(parser.format_help().split())  # unwrapped
    for option in OPTIONS:
        assert f"--{option.name}" in help_text
    assert "(default 60000)" in help_text and "(default 5000)" in help_text  # defaults shown from the table


def test_a_recorded_configuration_builds_the_same_configuration():
    config = build_config({"concurrency-range": "1:8:2", "sla": ["p99_ms<50"], "header": ["X-Team: perf"],
                           "shape": ["IN:3,4"], "headroom": "10%", "binary-search": True, "percentile": 95})  # fmt: skip
    again = config_from_record(config.to_dict())
    assert again == config and again.to_dict() == config.to_dict()
    assert config_from_record({"model_name": "m"}).target.request_timeout_ms is None  # an older record: not recorded


# --streaming: its options, and its window defaults

def _windows(options: dict) -> tuple:
    w = build_config(options).windows
    return w.mode, w.interval_ms, w.request_count, w.stability_pct, w.max_trials


def test_streaming_takes_count_windows_unless_the_windows_are_given():
    assert _windows({}) == ("time_windows", 5000, 50, 10.0, 10)
    assert _windows({"streaming": True}) == ("count_windows", 30_000, 10, 10.0, 10)
    # -p alone asks for time windows of that length, as without --streaming
    assert _windows({"streaming": True, "measurement-interval": 8000}) == ("time_windows", 8000, 10, 10.0, 10)
    assert _windows({"streaming": True, "measurement-mode": "time_windows"}) == ("time_windows", 5000, 10, 10.0, 10)
    assert _windows({"streaming": True, "measurement-mode": "count_windows", "measurement-interval": 2000,
                     "measurement-request-count": 25, "stability-percentage": 20, "max-trials": 6}) == \
        ("count_windows", 2000, 25, 20.0, 6)  # fmt: skip


def test_streaming_options_in_the_config_and_its_record(tmp_path):
    path = tmp_path / "stream.yaml"
    path.write_text("streaming: true\ntoken-output: output_ids\ngoodput_ttft_ms: 200\ngoodput-itl-ms: 20.5\n")
    config = build_config(load_config_file(path))
    assert (config.target.streaming, config.target.token_output) == (True, "output_ids")
    assert (config.gates.goodput_ttft_ms, config.gates.goodput_itl_ms) == (200.0, 20.5)
    record = config.to_dict()
    assert {key: record[key] for key in ("streaming", "token_output", "goodput_ttft_ms", "goodput_itl_ms")} == \
        {"streaming": True, "token_output": "output_ids", "goodput_ttft_ms": 200.0, "goodput_itl_ms": 20.5}
    assert config_from_record(record) == config
    assert not build_config({}).target.streaming and build_config({}).gates.goodput_ttft_ms is None


def test_sla_goodput_takes_any_goodput_bound():
    config = build_config({"streaming": True, "goodput-ttft-ms": 100, "sla": ["goodput>5"]})
    assert config.gates.goodput_bounded
    with pytest.raises(UsageError, match="--sla goodput needs --goodput-latency-ms"):
        build_config({"streaming": True, "sla": ["goodput>5"]})
