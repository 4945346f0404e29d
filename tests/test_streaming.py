"""--streaming end to end: `loadgen run` against the real embedded server on the decoupled test models
(tests/model_repos/decoupled: stream16 answers with 16 responses, the first 40 ms after the request,
then one every 5 ms; stream-fail fails at its 4th). The bounds are loose: a busy 2-core VM adds
milliseconds to every response."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.histogram import LatencyHistogram
from loadgen.report.render import load_summary

RESPONSES = 16
TOKENS_PER_RESPONSE = 4  # --shape IN:4: each response's OUT has IN's 4 elements


def loadgen_run(server, protocol: str, model: str, report: Path, *options: str) -> dict:
    """A run of `model` over `protocol`, streamed; its summary.json."""
    url = server.grpc if protocol == "grpc" else server.http
    args = ["run", "-u", url, "-i", protocol, "-m", model, "--streaming", "--shape", f"IN:{TOKENS_PER_RESPONSE}",
            "-p", "1000", "-r", "3", "--report-dir", str(report), *options]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    return json.loads((report / "summary.json").read_text())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sixteen_responses_forty_ms_then_every_five(decoupled_triton, protocol, tmp_path):
    summary = loadgen_run(decoupled_triton, protocol, "stream16", tmp_path, "--concurrency-range", "2", "-s", "100",
                          "--goodput-ttft-ms", "1000", "--goodput-itl-ms", "1000")  # fmt: skip
    assert summary["schema_version"] == 14
    assert summary["config"]["streaming"] and summary["config"]["token_output"] == "OUT"  # the model's only INT output
    [level] = summary["levels"]
    client, stream = level["client"], level["streaming"]
    requests = client["request_count"]
    assert requests >= 6 and client["error_count"] == 0
    assert stream["request_count"] == requests
    assert stream["response_count"] == RESPONSES * requests and stream["responses_per_request"] == RESPONSES
    assert stream["output_tokens"] == RESPONSES * TOKENS_PER_RESPONSE * requests
    assert stream["tokens_per_s"] == pytest.approx(client["throughput_infer_per_s"] * RESPONSES * TOKENS_PER_RESPONSE)
    assert 35_000 <= stream["ttft_us"]["p50"] <= 80_000, stream["ttft_us"]
    assert 3_000 <= stream["itl_us"]["p50"] <= 15_000, stream["itl_us"]
    # Every request meets the generous bounds: goodput is the throughput.
    assert stream["goodput_infer_per_s"] == pytest.approx(client["throughput_infer_per_s"])
    # The request's latency runs to its final response: past the first and the 15 gaps after it.
    assert client["percentile_latency_us"]["p50"] >= 35_000 + 15 * 3_000
    ttft = LatencyHistogram.from_dict(stream["ttft_histogram"])
    itl = LatencyHistogram.from_dict(stream["itl_histogram"])
    assert ttft.count == requests and itl.count == (RESPONSES - 1) * requests
    assert ttft.total / ttft.count / 1e3 == pytest.approx(stream["ttft_us"]["avg"])
    assert 1 <= len(stream["examples"]) <= 5
    for example in stream["examples"]:
        offsets = example["response_offsets_us"]
        assert len(offsets) == RESPONSES and offsets == sorted(offsets) and offsets[-1] <= example["latency_us"]
    # Read back as the reports read it.
    read = load_summary(tmp_path).levels[0].streaming
    assert read.request_count == requests and read.examples[0].response_offsets_us == tuple(stream["examples"][0]["response_offsets_us"])


def test_a_model_that_fails_mid_stream_gives_errors_not_figures(decoupled_triton, tmp_path):
    summary = loadgen_run(decoupled_triton, "grpc", "stream-fail", tmp_path, "--concurrency-range", "2")
    [level] = summary["levels"]
    assert level["client"]["request_count"] == 0 and level["client"]["error_count"] >= 10
    [kind] = level["errors"]["kinds"]
    assert kind["kind"] == "gRPC UNKNOWN" and any("failed at response 3" in message for message in kind["messages"])
    stream = level["streaming"]
    assert (stream["request_count"], stream["response_count"], stream["itl_us"], stream["examples"]) == (0, 0, None, [])


def test_open_loop_times_a_stream_from_its_intended_send(decoupled_triton, tmp_path):
    """At 20 requests/s, one out at a time (--max-inflight 1), while each takes 115 ms or more: requests
    wait for the slot, and their first response, timed from when they were due, comes ever later,
    while the whole request from its actual send stays the model's own time."""
    summary = loadgen_run(decoupled_triton, "grpc", "stream16", tmp_path, "--request-rate-range", "20", "--max-inflight", "1")
    [level] = summary["levels"]
    stream, open_loop = level["streaming"], level["open_loop"]
    assert open_loop["held_back_count"] > 0 and stream["request_count"] >= 6
    assert open_loop["sent_avg_latency_us"] < 400_000
    assert stream["ttft_us"]["p50"] > open_loop["sent_avg_latency_us"]  # due long before it could leave
    assert stream["ttft_us"]["p50"] < level["client"]["percentile_latency_us"]["p50"]


