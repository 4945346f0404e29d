"""loadgen tune end to end (issue 15) on the tunable test ensemble, whose best configuration is known
by construction (tests/model_repos/tunable: batcher sleeps 20 ms per batch, worker 5 ms per request),
and the pure parts: knobs, a candidate's figures from its run, the ranked table."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, triton_pids
from results import level, run, server

from loadgen.errors import UsageError
from loadgen.knobs import (
    KnobSpace,
    StageSettings,
    apply_settings,
    default_space,
    narrow_space,
    parse_pbtxt,
    settings_of,
    to_pbtxt,
)
from loadgen.report.tune_console import ranked_table
from loadgen.capacity import CapacityPlan
from loadgen.tune_result import LOAD_FAILED, MEASURED, CandidateResult, TuneResult
from loadgen.tuner import candidate_figures

TUNABLE = ROOT / "tests" / "model_repos" / "tunable"
# Short windows: the test ensemble's figures are sleeps, steady from the first window.
LOAD = ["--model-repository", str(TUNABLE), "-m", "tunable", "--sla", "p99_ms<100", "--concurrency-range", "1:32",
        "-p", "400", "-s", "40"]  # fmt: skip


def loadgen(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=timeout_s)


def batcher_config():
    return parse_pbtxt((TUNABLE / "batcher" / "config.pbtxt").read_text(), "batcher")


# --- knobs ---------------------------------------------------------------------------------------


def test_settings_round_trip_through_a_configuration_and_keep_everything_else():
    config = batcher_config()
    wanted = StageSettings(3, True, 2000, (4,), 8)
    changed = apply_settings(config, wanted)
    assert settings_of(changed) == wanted
    assert changed.input == config.input and changed.name == "batcher"
    assert settings_of(parse_pbtxt(to_pbtxt(changed), "written")) == wanted
    off = apply_settings(changed, StageSettings(1, False, 0, (), 8))
    assert not off.HasField("dynamic_batching") and settings_of(off) == StageSettings(1, False, 0, (), 8)


def test_triton_s_fill_in_of_the_preferred_size_is_the_same_setting():
    assert StageSettings(1, True, 0, (8,), 8).normalized() == StageSettings(1, True, 0, (), 8)
    assert StageSettings(1, False, 500, (4,), 8).normalized() == StageSettings(1, False, 0, (), 8)


def test_the_default_space_and_its_settings():
    space = default_space(batcher_config(), ensemble_max_batch_size=8, max_instances=2)
    assert space.instances == (1, 2) and space.dynamic_batching == (False, True)
    settings = space.settings()
    # Without batching the delays collapse into one setting: 2 x (1 + 3 delays).
    assert len(settings) == 8 and len(set(settings)) == 8
    assert KnobSpace((1,), (True,), (0,), ((16,),), (8,)).settings() == []  # a preferred size above the maximum


def test_knobs_narrow_the_space_and_bad_ones_say_what_is_wrong():
    configs = {"batcher": batcher_config(), "worker": batcher_config()}
    spaces = {model: default_space(config, 8) for model, config in configs.items()}
    narrowed = narrow_space(spaces, {"worker": {"instances": [1, 3], "dynamic_batching": False}}, configs, 8)
    assert narrowed["worker"].instances == (1, 3) and narrowed["worker"].dynamic_batching == (False,)
    assert narrowed["batcher"] == spaces["batcher"]
    bad = {
        "not a composing model": {"wroker": {"instances": 2}},
        "is not a knob: did you mean instances": {"worker": {"instance": 2}},
        "below the ensemble's 8": {"worker": {"max_batch_size": [4]}},
        "integers from 1": {"worker": {"instances": [0]}},
        "true or false": {"worker": {"dynamic_batching": "yes"}},
    }
    for message, knobs in bad.items():
        with pytest.raises(UsageError, match=message):
            narrow_space(spaces, knobs, configs, 8)


# --- a candidate's figures and the table ----------------------------------------------------------


SEARCH = {"sla": ["p99_ms<100"], "binary-search": True, "concurrency-range": "1:8"}


def test_a_candidate_s_figures_come_from_its_run_s_capacity_level():
    stages = [server("batcher", queue_us=30_000, compute_infer_us=20_000), server("worker", queue_us=100, compute_infer_us=5_000)]
    levels = [level(value, server_figures=server("tunable", composing=stages)) for value in (1, 8)]
    result = run(*levels, options=SEARCH, capacity=CapacityPlan("Concurrency: 8", 8, 100.0, None, 0.0, None))  # fmt: skip
    figures = candidate_figures(result)
    assert figures["outcome"] == MEASURED and figures["throughput_infer_per_s"] == 100.0 and figures["level_value"] == 8
    assert figures["stage_time_us"]["batcher"] == pytest.approx(30_000 + 300 + 20_000 + 90)
    assert figures["stage_time_us"]["worker"] == pytest.approx(100 + 300 + 5_000 + 90)
    assert figures["p99_ms"] == pytest.approx(levels[1].client.percentile_latency_us[99] / 1e3)
    assert figures["spread"] == pytest.approx(0.0)
    unmet = candidate_figures(run(*levels, options=SEARCH, stop_reason="no stable measurement already at concurrency 1"))
    assert unmet["outcome"] != MEASURED and "throughput_infer_per_s" not in unmet and unmet["stage_time_us"]
    assert unmet["message"] == "no stable measurement already at concurrency 1"


def test_the_table_ranks_by_mean_throughput_and_marks_the_default_and_the_best():
    settings = (("batcher", StageSettings(1, False, 0, (), 8)),)
    candidates = (
        CandidateResult(0, settings, {}, MEASURED, throughput_infer_per_s=50.0, level_value=4, p99_ms=80.0),
        CandidateResult(1, settings, {}, MEASURED, throughput_infer_per_s=200.0, level_value=16, p99_ms=90.0,
                        remeasured_infer_per_s=(180.0, 190.0)),  # fmt: skip
        CandidateResult(2, settings, {}, LOAD_FAILED, message="Triton said no"),
    )
    result = TuneResult("tunable", "guided", {}, candidates, best=1)
    assert TuneResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    head, first, second, third = ranked_table(result)
    assert first.startswith(">   1") and "190.0" in first and " 3 " in first
    assert second.startswith(" *  0") and third.rstrip().endswith("failed to load")


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_guided_search_finds_3x_the_default_and_its_repository_reproduces_it(tmp_path):
    tune_dir = tmp_path / "tune"
    done = loadgen("tune", *LOAD, "--max-candidates", "6", "--remeasure", "2", "--report-dir", str(tune_dir))
    assert done.returncode == 0, done.stderr
    result = json.loads((tune_dir / "tune.json").read_text())
    assert result["status"] == "complete" and result["search"] == "guided"
    default, best = result["default"], result["best"]
    assert best["throughput"] >= 3 * default["throughput"], (default, best)
    assert best["p99_ms"] < 100
    assert best["configs"]["batcher"]["dynamic_batching"]  # batching is what multiplies batcher
    candidates = result["candidates"]
    assert [c["index"] for c in candidates] == list(range(len(candidates))) and len(candidates) <= 6
    assert all((tune_dir / c["run_dir"] / "summary.json").exists() for c in candidates if c["outcome"] != "failed to load")
    assert sum(1 for c in candidates if c["remeasured_infer_per_s"]) == 2
    assert "Best: [" in done.stdout and "*  0" in done.stdout
    assert (tune_dir / "tune.html").stat().st_size and (tune_dir / "plots" / "tune.png").stat().st_size
    # The deployable repository reproduces the best figure at its level (loosely: the machine drifts).
    chosen = candidates[best["index"]]
    report = tmp_path / "again"
    again = loadgen("run", "--model-repository", str(tune_dir / "best" / "model_repository"), "-m", "tunable",
                    "--concurrency-range", f"{chosen['level_value']:g}", "-p", "1000", "-s", "40", "--report-dir", str(report))  # fmt: skip
    assert again.returncode == 0, again.stderr
    throughput = json.loads((report / "summary.json").read_text())["levels"][0]["client"]["throughput_infer_per_s"]
    assert throughput == pytest.approx(best["throughput"], rel=0.35)


@pytest.mark.slow
def test_grid_search_is_ordered_bounded_and_resumes_without_measuring_again(tmp_path):
    knobs = tmp_path / "knobs.yaml"
    knobs.write_text("batcher: {instances: 1, dynamic_batching: [false, true], max_queue_delay_us: 0}\n"
                     "worker: {instances: [1, 2], dynamic_batching: false}\n")  # fmt: skip
    tune_dir = tmp_path / "tune"
    common = ["tune", *LOAD, "--search", "grid", "--knobs", str(knobs), "--remeasure", "0", "--report-dir", str(tune_dir)]
    first = loadgen(*common, "--max-candidates", "2")
    assert first.returncode == 0, first.stderr
    before = json.loads((tune_dir / "tune.json").read_text())["candidates"]
    assert len(before) == 2 and "--max-candidates 2 reached" in first.stdout
    resumed = loadgen(*[arg for arg in common if arg not in ("--report-dir", str(tune_dir))], "--resume", str(tune_dir),
                      "--max-candidates", "4")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tune_dir / "tune.json").read_text())
    keys = [c["key"] for c in result["candidates"]]
    assert keys[:2] == [c["key"] for c in before] and len(keys) == 4 == len(set(keys))
    assert result["candidates"][:2] == before  # replayed, not measured again
    assert "measuring" not in resumed.stdout.split("[2] measuring")[0]
    best = result["candidates"][result["best"]["index"]]["settings"]
    assert best["batcher"]["dynamic_batching"] and best["worker"]["instances"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "tunable", "--model-repository", str(TUNABLE)], "tune needs a bound"),
        ([*LOAD, "--time-budget", "0"], "--time-budget must be a positive"),
        ([*LOAD, "--max-candidates", "0"], "--max-candidates must be at least 1"),
        ([*LOAD, "-f", "out.csv"], "-f does not apply to tune"),
        ([*LOAD, "--concurrency-range", "8"], "tune searches a range"),
        (["-m", "tunable", "-u", "127.0.0.1:1", "--sla", "p99_ms<100"], "add --yes-reload-models"),
        ([*LOAD, "--knobs", "/nonexistent/knobs.yaml"], "--knobs /nonexistent/knobs.yaml"),
        (["-m", "nosuch", "--model-repository", str(TUNABLE), "--sla", "p99_ms<100"], "nosuch"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    done = loadgen("tune", *args, "--report-dir", str(tmp_path / "tune"), timeout_s=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2


def test_an_unknown_knob_is_one_line_and_exit_2_after_reading_the_models(tmp_path):
    knobs = tmp_path / "knobs.yaml"
    knobs.write_text("worker: {instance: [1, 2]}\n")
    done = loadgen("tune", *LOAD, "--knobs", str(knobs), "--report-dir", str(tmp_path / "tune"), timeout_s=120)
    assert done.returncode == 2 and "did you mean instances" in done.stderr, done.stderr


def test_a_remote_server_without_explicit_model_control_is_refused_and_an_unreachable_one_is_exit_3(stalling_triton, tmp_path):
    refused = loadgen("tune", "-u", stalling_triton.http, "-m", "stalling-ensemble", "--sla", "p99_ms<100",
                      "--yes-reload-models", "--report-dir", str(tmp_path / "a"), timeout_s=120)  # fmt: skip
    assert refused.returncode == 2 and "--model-control-mode=explicit" in refused.stderr, refused.stderr
    gone = loadgen("tune", "-u", "127.0.0.1:1", "-m", "tunable", "--sla", "p99_ms<100", "--yes-reload-models",
                   "--report-dir", str(tmp_path / "b"), timeout_s=120)  # fmt: skip
    assert gone.returncode == 3, gone.stderr


@pytest.mark.slow  # 17 s
def test_sigint_keeps_the_candidates_measured_and_stops_the_server(tmp_path):
    tune_dir, repository = tmp_path / "tune", tmp_path / "tunable"
    shutil.copytree(TUNABLE, repository)  # its own path: other servers of the test ensemble are not this one
    load = [str(repository) if arg == str(TUNABLE) else arg for arg in LOAD]
    process = subprocess.Popen([sys.executable, "-m", "loadgen", "tune", *load, "--report-dir", str(tune_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for line in process.stdout:  # a line per candidate started and finished
            if line.startswith("[1] measuring"):
                break
        time.sleep(1.0)  # into candidate 1's measurement
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == 130, err
    result = json.loads((tune_dir / "tune.json").read_text())
    assert result["status"] == "interrupted" and result["stop_reason"] == "interrupted by SIGINT"
    assert result["candidates"][0]["outcome"] == "measured" and result["default"]["throughput"] > 0
    assert "loadgen: interrupted by SIGINT" in err and "Traceback" not in err
    assert not triton_pids(repository)
