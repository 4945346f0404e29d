"""Every earlier summary.json version (real files in tests/data/summaries, written by that version's
own code) read by loadgen report and loadgen compare, through the upgrade steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.cli import main
from loadgen.compare import compare_runs, comparison_lines
from loadgen.errors import UsageError
from loadgen.measurement import latency_breakdown_us
from loadgen.report.render import load_summary
from loadgen.options import build_config
from loadgen.result import SCHEMA_VERSION, RunResult
from loadgen.stats import REPORTED_PERCENTILES
from loadgen.summary_versions import (
    BREAKDOWN_CLIENT,
    BREAKDOWN_SERVER,
    METRICS_OPTIONS,
    OPTIONS_BEFORE_V3,
    STEPS,
    REPLAY_OPTIONS,
    ROOFLINE_OPTIONS,
    SHARED_MEMORY_OPTIONS,
    STREAMING_OPTIONS,
    UNRECORDED_MESSAGES,
    upgrade,
    v1_to_v2,
    v2_to_v3,
    v3_to_v4,
    v4_to_v5,
    v5_to_v6,
    v6_to_v7,
    v7_to_v8,
    v8_to_v9,
    v9_to_v10,
    v10_to_v11,
    v11_to_v12,
    v12_to_v13,
    v13_to_v14,
)

SUMMARIES = Path(__file__).resolve().parent / "data" / "summaries"
FIXTURES = sorted(path.parent for path in SUMMARIES.glob("v*/*/summary.json"))
# The nested-outer closed-loop runs, which share levels with the current run below.
CLOSED_LOOP = ["v1/closed-loop", "v2/metrics", "v2/capacity", "v3/metrics-sla", "v4/metrics-sla", "v4/percentile",
               "v6/closed-loop", "v7/goodput", "v8/profile-export"]


def _name(folder: Path) -> str:
    return str(folder.relative_to(SUMMARIES))


def _version(folder: Path) -> int:
    return int(folder.parent.name[1:])


def raw(name: str) -> dict:
    return json.loads((SUMMARIES / name / "summary.json").read_text())


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def current_run(nested_triton, tmp_path_factory) -> Path:
    """A report folder of this loadgen, on the same model and levels as the old closed-loop fixtures."""
    report = tmp_path_factory.mktemp("current") / "report"
    args = ["run", "-u", nested_triton.http, "-m", "nested-outer", "--concurrency-range", "1:2", "-p", "500", "-r", "3",
            "--report-dir", str(report)]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    return report


def test_there_are_fixtures_of_every_earlier_version_and_a_step_from_each():
    assert {_version(folder) for folder in FIXTURES} == set(range(1, SCHEMA_VERSION))
    assert set(STEPS) == set(range(1, SCHEMA_VERSION))
    for folder in FIXTURES:
        assert raw(_name(folder))["schema_version"] == _version(folder), _name(folder)


@pytest.mark.parametrize("folder", FIXTURES, ids=_name)
def test_every_fixture_upgraded_is_what_its_result_writes(folder):
    """The typed model holds all an upgraded summary records: read back and written again, it is the same dict."""
    data = upgrade(raw(_name(folder)), _name(folder))
    result = RunResult.from_dict(data)
    assert result.to_dict() == data
    assert result.upgraded_from == _version(folder) and result.started_ns == 0


@pytest.mark.parametrize("folder", FIXTURES, ids=_name)
def test_every_fixture_loads_in_the_current_shape(folder, current_run):
    data = load_summary(folder).to_dict()
    current = load_summary(current_run).to_dict()
    assert data["schema_version"] == SCHEMA_VERSION and data["upgraded_from"] == _version(folder)
    assert "upgraded_from" not in current
    assert set(data) == set(current) | {"upgraded_from"}
    assert set(data["config"]) == set(current["config"]) == set(build_config({}).to_dict())
    reference = current["levels"][0]
    for level in data["levels"]:
        assert set(level) == set(reference)
        assert set(level["client"]) == set(reference["client"])
        assert set(level["count_check"]) == set(reference["count_check"])
        assert set(level["errors"]) == set(reference["errors"])
        for window in level["windows"]:
            assert set(window) == set(reference["windows"][0])
    # The file itself is left as it was.
    assert raw(_name(folder))["schema_version"] == _version(folder)


# --- the steps, on the fixture dicts ---------------------------------------------------------


def test_v1_to_v2_computes_the_breakdown_as_a_run_does():
    # Where a version recorded its breakdown, the same arithmetic over its client and server figures gives it back.
    for folder in FIXTURES:
        for level in raw(_name(folder))["levels"] if _version(folder) >= 2 else []:
            client, server = level["client"], level["server"]
            derived = latency_breakdown_us(**{k: client[k] for k in BREAKDOWN_CLIENT}, **{k: server[k] for k in BREAKDOWN_SERVER})
            assert derived == pytest.approx(level["breakdown_us"]), _name(folder)
    old = raw("v1/closed-loop")
    new = v1_to_v2(old)
    for old_level, level in zip(old["levels"], new["levels"]):
        parts = level["breakdown_us"]
        assert parts["client_send"] == old_level["client"]["avg_send_us"]
        assert parts["server_queue"] == old_level["server"]["queue_us"]
        assert parts["network"] >= 0
        if parts["network"] > 0:  # then the parts add up to the average latency
            assert sum(parts.values()) == pytest.approx(old_level["client"]["avg_latency_us"])


def test_v1_to_v2_leaves_what_version_1_did_not_record_null():
    old = raw("v1/closed-loop")
    new = v1_to_v2(old)
    assert new["schema_version"] == 2 and "model_config" not in new
    assert new["environment"] is None and new["metrics_series"] is None and new["warnings"] == []
    assert new["model_configs"] == {"nested-outer": old["model_config"]}
    for level in new["levels"]:
        assert level["start_s"] is None and level["end_s"] is None and level["latency_curve_us"] is None
        assert level["metrics"] is None
        assert all(w["start_s"] is None and w["end_s"] is None for w in level["windows"])
    assert "model_config" in old and "breakdown_us" not in old["levels"][0]  # the input is not changed


def _names(tree: dict) -> tuple:
    return tree["name"], tuple(_names(child) for child in tree["composing"])


def test_v1_to_v2_rebuilds_the_model_tree_version_2_records():
    assert _names(v1_to_v2(raw("v1/closed-loop"))["model"]) == _names(raw("v2/metrics")["model"])
    assert v1_to_v2(raw("v1/errors"))["model"] == {"name": "flaky", "version": "1", "composing": []}


def test_v2_to_v3_groups_the_error_messages_by_kind():
    old = raw("v2/errors")
    new = v2_to_v3(old)
    assert new["config"]["headers"] == {"X-Team": None}
    for old_level, level in zip(old["levels"], new["levels"]):
        client, errors = old_level["client"], level["errors"]
        assert "error_messages" not in level["client"]
        assert errors["count"] == client["error_count"] > 5 and errors["latency_us"] is None
        assert level["error_rate"] == errors["rate"] == client["error_rate"]
        assert errors["per_s"] == pytest.approx(client["error_count"] / client["duration_s"])
        assert sum(kind["count"] for kind in errors["kinds"]) == client["error_count"]
        kinds = {kind["kind"]: kind for kind in errors["kinds"]}
        # flaky fails with HTTP 500; only the 5 messages version 2 kept can be told apart.
        assert kinds["HTTP 500"]["count"] == 5
        assert set(kinds["HTTP 500"]["messages"]) < set(client["error_messages"])
        assert kinds["other"]["messages"] == {UNRECORDED_MESSAGES: client["error_count"] - 5}


def test_v2_to_v3_judges_the_count_check_again_by_the_python_backend_rule():
    # flaky's Python backend counts each failed response as a success: version 2 called that a mismatch.
    old = raw("v2/errors")
    new = v2_to_v3(old)
    for old_level, level in zip(old["levels"], new["levels"]):
        check = level["count_check"]
        assert old_level["count_check"]["mismatch"] is True and check["mismatch"] is False
        assert check["client_errors"] == old_level["client"]["error_count"]
        assert check["server_success"] > check["client_success"]


def test_options_an_older_version_lacked_are_as_a_run_without_them():
    v1, early, late = raw("v1/closed-loop"), raw("v2/metrics"), raw("v2/request-rate-sla")
    assert not set(METRICS_OPTIONS) & set(v1["config"]) and set(METRICS_OPTIONS) <= set(early["config"])
    assert {option: v1_to_v2(v1)["config"][option] for option in METRICS_OPTIONS} == METRICS_OPTIONS
    assert "binary_search" not in early["config"] and v2_to_v3(early)["config"]["binary_search"] is False
    assert v2_to_v3(early)["config"]["slas"] == [] and v2_to_v3(late)["config"]["slas"] == late["config"]["slas"] == ["p99_ms<50"]
    for option, default in OPTIONS_BEFORE_V3.items():
        assert v2_to_v3(late)["config"][option] == late["config"].get(option, default)
    # As a run without them records them today (a later default is not made up for an older run).
    assert {option: build_config({}).to_dict()[option] for option in OPTIONS_BEFORE_V3} == OPTIONS_BEFORE_V3


def test_v2_to_v3_fills_sla_fields_only_where_early_version_2_lacked_them():
    early = v2_to_v3(raw("v2/metrics"))
    assert early["sla"] == [] and early["sla_passed"] is True and early["capacity"] is None
    assert all(level["open_loop"] is None and level["sla"] == [] for level in early["levels"])
    late_raw = raw("v2/request-rate-sla")
    late = v2_to_v3(late_raw)
    assert late["sla"] == late_raw["sla"] == ["p99_ms<50"]
    for old_level, level in zip(late_raw["levels"], late["levels"]):
        assert level["open_loop"] == old_level["open_loop"] is not None
        assert level["sla"] == old_level["sla"] != []
    assert v2_to_v3(raw("v2/capacity"))["capacity"] == raw("v2/capacity")["capacity"] is not None


@pytest.mark.parametrize(
    ("stop_reason", "status"),
    [(None, "complete"), ("interrupted", "interrupted"), ("failed: the server died", "failed"),
     ("latency 12 ms exceeded 10 ms at concurrency 2", "complete")],
)  # fmt: skip
def test_v2_to_v3_status_follows_the_stop_reason(stop_reason, status):
    old = raw("v2/metrics") | {"stop_reason": stop_reason}
    assert v2_to_v3(old)["status"] == status


def test_v3_to_v4_is_one_process_and_nothing_incomplete():
    new = v3_to_v4(raw("v3/request-rate"))
    assert new["config"]["workers"] is None and new["config"]["ray_address"] is None
    assert new["levels"] and all(level["incomplete"] is None and level["workers"] == [] for level in new["levels"])
    assert v3_to_v4(raw("v3/failed-run"))["levels"] == []


def test_v4_to_v5_window_latencies_are_known_only_where_latency_us_was_one():
    averaged = v4_to_v5(raw("v4/metrics-sla"))
    percentile = v4_to_v5(raw("v4/percentile"))
    nulls = {f"p{p}": None for p in REPORTED_PERCENTILES}
    for level in averaged["levels"]:
        assert level["latency_histogram"] is None and level["drain"] is None
        for window in level["windows"]:
            assert window["avg_latency_us"] == window["latency_us"] > 0
            assert window["percentile_latency_us"] == nulls
            assert window["stalled"] is False  # it had successes
            assert window["error_count"] is window["outstanding"] is window["oldest_outstanding_s"] is None
    for level in percentile["levels"]:
        for window in level["windows"]:
            assert window["avg_latency_us"] is None
            assert window["percentile_latency_us"] == nulls | {"p90": window["latency_us"]}


def test_v4_to_v5_a_window_without_a_success_has_no_latencies_and_may_have_stalled():
    old = raw("v4/errors")
    old["levels"][0]["windows"][0] |= {"request_count": 0, "throughput_infer_per_s": 0.0, "latency_us": 0.0}
    window = v4_to_v5(old)["levels"][0]["windows"][0]
    assert window["avg_latency_us"] is None and window["percentile_latency_us"] is None and window["stalled"] is None


def test_v4_to_v5_no_deadline_is_0():
    assert raw("v4/metrics-sla")["config"]["request_timeout_ms"] is None
    config = v4_to_v5(raw("v4/metrics-sla"))["config"]
    assert config["request_timeout_ms"] == 0 and config["connect_timeout_ms"] is None
    timed = raw("v4/metrics-sla")
    timed["config"]["request_timeout_ms"] = 500
    assert v4_to_v5(timed)["config"]["request_timeout_ms"] == 500
    assert load_summary(SUMMARIES / "v1" / "closed-loop").config.target.request_timeout_ms == 0  # version 1 had none


def test_the_workers_of_a_version_4_run_are_kept():
    data = load_summary(SUMMARIES / "v4" / "workers")
    assert [len(level.workers) for level in data.levels] == [2, 2]
    assert data.config.load.workers == 2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"schema_version": SCHEMA_VERSION + 1}, f"has schema version {SCHEMA_VERSION + 1}, newer than this loadgen reads"),
        ({"schema_version": "4"}, "is not a loadgen summary (schema_version '4')"),
        ({"schema_version": True}, "is not a loadgen summary"),
        ({"schema_version": 0}, "is not a loadgen summary"),
        ({"levels": []}, "is not a loadgen summary (schema_version None)"),
        ([1, 2], "is not a loadgen summary"),
        ({"schema_version": 2, "levels": []}, "is not a whole summary of schema version 2 (it has no "),
    ],
)
def test_what_cannot_be_read_is_a_usage_error(document, message):
    with pytest.raises(UsageError) as caught:
        upgrade(document, "x/summary.json")
    assert str(caught.value).startswith(f"x/summary.json {message}") and "\n" not in str(caught.value)


def test_a_current_summary_is_read_as_it_is(current_run):
    data = json.loads((current_run / "summary.json").read_text())
    assert upgrade(data, "summary.json") is data


# --- loadgen report and loadgen compare ------------------------------------------------------


@pytest.mark.parametrize("folder", FIXTURES, ids=_name)
def test_report_renders_every_version(folder, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    code, out, err = run(["report", str(copy)], capsys)
    assert code == 0 and err == ""
    assert out.strip() == f"Report: {copy / 'report.html'}"
    html = (copy / "report.html").read_text()
    assert f"summary.json upgraded from schema version {_version(folder)} to {SCHEMA_VERSION}" in html
    levels = raw(_name(folder))["levels"]
    plots = {path.name for path in (copy / "plots").iterdir()}
    assert ("throughput_latency.png" in plots) == bool(levels)
    for level in levels:
        assert f"{level['label']} {level['value']:g}" in html
    if "errors" in _name(folder):
        assert "<h3>Errors</h3>" in html and "HTTP 500" in html


def test_report_of_a_summary_newer_than_loadgen_is_one_line(tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "levels": []}))
    code, _, err = run(["report", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and err.rstrip().endswith("upgrade loadgen")


@pytest.mark.parametrize("folder", FIXTURES, ids=_name)
def test_compare_reads_every_version_against_itself(folder, capsys):
    code, out, err = run(["compare", str(folder), str(folder)], capsys)
    if not raw(_name(folder))["levels"]:  # the failed run measured nothing to compare
        assert code == 2 and "no level in common" in err and err.count("\n") == 1
        return
    assert code == 0 and err == ""
    assert out.splitlines()[-1].startswith("Result: no regression beyond 5%")
    comparison = compare_runs(load_summary(folder), load_summary(folder), 5.0)
    assert not comparison.regressions and comparison_lines(comparison)[-1].startswith("Result: no regression")


@pytest.mark.parametrize("name", CLOSED_LOOP)
def test_compare_an_old_version_with_a_current_run(name, current_run, capsys):
    old = SUMMARIES / name
    for baseline, candidate in ((old, current_run), (current_run, old)):
        code, out, err = run(["compare", str(baseline), str(candidate)], capsys)
        assert code in (0, 1) and err == "", err  # 1: the figures really differ beyond 5%
        lines = out.splitlines()
        assert lines[-1].startswith("Result: ") and any(line.split()[:3] == ["Concurrency", "1", "throughput"] for line in lines)
        assert (code == 1) == (not lines[-1].startswith("Result: no regression"))
    comparison = compare_runs(load_summary(old), load_summary(current_run), 5.0)
    assert [(level.label, level.value) for level in comparison.levels][0] == ("Concurrency", 1)


def test_v5_to_v6_gives_each_error_kind_its_code():
    for name, expected in (("v5/errors", {"HTTP 500": 500}), ("v5/stops-answering", {"timeout": None})):
        new = v5_to_v6(raw(name))
        kinds = {kind["kind"]: kind["code"] for level in new["levels"] for kind in level["errors"]["kinds"]}
        assert kinds == expected, name
    v3 = upgrade(raw("v3/errors"), "v3")  # grouped from messages alone, before codes were kept
    assert {kind["kind"]: kind["code"] for level in v3["levels"] for kind in level["errors"]["kinds"]} == {"HTTP 500": 500}


def test_v6_to_v7_measured_no_goodput():
    for name in ("v6/closed-loop", "v6/request-rate", "v6/errors"):
        old = raw(name)
        new = v6_to_v7(old)
        assert new["schema_version"] == 7 and new["config"]["goodput_latency_ms"] is None
        assert new["levels"] and all(level["client"]["goodput_infer_per_s"] is None for level in new["levels"])
        assert all(window["goodput_infer_per_s"] is None for level in new["levels"] for window in level["windows"])
        assert "goodput_latency_ms" not in old["config"]  # the input is not changed
        read = load_summary(SUMMARIES / name)
        assert read.upgraded_from == 6 and read.config.gates.goodput_latency_ms is None
        assert all(level.client.goodput_infer_per_s is None for level in read.levels)


def test_v7_to_v8_wrote_no_profile_export():
    for name in ("v7/goodput", "v7/errors"):
        old = raw(name)
        new = v7_to_v8(old)
        assert new["schema_version"] == 8 and new["config"]["profile_export_file"] is None
        assert "profile_export_file" not in old["config"]  # the input is not changed
        assert new["levels"] == old["levels"]
        read = load_summary(SUMMARIES / name)
        assert read.upgraded_from == 7 and read.config.outputs.profile_export_file is None
        assert read.config.gates.goodput_latency_ms is not None  # what version 7 recorded is kept


def test_v8_to_v9_traced_nothing():
    old = raw("v8/profile-export")
    new = v8_to_v9(old)
    assert new["schema_version"] == 9
    assert (new["config"]["trace_level"], new["config"]["trace_rate"]) == ("OFF", None)
    assert new["levels"] and all(level["tracing"] is None and level["tail_attribution"] is None for level in new["levels"])
    assert "trace_level" not in old["config"] and "tracing" not in old["levels"][0]  # the input is not changed
    read = load_summary(SUMMARIES / "v8/profile-export")
    assert read.upgraded_from == 8 and not read.config.outputs.tracing
    assert all(level.tracing is None for level in read.levels)
    assert read.config.outputs.profile_export_file is not None  # what version 8 recorded is kept


def test_v9_to_v10_kept_no_timeline_of_a_request():
    old = raw("v9/traced")
    new = v9_to_v10(old)
    assert new["schema_version"] == 10
    for old_level, level in zip(old["levels"], new["levels"], strict=True):
        assert level["tracing"] == old_level["tracing"] | {"slowest": None}
        assert level["tail_attribution"] == old_level["tail_attribution"]
    assert "slowest" not in old["levels"][0]["tracing"]  # the input is not changed
    untraced = v9_to_v10(v8_to_v9(raw("v8/profile-export")))
    assert untraced["levels"] and all(level["tracing"] is None for level in untraced["levels"])
    read = load_summary(SUMMARIES / "v9/traced")
    tracing = read.levels[0].tracing
    assert read.upgraded_from == 9 and tracing.slowest is None
    # What version 9 recorded is kept: the stalling stage named first, its p99 from every traced request.
    assert tracing.traces == read.levels[0].client.request_count == 229
    assert (tracing.tail.shares[0].model, tracing.tail.shares[0].part) == ("middle", "compute_infer")
    infer = next(stage for stage in tracing.stages if (stage.model, stage.part) == ("middle", "compute_infer"))
    assert infer.traces == 229 and infer.p99_us > 45_000


def test_the_report_of_a_version_9_traced_run_shows_its_traces_without_a_waterfall(tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(SUMMARIES / "v9/traced", copy)
    code, _, err = run(["report", str(copy)], capsys)
    assert code == 0 and err == ""
    html = (copy / "report.html").read_text()
    assert "<h2>Traces: where the time goes</h2>" in html and "<h3>Tail attribution</h3>" in html
    assert "Not recorded: summary.json before version 10 kept no request's timeline." in html and "<svg" not in html
    assert (copy / "plots" / "stage_percentiles.png").is_file()


def test_v10_to_v11_streamed_nothing():
    old = raw("v10/traced")
    new = v10_to_v11(old)
    assert new["schema_version"] == 11
    assert {key: new["config"][key] for key in STREAMING_OPTIONS} == STREAMING_OPTIONS == {
        "streaming": False, "token_output": None, "goodput_ttft_ms": None, "goodput_itl_ms": None, "prompt_tokens": None,
        "max_tokens": None}
    assert new["levels"] and all(level["streaming"] is None for level in new["levels"])
    assert "streaming" not in old["levels"][0] and "streaming" not in old["config"]  # the input is not changed
    read = load_summary(SUMMARIES / "v10/traced")
    assert read.upgraded_from == 10 and all(level.streaming is None for level in read.levels)
    assert not read.config.target.streaming and read.config.target.token_output is None
    assert read.config.gates.goodput_ttft_ms is None and read.config.gates.goodput_itl_ms is None
    # What version 10 recorded is kept: each level's slowest traced request, and its goodput bound.
    assert all(level.tracing.slowest is not None and level.tracing.slowest.spans for level in read.levels)
    assert read.config.gates.goodput_latency_ms == 50 and all(level.client.goodput_infer_per_s for level in read.levels)


def test_v11_to_v12_drove_one_model_replayed_nothing_and_merged_three_windows():
    old = raw("v11/streaming")
    new = v11_to_v12(old)
    assert new["schema_version"] == 12 and new["mix"] is None
    assert {key: new["config"][key] for key in REPLAY_OPTIONS} == REPLAY_OPTIONS == {
        "schedule_file": None, "replay_speed": 1.0, "replay_loop": False}
    assert new["levels"] and all(level["merged_windows"] == min(3, len(level["windows"])) for level in new["levels"])
    assert "mix" not in old and "merged_windows" not in old["levels"][0]  # the input is not changed


def test_v12_to_v13_sent_the_tensors_in_the_requests():
    old = raw("v12/closed-loop")
    new = v12_to_v13(old)
    assert new["schema_version"] == 13
    assert {key: new["config"][key] for key in SHARED_MEMORY_OPTIONS} == {"shared_memory": "none", "output_shared_memory_size": 102400}
    assert "shared_memory" not in old["config"]  # the input is not changed


def test_v13_to_v14_placed_no_model_on_a_roofline_and_kept_no_batch_statistics():
    old = raw("v13/closed-loop")
    new = v13_to_v14(old)
    assert new["schema_version"] == 14 and new["roofline"] is None
    assert {key: new["config"][key] for key in ROOFLINE_OPTIONS} == {"model_flops": {}, "peak_tflops": None,
                                                                     "peak_bandwidth_gbs": None, "no_roofline": False}
    servers = [level["server"] for level in new["levels"]]
    while servers:
        server = servers.pop()
        assert server["batches"] is None
        servers += server["composing"]
    assert "roofline" not in old and "batches" not in old["levels"][0]["server"]  # the input is not changed
    read = load_summary(SUMMARIES / "v13/closed-loop")
    assert read.upgraded_from == 13 and read.roofline is None and read.config.outputs.model_flops == {}
    assert all(figures.batches is None for level in read.levels for figures in (level.server, *level.server.walk()))