def test_open_loop_within_capacity(decoupled_triton, tmp_path):
    summary = loadgen_run(decoupled_triton, "grpc", "stream16", tmp_path, "--request-rate-range", "10")
    [level] = summary["levels"]
    stream = level["streaming"]
    assert level["client"]["error_count"] == 0 and stream["responses_per_request"] == RESPONSES
    assert 35_000 <= stream["ttft_us"]["p50"] <= 80_000, stream["ttft_us"]
    assert 3_000 <= stream["itl_us"]["p50"] <= 15_000, stream["itl_us"]


def test_a_request_timeout_ends_streams_as_timeouts(decoupled_triton, tmp_path):
    """stream16 takes 115 ms; at a 60 ms deadline every request times out, after its first responses
    (the transport's deadline, not a cancellation: the level's drain is not left waiting)."""
    summary = loadgen_run(decoupled_triton, "http", "stream16", tmp_path, "--concurrency-range", "2", "--request-timeout", "60")
    [level] = summary["levels"]
    assert level["client"]["request_count"] == 0 and level["errors"]["kinds"][0]["kind"] == "timeout"
    assert level["errors"]["latency_us"]["p50"] >= 60_000 and level["drain"]["unanswered"] == 0


def test_two_workers_stream_and_their_figures_merge(decoupled_triton, ray_cluster, tmp_path):
    summary = loadgen_run(decoupled_triton, "grpc", "stream16", tmp_path, "--workers", "2", "--ray-address", ray_cluster.address,
                          "--concurrency-range", "4", "-s", "100", "--goodput-ttft-ms", "1000")  # fmt: skip
    [level] = summary["levels"]
    client, stream, workers = level["client"], level["streaming"], level["workers"]
    assert [w["share"] for w in workers] == [2, 2] and all(w["request_count"] > 0 for w in workers)
    assert stream["request_count"] == client["request_count"] == sum(w["request_count"] for w in workers)
    assert stream["response_count"] == RESPONSES * stream["request_count"]
    assert stream["output_tokens"] == RESPONSES * TOKENS_PER_RESPONSE * stream["request_count"]
    # Rates summed over the workers, each over its own windows, as the throughput.
    assert stream["tokens_per_s"] == pytest.approx(client["throughput_infer_per_s"] * RESPONSES * TOKENS_PER_RESPONSE)
    assert stream["goodput_infer_per_s"] == pytest.approx(client["throughput_infer_per_s"])
    assert LatencyHistogram.from_dict(stream["ttft_histogram"]).count == stream["request_count"]
    assert 35_000 <= stream["ttft_us"]["p50"] <= 80_000 and 3_000 <= stream["itl_us"]["p50"] <= 15_000
    assert 1 <= len(stream["examples"]) <= 5
