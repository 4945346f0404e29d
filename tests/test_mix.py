"""Several models at once (issue 17): the scenario's `models:` list (pure), then mixes driven against
the real embedded server (tests/model_repos/echo) and a server given with -u (the decoupled models,
streamed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from loadgen.errors import UsageError
from loadgen.mix import build_mix
from loadgen.options import load_config_file, read_scenario

ECHO = ROOT / "tests" / "model_repos" / "echo"
FILE = Path("mix.yaml")


def mix(top=None, flags=None, *models):
    return build_mix(top or {}, flags or {}, models, FILE)


def test_each_model_takes_the_top_then_the_flags_then_its_own_keys():
    built = mix({"measurement-interval": 800, "protocol": "http", "concurrency-range": "1:2"}, {"protocol": "grpc", "url": "h:1"},
                {"model-name": "a"}, {"model-name": "b", "protocol": "http", "request-rate-range": "10:20:10"})  # fmt: skip
    a, b = built.runs
    assert built.names == ["a", "b"]
    assert (a.target.protocol, b.target.protocol) == ("grpc", "http")  # the flag over the top, the item over the flag
    assert a.windows.interval_ms == b.windows.interval_ms == 800 and a.target.url == b.target.url == "h:1"
    assert a.load.request_rate_range is None and b.load.request_rate_range is not None  # b's own load replaces the top's
    assert [built.values(index) for index in range(built.level_count)] == [[1, 10], [2, 20]]


def test_a_model_with_one_level_holds_it_at_every_level():
    built = mix({}, {}, {"model-name": "a", "concurrency-range": "1:3"}, {"model-name": "b", "request-rate-range": "50"})
    assert [built.values(index) for index in range(built.level_count)] == [[1, 50], [2, 50], [3, 50]]


@pytest.mark.parametrize(("top", "models", "message"), [
    ({}, [{"model-name": "a", "measurement-interval": 500}],
     "config file mix.yaml: models[0] sets measurement-interval, which applies to the whole run (one server, one clock): "
     "set it at the top of the file or as a flag"),
    ({}, [{"model-name": "a"}, {"concurrency-range": "2"}], "config file mix.yaml: models[1] has no model-name: name the model it drives"),
    ({}, [{"model-name": "a"}, {"model-name": "a"}], "config file mix.yaml: model a is listed twice in models: give each model once"),
    ({}, [{"model-name": "a", "concurrency-range": "1:3"}, {"model-name": "b", "concurrency-range": "1:2"}],
     "the models' ranges step together, level by level, but have different numbers of levels (a 3, b 2): give each the "
     "same number, or one value that holds for every level"),
    ({"sla": ["c:p99_ms<5"]}, [{"model-name": "a"}, {"model-name": "b"}],
     "--sla 'c:p99_ms<5' names model c, which is not in the mix (a, b): prefix it with one of them, or drop the prefix to "
     "apply it to each"),
    ({"binary-search": True}, [{"model-name": "a"}],
     "--binary-search bisects one model's range: it does not apply to several models at once; drop it or drive one model"),
    ({}, [{"model-name": "a", "concurrency-range": "1:0"}],
     "model a: an open-ended --concurrency-range (end 0) needs -l/--latency-threshold or --sla to stop it"),
    ({"latency-threshold": 5}, [{"model-name": "a", "concurrency-range": "1:0"}],
     "a: an open-ended --concurrency-range (end 0) does not step with the other models: give it an end"),
    ({}, [{"model-name": "a", "batch-size": 0}], "model a: batch size must be at least 1, got 0: fix -b"),
])  # fmt: skip
def test_a_mix_that_cannot_run_is_one_line(top, models, message):
    with pytest.raises(UsageError) as raised:
        mix(top, {}, *models)
    assert str(raised.value) == message


def test_slas_apply_to_each_model_or_to_the_one_they_name():
    built = mix({"sla": ["b:p50_ms<5"]}, {"sla": ["p99_ms<50", "a:centernet.compute_infer_ms<10"]},
                {"model-name": "a"}, {"model-name": "b", "sla": ["error_rate<0.01"]})  # fmt: skip
    a, b = ([sla.expression for sla in run.gates.slas] for run in built.runs)
    assert a == ["p99_ms<50", "centernet.compute_infer_ms<10"]  # the flags' --sla replace the file's, as for one model
    assert b == ["p99_ms<50", "error_rate<0.01"]
    (b,) = mix({"sla": ["b:p50_ms<5", "p99_ms<50"]}, {}, {"model-name": "b"}).runs
    assert [sla.expression for sla in b.gates.slas] == ["p50_ms<5", "p99_ms<50"]


def test_a_scenario_lists_its_models_and_tune_refuses_them(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("measurement-interval: 500\nmodels:\n  - model-name: a\n    concurrency_range: 1:2\n  - {model-name: b}\n")
    scenario = read_scenario(path)
    assert scenario.options == {"measurement-interval": 500}
    assert scenario.models == ({"model-name": "a", "concurrency-range": "1:2"}, {"model-name": "b"})
    with pytest.raises(UsageError, match="lists models: several models at once are for loadgen run"):
        load_config_file(path)
    path.write_text("models: {model-name: a}\n")
    with pytest.raises(UsageError, match=r"models must be a list of mappings, one per model"):
        read_scenario(path)
    path.write_text("models:\n  - model-name: a\n    concurency-range: 2\n")
    with pytest.raises(UsageError, match=r"models\[0\] has unknown key 'concurency-range': did you mean concurrency-range\?"):
        read_scenario(path)


def loadgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "run", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_two_models_at_different_rates_each_get_their_rate_on_one_clock_from_two_workers(ray_cluster, tmp_path):
    scenario = tmp_path / "mix.yaml"
    scenario.write_text("measurement-interval: 1000\nstability-percentage: 50\nmax-trials: 5\nmodels:\n"
                        "  - {model-name: ident, request-rate-range: 120}\n"
                        "  - {model-name: echo_bytes, request-rate-range: 30, sla: [p99_ms<1000]}\n")  # fmt: skip
    report = tmp_path / "report"
    run = loadgen("--config", str(scenario), "--model-repository", str(ECHO), "--sla", "ident:error_rate<0.01",
                  "--workers", "2", "--ray-address", ray_cluster.address, "--report-dir", str(report))  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads((report / "summary.json").read_text())
    assert summary["levels"] == [] and summary["sla_passed"]
    parts = {part["config"]["model_name"]: part for part in summary["mix"]}
    assert list(parts) == ["ident", "echo_bytes"]
    for name, rate in (("ident", 120), ("echo_bytes", 30)):
        (level,) = parts[name]["levels"]
        seconds = sum(window["duration_s"] for window in level["windows"][-3:])
        server_rate = level["server"]["success_count"] / seconds
        assert server_rate == pytest.approx(rate, rel=0.05), (name, server_rate)
        assert level["client"]["throughput_infer_per_s"] == pytest.approx(rate, rel=0.05)
        assert [worker["throughput_infer_per_s"] for worker in level["workers"]] == pytest.approx([rate / 2] * 2, rel=0.1)
    ident, echo = parts["ident"]["levels"][0], parts["echo_bytes"]["levels"][0]
    # One clock: both models' windows opened and closed together.
    assert [w["start_s"] for w in ident["windows"]] == [w["start_s"] for w in echo["windows"]]
    assert [w["end_s"] for w in ident["windows"]] == [w["end_s"] for w in echo["windows"]]
    assert [verdict["expression"] for verdict in ident["sla"]] == ["error_rate<0.01"]
    assert [verdict["expression"] for verdict in echo["sla"]] == ["p99_ms<1000"]


def test_a_mix_streams_against_a_server_given_with_u(decoupled_triton, tmp_path):
    scenario = tmp_path / "mix.yaml"
    scenario.write_text("streaming: true\nmeasurement-mode: time_windows\nmeasurement-interval: 800\nstability-percentage: 60\n"
                        "shape: ['IN:2']\nmodels:\n"
                        "  - {model-name: stream16, concurrency-range: '1:2'}\n"
                        "  - {model-name: stream-echo, request-rate-range: 20}\n")  # fmt: skip
    report = tmp_path / "report"
    run = loadgen("--config", str(scenario), "-u", decoupled_triton.grpc, "-i", "grpc", "--report-dir", str(report))
    assert run.returncode == 0, run.stderr
    summary = json.loads((report / "summary.json").read_text())
    stream16, echo = ({level["value"]: level for level in part["levels"]} for part in summary["mix"])
    assert set(stream16) == {1, 2} and set(echo) == {20}  # echo held its rate at both levels
    for level in stream16.values():
        assert level["streaming"]["responses_per_request"] == pytest.approx(16)
        assert 30_000 < level["streaming"]["ttft_us"]["p50"] < 80_000
    assert all(level["streaming"]["responses_per_request"] == pytest.approx(4) for level in summary["mix"][1]["levels"])


def test_a_recording_shared_by_a_mix_names_each_lines_model(tmp_path):
    from loadgen.mix import prepare_mix

    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"offset_ms": 0, "model": "a"}\n{"offset_ms": 5, "model": "b", "batch_size": 2}\n{"offset_ms": 9}\n')
    both = mix({"schedule-file": str(trace)}, {}, {"model-name": "a"}, {"model-name": "b"})
    with pytest.raises(UsageError, match=r"line 3 names no model, and a, b replay the file: give each line its model"):
        prepare_mix(both)
    trace.write_text('{"offset_ms": 0, "model": "a"}\n{"offset_ms": 5, "model": "a"}\n')
    with pytest.raises(UsageError, match=r"has no line for model b: give it lines, or give that model a load of its own"):
        prepare_mix(both)
    trace.write_text('{"offset_ms": 0, "model": "a"}\n{"offset_ms": 5, "model": "b", "batch_size": 2}\n')
    a, b = prepare_mix(mix({"schedule-file": str(trace)}, {}, {"model-name": "a"}, {"model-name": "b"},
                           {"model-name": "c", "concurrency-range": "2"})).runs[:2]  # fmt: skip
    assert a.load.replay is b.load.replay and (a.inputs.batch_size, b.inputs.batch_size) == (1, 2)


def test_a_mix_replays_each_models_lines_on_one_clock(tmp_path):
    lines = [{"offset_ms": 10 * i, "model": "ident"} for i in range(120)] + [
        {"offset_ms": 25 * i + 3, "model": "echo_bytes"} for i in range(40)]
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    scenario = tmp_path / "mix.yaml"
    scenario.write_text(f"schedule-file: {trace}\nmeasurement-interval: 500\nmodels:\n  - {{model-name: ident}}\n"
                        "  - {model-name: echo_bytes}\n")  # fmt: skip
    report = tmp_path / "report"
    run = loadgen("--config", str(scenario), "--model-repository", str(ECHO), "--report-dir", str(report))
    assert run.returncode == 0, run.stderr
    ident, echo = (part["levels"] for part in json.loads((report / "summary.json").read_text())["mix"])
    assert [len(ident), len(echo)] == [1, 1]
    for (level,), count in ((ident, 120), (echo, 40)):  # every line to its model, the whole recording merged
        assert level["client"]["request_count"] == level["server"]["success_count"] == count
        assert level["merged_windows"] == len(level["windows"]) >= 2


def test_a_mix_exports_each_models_requests_and_replays_them(echo_triton, tmp_path):
    scenario = tmp_path / "mix.yaml"
    scenario.write_text("measurement-mode: time_windows\nmeasurement-interval: 300\nmax-trials: 3\nstability-percentage: 100\n"
                        "models:\n  - {model-name: ident, concurrency-range: '1:2'}\n"
                        "  - {model-name: echo_bytes, request-rate-range: '40:60:20'}\n")  # fmt: skip
    report, export = tmp_path / "report", tmp_path / "out" / "export.json"
    export.parent.mkdir()
    run = loadgen("--config", str(scenario), "-u", echo_triton.http, "--report-dir", str(report), "--profile-export-file", str(export))
    assert run.returncode == 0, run.stderr
    assert [path.name for path in export.parent.iterdir()] == ["export.json"]  # no spool left
    experiments = json.loads(export.read_text())["experiments"]
    parts = json.loads((report / "summary.json").read_text())["mix"]
    names = [part["config"]["model_name"] for part in parts]
    assert [experiment["model"] for experiment in experiments] == ["ident", "echo_bytes"] * 2  # level by level
    assert [experiment["experiment"] for experiment in experiments] == [
        {"mode": "concurrency", "value": 1}, {"mode": "request_rate", "value": 40.0},
        {"mode": "concurrency", "value": 2}, {"mode": "request_rate", "value": 60.0}]  # fmt: skip
    for index, experiment in enumerate(experiments):
        level = parts[index % 2]["levels"][index // 2]
        assert len(experiment["requests"]) == level["client"]["request_count"] + level["client"]["error_count"] > 0
        assert len(experiment["window_boundaries"]) == len(level["windows"]) + 1 == level["merged_windows"] + 1
    for ident, echo in (experiments[0:2], experiments[2:4]):  # one clock: the models' windows closed together
        assert ident["window_boundaries"] == echo["window_boundaries"]
    schedule = subprocess.run([sys.executable, "-m", "loadgen", "export-schedule", str(report)], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert schedule.returncode == 0, schedule.stderr
    lines = [json.loads(line) for line in schedule.stdout.splitlines()]
    for name in names:
        assert sum(line["model"] == name for line in lines) == sum(len(e["requests"]) for e in experiments if e["model"] == name)
    trace = tmp_path / "trace.jsonl"
    trace.write_text(schedule.stdout)
    scenario.write_text(f"schedule-file: {trace}\nmeasurement-interval: 500\nmodels:\n  - {{model-name: ident}}\n"
                        "  - {model-name: echo_bytes}\n")  # fmt: skip
    replayed, replayed_export = tmp_path / "replayed", tmp_path / "replayed.json"
    run = loadgen("--config", str(scenario), "-u", echo_triton.http, "--report-dir", str(replayed),
                  "--profile-export-file", str(replayed_export))  # fmt: skip
    assert run.returncode == 0, run.stderr
    for part in json.loads((replayed / "summary.json").read_text())["mix"]:
        (level,) = part["levels"]
        assert level["client"]["request_count"] == sum(line["model"] == part["config"]["model_name"] for line in lines)
    # Each model's requests due at their recorded offsets, to the ns, from its load's start (the
    # models' loads start one after the other, so not to the ns across models).
    sent = [(e["model"], r["intended_timestamp"]) for e in json.loads(replayed_export.read_text())["experiments"] for r in e["requests"]]
    for name in names:
        intended_ns = sorted(at_ns for model, at_ns in sent if model == name)
        recorded_ns = sorted(round(line["offset_ms"] * 1e6) for line in lines if line["model"] == name)
        assert [at_ns - intended_ns[0] for at_ns in intended_ns] == [at_ns - recorded_ns[0] for at_ns in recorded_ns]
