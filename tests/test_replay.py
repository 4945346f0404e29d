"""Replaying a recording (--schedule-file): the file read into a plan, its checks, the schedule's
times and inputs, its split among workers, and a run's export turned into one (no server)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from time import monotonic_ns

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadgen.config import prepare
from loadgen.errors import UsageError
from loadgen.options import build_config
from loadgen.replay import (
    ReplayEntry,
    ReplayPlan,
    check_duration,
    check_inputs,
    check_models,
    read_schedule,
    replay_batch_size,
)
from loadgen.schedule import ReplaySchedule
from loadgen.schedule_export import export_source, schedule_lines
from loadgen.workers.split import split_schedule


def write(tmp_path, lines, name="trace.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def plan_of(offsets_ms, **fields):
    entries = tuple(ReplayEntry(round(ms * 1e6), fields.get("model"), fields.get("input"), fields.get("batch_size"), n + 1)
                    for n, ms in enumerate(offsets_ms))  # fmt: skip
    return ReplayPlan("trace.jsonl", entries)


def gaps(schedule, count):
    return list(itertools.islice(schedule.gaps_ns(), count))


def test_a_file_is_read_sorted_by_offset_stably_blank_lines_ignored(tmp_path):
    path = write(tmp_path, [
        {"offset_ms": 20, "model": "b", "input": 1}, "", "   ",
        {"offset_ms": 0.5, "batch_size": 2},
        {"offset_ms": 20, "model": "a", "input": 0, "batch_size": None},
        {"offset_ms": 3, "model": None},
    ])  # fmt: skip
    plan = read_schedule(path)
    assert plan.source == str(path)
    assert [(e.offset_ns, e.model, e.input, e.batch_size, e.line) for e in plan.entries] == [
        (500_000, None, None, 2, 4), (3_000_000, None, None, None, 6), (20_000_000, "b", 1, None, 1), (20_000_000, "a", 0, None, 5),
    ]  # fmt: skip


@given(st.lists(st.integers(0, 10**12), min_size=2, max_size=40).filter(lambda xs: min(xs) != max(xs)))
def test_offsets_in_ms_round_trip_to_the_ns(offsets_ns):
    lines = "".join(json.dumps({"offset_ms": ns / 1e6, "input": i}) + "\n" for i, ns in enumerate(offsets_ns))
    entries = _read_text(lines).entries
    assert [e.offset_ns for e in entries] == sorted(offsets_ns)
    # Stable: equal offsets keep the file's order (the input numbers the lines).
    assert [e.input for e in entries] == sorted(range(len(offsets_ns)), key=lambda i: offsets_ns[i])


def _read_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.jsonl"
        path.write_text(text)
        return read_schedule(path)


@pytest.mark.parametrize(("line", "message"), [
    ("{oops", "line 2 is not JSON: give one JSON object a line"),
    ("[1, 2]", "line 2 is not a JSON object"),
    ('{"offset_ms": 1, "ofset": 2}', "line 2 has unknown key 'ofset': did you mean offset_ms?"),
    ('{"offset_ms": 1, "zzz": 2}', "line 2 has unknown key 'zzz': the keys are offset_ms, model, input, batch_size"),
    ('{"model": "m"}', "line 2 has no offset_ms"),
    ('{"offset_ms": -1}', "line 2: offset_ms -1 is not a finite number of ms, 0 or more"),
    ('{"offset_ms": "5"}', 'line 2: offset_ms "5" is not a finite number'),
    ('{"offset_ms": NaN}', "line 2: offset_ms NaN is not a finite number"),
    ('{"offset_ms": Infinity}', "line 2: offset_ms Infinity is not a finite number"),
    ('{"offset_ms": true}', "line 2: offset_ms true is not a finite number"),
    ('{"offset_ms": 1' + "0" * 400 + "}", "line 2: offset_ms 1000000000000000000000000000000000000... is not a finite number"),
    ('{"offset_ms": 1, "model": 7}', "line 2: model 7 is not a model's name"),
    ('{"offset_ms": 1, "model": ""}', "line 2: model \"\" is not a model's name"),
    ('{"offset_ms": 1, "input": -1}', "line 2: input -1 is not a whole number, 0 or more"),
    ('{"offset_ms": 1, "input": 1.5}', "line 2: input 1.5 is not a whole number"),
    ('{"offset_ms": 1, "input": "0"}', 'line 2: input "0" is not a whole number'),
    ('{"offset_ms": 1, "batch_size": 0}', "line 2: batch_size 0 is not a whole number, 1 or more"),
    ('{"offset_ms": 1, "batch_size": 2.5}', "line 2: batch_size 2.5 is not a whole number, 1 or more"),
])  # fmt: skip
def test_a_bad_line_is_one_line_naming_the_file_and_line(tmp_path, line, message):
    path = write(tmp_path, [{"offset_ms": 0}, line, {"offset_ms": 2}])
    with pytest.raises(UsageError) as raised:
        read_schedule(path)
    assert f"--schedule-file {path} {message}" in str(raised.value) and "\n" not in str(raised.value)


def test_whole_numbers_may_be_written_as_floats(tmp_path):
    (entry, _) = read_schedule(write(tmp_path, [{"offset_ms": 0, "input": 3.0, "batch_size": 2.0}, {"offset_ms": 1}])).entries
    assert (entry.input, entry.batch_size) == (3, 2) and isinstance(entry.input, int)


@pytest.mark.parametrize(("lines", "message"), [
    ([], "holds no requests"),
    (["", "  "], "holds no requests"),
    ([{"offset_ms": 4}], "its 1 request falls at 4 ms: a replay needs requests at two different times at least"),
    ([{"offset_ms": 4}, {"offset_ms": 4}], "its 2 requests all fall at 4 ms"),
])  # fmt: skip
def test_a_file_without_a_span_is_refused(tmp_path, lines, message):
    with pytest.raises(UsageError, match=message):
        read_schedule(write(tmp_path, lines))


def test_an_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="cannot read --schedule-file .*missing.jsonl: No such file"):
        read_schedule(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="give a UTF-8 text file of JSON lines"):
        read_schedule(binary)


def test_the_period_is_the_span_and_one_mean_gap():
    plan = plan_of([10, 20, 40, 70])  # span 60 ms over 3 gaps: mean 20 ms
    assert plan.mean_gap_ns == 20e6 and plan.period_ns == 80_000_000


def test_a_model_gets_its_own_lines_and_as_the_only_model_the_unnamed_ones():
    plan = ReplayPlan("t", (ReplayEntry(0, "a", None, None, 1), ReplayEntry(1, None, None, None, 2), ReplayEntry(2, "b", None, None, 3)))
    assert [e.line for e in plan.for_model("a", only_model=True)] == [1, 2]
    assert [e.line for e in plan.for_model("a", only_model=False)] == [1]
    assert [e.line for e in plan.for_model("c", only_model=False)] == []


def test_a_line_naming_a_model_outside_the_run_is_refused():
    plan = ReplayPlan("t.jsonl", (ReplayEntry(0, "a", None, None, 1), ReplayEntry(1, "resnet", None, None, 7)))
    check_models(plan, ("a", "resnet"))
    with pytest.raises(UsageError) as raised:
        check_models(plan, ("a", "b"))
    assert str(raised.value) == ("--schedule-file t.jsonl line 7 names model 'resnet', which the run does not measure: "
                                 "the run's models are a, b")  # fmt: skip


def test_an_input_beyond_the_input_data_is_refused():
    plan = ReplayPlan("t.jsonl", (ReplayEntry(0, None, 0, None, 1), ReplayEntry(1, None, 3, None, 2)))
    check_inputs(plan, plan.entries, 4)
    with pytest.raises(UsageError) as raised:
        check_inputs(plan, plan.entries, 3)
    assert str(raised.value) == ("--schedule-file t.jsonl line 2: input 3 is beyond the input data, which makes 3 requests: "
                                 "give input 0 to 2, or leave input out for round robin")  # fmt: skip
    with pytest.raises(UsageError, match="which makes 1 request: give input 0 to 0"):  # random data: one request
        check_inputs(plan, plan.entries, 1)


def test_the_files_batch_size_becomes_the_runs():
    plan = ReplayPlan("t.jsonl", (ReplayEntry(0, None, None, 4, 1), ReplayEntry(1, None, None, None, 2), ReplayEntry(2, None, None, 4, 3)))
    assert replay_batch_size(plan, plan.entries, None) == 4
    assert replay_batch_size(plan, plan.entries, 4) == 4
    assert replay_batch_size(plan, plan.entries[1:2], None) == 1  # no line gives one: -b's default
    assert replay_batch_size(plan, plan.entries[1:2], 3) == 3
    with pytest.raises(UsageError) as raised:
        replay_batch_size(plan, plan.entries, 2)
    assert str(raised.value) == "-b 2 and --schedule-file t.jsonl's batch_size 4 (line 1) differ: drop -b, or give the file's batch size"
    varying = ReplayPlan("t.jsonl", (ReplayEntry(0, None, None, 4, 1), ReplayEntry(1, None, None, 2, 5)))
    with pytest.raises(UsageError) as raised:
        replay_batch_size(varying, varying.entries, None)
    assert str(raised.value) == ("--schedule-file t.jsonl: line 1 has batch_size 4 and line 5 2: varying batch sizes in one "
                                 "replay are not supported")  # fmt: skip


def test_a_replay_lasts_thirty_days_at_most():
    plan = plan_of([0, 86_400_000])  # one day
    check_duration(plan, 1 / 30)
    with pytest.raises(UsageError, match="replayed at speed 0.01 lasts 100 days, beyond the 30"):
        check_duration(plan, 0.01)


def test_the_schedule_sends_at_offset_over_speed_without_drift():
    plan = plan_of([5, 5, 12.5, 1000.0000003])
    schedule = ReplaySchedule(plan.entries, plan.period_ns, speed=3)
    times = np.cumsum(gaps(schedule, 10))
    assert times.tolist() == [round(e.offset_ns / 3) for e in plan.entries]  # and then it ends
    assert schedule.label == "Replay Speed" and schedule.value == 3
    # 4 requests in a period of 995 ms + its mean gap of 331.67 ms, three times as fast.
    assert schedule.target_rate_per_s == pytest.approx(4 * 3 / 1.3266667, rel=1e-6)


def test_a_looped_schedule_starts_each_pass_one_mean_gap_after_the_last_request():
    plan = plan_of([100, 110, 140])  # span 40 ms, mean gap 20 ms: period 60 ms
    schedule = ReplaySchedule(plan.entries, plan.period_ns, speed=2, loop=True)
    times_ms = (np.cumsum(gaps(schedule, 9)) / 1e6).tolist()
    assert times_ms == [50, 55, 70, 80, 85, 100, 110, 115, 130]
    assert schedule.target_rate_per_s == pytest.approx(3 / 0.03)


@given(st.lists(st.integers(0, 10**10), min_size=2, max_size=30).filter(lambda xs: min(xs) != max(xs)),
       st.floats(0.01, 100), st.integers(1, 5))  # fmt: skip
def test_split_among_workers_the_shares_merge_into_the_recording(offsets_ns, speed, workers):
    entries = tuple(ReplayEntry(ns, None, index, None, index + 1) for index, ns in enumerate(sorted(offsets_ns)))
    plan = ReplayPlan("t", entries)
    whole = ReplaySchedule(plan.entries, plan.period_ns, speed, loop=True)
    shares = split_schedule(whole, workers)
    assert sum(share is None for share in shares) == max(0, workers - len(entries))
    passes = 3
    sent = []
    for share in (s for s in shares if s is not None):
        times = np.cumsum(gaps(share, passes * len(share.entries)))
        sent += zip(times.tolist(), [e.input for e in share.entries] * passes)
    expected = list(zip(np.cumsum(gaps(whole, passes * len(entries))).tolist(), [e.input for e in entries] * passes))
    assert sorted(sent) == sorted(expected)
    assert sum(s.target_rate_per_s for s in shares if s is not None) == pytest.approx(whole.target_rate_per_s)


def _drive(schedule, answer_s=0.0, stop_after_s=None):
    """What `schedule` fires: (intended, index, when fired, when answered), and when drive returned."""

    async def scenario():
        fired = []

        async def fire(intended_ns, index=None):
            fired_ns = monotonic_ns()
            await asyncio.sleep(answer_s)
            fired.append((intended_ns, index, fired_ns, monotonic_ns()))

        stop = asyncio.Event()
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, stop.set)
        started_ns = monotonic_ns()
        await schedule.drive(fire, stop)
        return started_ns, fired, monotonic_ns()

    return asyncio.run(scenario())


def test_a_finite_replay_fires_each_request_with_its_input_then_returns_once_all_completed():
    plan = plan_of([0, 30, 30, 60, 100])
    entries = tuple(ReplayEntry(e.offset_ns, None, input_, None, e.line) for e, input_ in zip(plan.entries, [2, None, 0, 1, 2]))
    started_ns, fired, returned_ns = _drive(ReplaySchedule(entries, plan.period_ns, speed=2), answer_s=0.1)
    by_time = sorted(fired, key=lambda request: request[2])  # in the order fired
    assert [index for _, index, _, _ in by_time] == [2, None, 0, 1, 2]
    assert [(intended - started_ns) / 1e6 for intended, _, _, _ in by_time] == pytest.approx([0, 15, 15, 30, 50], abs=2)
    assert all(fired_ns >= intended for intended, _, fired_ns, _ in fired)  # never early
    # Timing is loose (a noisy 2-core VM): each out within 50 ms of its time.
    assert all(fired_ns - intended < 50e6 for intended, _, fired_ns, _ in fired)
    assert returned_ns >= max(answered for _, _, _, answered in fired)  # every request completed first


def test_a_replay_without_inputs_leaves_the_order_to_the_engine():
    plan = plan_of([0, 10, 20])
    _, fired, _ = _drive(ReplaySchedule(plan.entries, plan.period_ns))
    assert [index for _, index, _, _ in fired] == [None, None, None]


def test_a_looped_replay_repeats_its_inputs_until_stopped():
    plan = plan_of([0, 10, 20])
    entries = tuple(ReplayEntry(e.offset_ns, None, e.line - 1, None, e.line) for e in plan.entries)
    _, fired, _ = _drive(ReplaySchedule(entries, plan.period_ns, speed=1, loop=True), stop_after_s=0.25)
    indexes = [index for _, index, _, _ in sorted(fired, key=lambda request: request[2])]
    assert len(indexes) >= 12  # 30 ms a pass: about 8 passes in 0.25 s, however slowly the machine runs
    assert indexes == [0, 1, 2] * (len(indexes) // 3) + [0, 1, 2][: len(indexes) % 3]


def test_options_and_prepare_read_the_file_once(tmp_path):
    path = write(tmp_path, [{"offset_ms": 0, "batch_size": 2}, {"offset_ms": 10, "model": "m"}])
    config = build_config({"model-name": "m", "schedule-file": str(path), "replay-speed": 2, "replay-loop": True})
    load = config.load
    assert load.open_loop and load.single_level and (load.replay_speed, load.replay_loop) == (2.0, True)
    assert load.replay is None and config.inputs.batch_size is None  # nothing read yet: the file's, or 1
    prepared = prepare(config)
    assert len(prepared.load.replay.entries) == 2 and prepared.inputs.batch_size == 2
    path.unlink()
    assert prepare(prepared) == prepared  # carried, not read again
    with pytest.raises(UsageError, match="names model 'm', which the run does not measure: the run's models are other"):
        prepare(build_config({"model-name": "other", "schedule-file": str(write(tmp_path, [{"offset_ms": 0}, {"offset_ms": 1, "model": "m"}]))}))


@pytest.mark.parametrize(("options", "message"), [
    ({"schedule-file": "t.jsonl", "request-intervals": "g.txt"}, "--request-intervals and --schedule-file are different loads"),
    ({"schedule-file": "t.jsonl", "concurrency-range": "2"}, "--concurrency-range and --schedule-file are different loads"),
    ({"replay-speed": 2}, "--replay-speed only applies with --schedule-file"),
    ({"replay-loop": True}, "--replay-loop only applies with --schedule-file"),
    ({"schedule-file": "t.jsonl", "replay-speed": 0}, "--replay-speed must be above 0, got 0"),
    ({"schedule-file": "t.jsonl", "replay-speed": "inf"}, "--replay-speed must be a finite number"),
    ({"schedule-file": "t.jsonl", "binary-search": True, "sla": ["p99_ms<5"]}, "it does not apply to --schedule-file"),
])  # fmt: skip
def test_bad_replay_options(options, message):
    with pytest.raises(UsageError, match=message):
        build_config(options)


def test_an_export_becomes_one_line_per_request_from_its_first_time():
    export = {"experiments": [
        {"experiment": {"mode": "request_rate", "value": 10.0}, "requests": [
            {"timestamp": 1_000_900_000, "intended_timestamp": 1_000_000_000, "error": None},
            {"timestamp": 1_100_000_500, "intended_timestamp": 1_100_000_000, "error": "HTTP 500"},  # sent, so replayed
        ]},
        {"experiment": {"mode": "concurrency", "value": 1}, "requests": [
            {"timestamp": 3_000_000_007, "intended_timestamp": None},
            {"timestamp": 2_500_000_000},  # perf_analyzer's own: no intended time, nor in time order
        ]},
    ]}  # fmt: skip
    lines = [json.loads(line) for line in schedule_lines(export, "e.json", {"m": 2})]
    assert lines == [{"offset_ms": ms, "model": "m", "batch_size": 2} for ms in (0.0, 100.0, 1500.0, 2000.000007)]
    assert [json.loads(line) for line in schedule_lines(export, "e.json", {"m": 1})][1] == {"offset_ms": 100.0, "model": "m"}
    assert [json.loads(line) for line in schedule_lines(export, "e.json")][1] == {"offset_ms": 100.0}
    # A mix's export: each line names its experiment's model, with that model's batch size.
    export["experiments"][0]["model"], export["experiments"][1]["model"] = "a", "b"
    lines = [json.loads(line) for line in schedule_lines(export, "e.json", {"a": 1, "b": 4})]
    assert lines == [{"offset_ms": 0.0, "model": "a"}, {"offset_ms": 100.0, "model": "a"},
                     {"offset_ms": 1500.0, "model": "b", "batch_size": 4}, {"offset_ms": 2000.000007, "model": "b", "batch_size": 4}]  # fmt: skip


@pytest.mark.parametrize(("export", "message"), [
    ([], 'e.json is not a profile export: it has no "experiments" list'),
    ({"experiments": [{"requests": 3}]}, 'e.json: experiment 0 has no "requests" list'),
    ({"experiments": [{"requests": [{"timestamp": "x"}]}]}, "a request of experiment 0 has no timestamp in ns"),
    ({"experiments": [{"requests": []}]}, "e.json holds no requests"),
    ({"experiments": [{"model": 3, "requests": []}]}, "e.json: experiment 0's \"model\" is not a model's name"),
])  # fmt: skip
def test_a_bad_export_is_one_line(export, message):
    with pytest.raises(UsageError, match=message):
        list(schedule_lines(export, "e.json"))


SUMMARIES = Path(__file__).resolve().parent / "data" / "summaries"


def test_a_report_folder_gives_its_export_model_and_batch_size(tmp_path):
    with pytest.raises(UsageError, match="the run in .*traced wrote no --profile-export-file: run it with --profile-export-file"):
        export_source(SUMMARIES / "v10" / "traced")
    folder = SUMMARIES / "v8" / "profile-export"  # its run wrote /tmp/v8arch/out/export.json, gone since
    with pytest.raises(UsageError, match="wrote its export to /tmp/v8arch/out/export.json, which is not there .*: give the export file itself"):
        export_source(folder)
    copied = tmp_path / "run"
    shutil.copytree(folder, copied)
    (copied / "export.json").write_text("{}")  # a folder holding its export: found there
    assert export_source(copied) == (copied / "export.json", {"nested-outer": 1})
    assert export_source(copied / "export.json") == (copied / "export.json", {})
