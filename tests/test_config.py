"""Flag and config-file parsing."""

import pytest

from loadgen.config import (
    DEFAULT_MODEL,
    Range,
    build_config,
    load_config_file,
    parse_header,
    parse_range,
    parse_shape,
)
from loadgen.errors import UsageError


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
    assert config.model_name == DEFAULT_MODEL and config.url is None
    assert config.concurrency_range == Range(1, 1, 1)
    assert config.windows.interval_ms == 5000 and config.windows.stability_pct == 10
    config = build_config({"measurement-interval": "2000", "percentile": 95, "header": ["A: b"], "concurrency-range": "1:4"})
    assert config.windows.interval_ms == 2000 and config.windows.percentile == 95
    assert config.headers == {"A": "b"}
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
    assert (config.collect_metrics, config.metrics_url, config.metrics_interval_ms, config.export_metrics_port) == (
        True, "h:1/m", 250, 9464)  # fmt: skip
    assert build_config({}).collect_metrics is False and build_config({}).metrics_interval_ms == 1000


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
    assert config.open_loop and config.load_range.values() == [12.5, 25.0, 37.5, 50.0]
    assert (config.request_distribution, config.seed, config.max_inflight) == ("poisson", 3, 64)
    assert (config.slas, config.binary_search, config.target_throughput, config.headroom_pct) == (("p99_ms<50",), True, 900, 30.0)
    assert config.to_dict()["request_rate_range"] == "12.5:50:12.5"
    gaps = tmp_path / "gaps.txt"
    gaps.write_text("1000\n")
    assert build_config({"request-intervals": str(gaps)}).open_loop
    assert not build_config({}).open_loop


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
    ({"request-intervals": "/nonexistent/gaps.txt"}, "cannot read"),
    ({"request-rate-range": "10:0"}, "needs -l/--latency-threshold or --sla"),
])
def test_bad_open_loop_and_capacity_options(options, message):
    with pytest.raises(UsageError, match=message):
        build_config(options)
