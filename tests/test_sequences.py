"""Sequence models: the planning (lengths, ids, flags), the parameters patched into prepared
requests, the test model's own checks, and loadgen driving it error-free against the real
embedded Triton on both protocols; bad sequence options get one line and exit 2."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from loadgen.cli import main
from loadgen.errors import UsageError
from loadgen.schedule import IntervalSchedule, RateSchedule
from loadgen.schedule.sequences import (
    OpenLoopSequenceSchedule,
    SequenceSchedule,
    SlotPicker,
    StreamCycle,
)
from loadgen.sequences import (
    MAX_ID,
    IdPool,
    SequencePlan,
    check_worker_split,
    flags,
    parse_id_range,
    sequence_length,
    split_ids,
)
from loadgen.transport import open_transport
from loadgen.transport.base import InputTensor
from loadgen.transport.sequence_params import (
    GRPC_WIDTH,
    HTTP_WIDTH,
    grpc_fields,
    http_fragment,
)
from loadgen.workers.split import split_schedule

MODEL = "running-sum"

# -- planning -----------------------------------------------------------------------------------


@given(st.integers(1, 1000), st.floats(0, 100), st.integers(0, 2**32))
def test_a_length_stays_within_its_variation(base, variation_pct, seed):
    length = sequence_length(base, variation_pct, random.Random(seed))
    spread = base * variation_pct / 100
    assert length >= 1 and base - spread - 0.5 <= length <= base + spread + 0.5


def test_lengths_vary_and_repeat_with_the_seed():
    draw = [sequence_length(20, 20, rng) for rng in [random.Random(7)] for _ in range(200)]
    assert min(draw) == 16 and max(draw) == 24  # perf_analyzer's +/- 20 % of 20
    assert draw == [sequence_length(20, 20, rng) for rng in [random.Random(7)] for _ in range(200)]
    assert {sequence_length(20, 0, random.Random(seed)) for seed in range(20)} == {20}


@given(st.integers(1, 50))
def test_flags_start_the_first_request_and_end_the_last(length):
    marked = [flags(step, length) for step in range(length)]
    assert [start for start, _ in marked] == [True] + [False] * (length - 1)
    assert [end for _, end in marked] == [False] * (length - 1) + [True]


@given(st.integers(1, 5), st.lists(st.booleans(), max_size=200))
def test_no_two_open_sequences_share_an_id(size, takes):
    pool, opened = IdPool(SequencePlan(id_start=10, id_end=10 + size)), []
    for take in takes:
        if take and len(opened) < size:
            sequence_id = pool.take()
            assert 10 <= sequence_id < 10 + size and sequence_id not in opened
            opened.append(sequence_id)
        elif opened:
            pool.release(opened.pop(0))


def test_id_ranges():
    assert parse_id_range("1") == (1, None) and parse_id_range("5:9") == (5, 9)
    for bad in ("0", "5:5", "9:5", "a", "1:2:3", "-1", f"1:{MAX_ID + 2}"):
        with pytest.raises(UsageError):
            parse_id_range(bad)
    SequencePlan(id_start=5, id_end=9).check_concurrency(4)
    with pytest.raises(UsageError, match="4 ids for 5 concurrent sequences"):
        SequencePlan(id_start=5, id_end=9).check_concurrency(5)


# -- open loop: which sequence each request goes to ---------------------------------------------


def test_without_serial_a_request_goes_to_a_random_sequence_in_flight_or_not():
    async def picks(seed):
        picker = SlotPicker(4, False, random.Random(seed))
        return [await picker.take() for _ in range(400)]  # never given back: none is ever free

    drawn = asyncio.run(picks(3))
    assert set(drawn) == {0, 1, 2, 3} and all(60 < drawn.count(slot) < 140 for slot in range(4))
    assert drawn == asyncio.run(picks(3))


def test_with_serial_a_request_takes_the_longest_free_sequence_or_waits():
    async def run():
        picker = SlotPicker(3, True, random.Random(0))
        taken = [await picker.take() for _ in range(3)]
        waiting = asyncio.ensure_future(picker.take())
        await asyncio.sleep(0)
        assert not waiting.done()  # every sequence has a request in flight
        picker.give_back(2)
        picker.give_back(0)
        return taken, await waiting, await picker.take()

    assert asyncio.run(run()) == ([0, 1, 2], 2, 0)


def test_streams_are_replayed_in_turn():
    cycle = StreamCycle([3, 1, 2])
    assert [cycle.take() for _ in range(4)] == [(0, 3), (3, 1), (4, 2), (0, 3)]
    started = StreamCycle([3, 1, 2], start=4)  # past the last: around again, as the cycle goes
    assert [started.take() for _ in range(3)] == [(3, 1), (4, 2), (0, 3)]


@pytest.mark.parametrize("serial", [False, True])
def test_open_loop_sequences_flag_their_requests_in_order(serial):
    """Against a stand-in for the engine that answers after a while: every id's requests run START
    ... END in send order; with serial, never two of one sequence at once; a new sequence starts
    on a slot once its END is out, the sequences at once never above --num-of-sequences."""
    sent, in_flight, peak = [], {}, [0]

    async def fire(intended_ns, index=None, sequence=None):
        sent.append((sequence, index))
        sequence_id = sequence[0]
        in_flight[sequence_id] = in_flight.get(sequence_id, 0) + 1
        peak[0] = max(peak[0], in_flight[sequence_id])
        await asyncio.sleep(0.004)  # longer than the 2 ms between sends: requests overlap
        in_flight[sequence_id] -= 1
        return True

    async def run(schedule):
        stop = asyncio.Event()
        driving = asyncio.ensure_future(schedule.drive(fire, stop))
        await asyncio.sleep(0.3)
        stop.set()
        await driving

    schedule = OpenLoopSequenceSchedule(RateSchedule(500), 3, serial, SequencePlan(4, 0, 7, 10), seed=1, streams=None)
    asyncio.run(run(schedule))
    by_id: dict[int, list[tuple[bool, bool]]] = {}
    for (sequence_id, start, end), index in sent:
        assert 7 <= sequence_id < 10 and index is None
        by_id.setdefault(sequence_id, []).append((start, end))
    for marks in by_id.values():  # each id's sequences one after the other, each 4 long
        whole, rest = divmod(len(marks), 4)
        assert marks[: 4 * whole] == [(True, False), (False, False), (False, False), (False, True)] * whole
        assert marks[4 * whole :] == [(True, False), (False, False), (False, False)][:rest]
    assert (peak[0] == 1) if serial else (peak[0] > 1)
    assert len(schedule.completed_ns) + schedule.cut_short == sum(start for (_, start, _), _ in sent)
    assert schedule.failed == 0 and schedule.cut_short <= 3


def test_open_loop_sequences_replay_their_streams():
    sent = []

    async def fire(intended_ns, index=None, sequence=None):
        sent.append((index, sequence[1], sequence[2]))
        return True

    async def run():
        stop = asyncio.Event()
        schedule = OpenLoopSequenceSchedule(IntervalSchedule([1000]), 1, True, SequencePlan(), None, streams=(2, 3))
        driving = asyncio.ensure_future(schedule.drive(fire, stop))
        while len(sent) < 7:
            await asyncio.sleep(0.001)
        stop.set()
        await driving

    asyncio.run(run())
    assert sent[:7] == [(0, True, False), (1, False, True), (2, True, False), (3, False, False), (4, False, True),
                        (0, True, False), (1, False, True)]  # fmt: skip


@given(st.lists(st.integers(0, 9), min_size=1, max_size=6).filter(any), st.integers(0, 30), st.one_of(st.none(), st.integers(1, 200)))
def test_workers_get_disjoint_slices_of_the_ids(shares, start, size):
    plan = SequencePlan(id_start=start + 1, id_end=None if size is None else start + 1 + size)
    if plan.id_count < sum(shares):
        with pytest.raises(UsageError, match="split among workers"):
            split_ids(plan, shares)
        return
    plans = split_ids(plan, shares)
    assert [p is None for p in plans] == [share == 0 for share in shares]
    slices = [p for p in plans if p is not None]
    for before, after in itertools.pairwise(slices):
        assert before.id_end <= after.id_start
    for share, part in zip(shares, plans):
        if part is not None:
            assert part.id_count >= share and plan.id_start <= part.id_start and part.id_end <= plan.id_start + plan.id_count


def test_a_sequence_load_is_split_whole_among_workers():
    plan = SequencePlan(5, 0, 1, 101)
    closed = split_schedule(SequenceSchedule(5, plan, 7), 3)
    assert [s.concurrency for s in closed] == [2, 2, 1]
    assert [(s.plan.id_start, s.plan.id_end) for s in closed] == [(1, 41), (41, 81), (81, 101)]
    assert len({s.seed for s in closed}) == 3
    opened = split_schedule(OpenLoopSequenceSchedule(RateSchedule(300), 4, True, plan, 7, (2, 2)), 2)
    assert [(s.sequences, s.target_rate_per_s, s.serial, s.streams) for s in opened] == [(2, 150, True, (2, 2))] * 2
    # Each worker's first sequences replay the streams one process's would have: not all the first.
    assert [s.first_stream for s in opened] == [0, 2]
    assert [s.first_stream for s in split_schedule(SequenceSchedule(5, plan, 7, (1, 1, 1)), 3)] == [0, 2, 4]
    with pytest.raises(UsageError, match="--num-of-sequences 1 cannot be split among 2 workers"):
        check_worker_split(1, 2)


# -- the parameters on the wire ---------------------------------------------------------------


@given(st.integers(1, MAX_ID), st.booleans(), st.booleans())
def test_the_parameters_keep_their_width_and_parse(sequence_id, start, end):
    fragment = http_fragment(sequence_id, start, end)
    assert len(fragment) == HTTP_WIDTH
    assert json.loads(b"{" + fragment + b"}") == {"sequence_id": sequence_id, "sequence_start": start, "sequence_end": end}
    fields = grpc_fields(sequence_id, start, end)
    assert len(fields) == GRPC_WIDTH
    parameters = service_pb2.ModelInferRequest.FromString(fields).parameters
    assert (parameters["sequence_id"].int64_param, parameters["sequence_start"].bool_param,
            parameters["sequence_end"].bool_param) == (sequence_id, start, end)  # fmt: skip


# -- the test model against the real server ----------------------------------------------------

ONE = [InputTensor("INPUT", "INT32", (1, 1), (3).to_bytes(4, "little"))]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_model_fails_wrong_flags(sequence_triton, protocol):
    async def sends(steps):
        url = sequence_triton.http if protocol == "http" else sequence_triton.grpc
        async with open_transport(protocol, url, {}) as transport:
            prepared = transport.prepare(MODEL, "", ONE, ["SUM"], sequences=True)
            return [(await transport.infer(prepared, None, step)).error is None for step in steps]

    sequence_id = random.randrange(1000, 2**40)
    assert asyncio.run(sends([(sequence_id, False, False)])) == [False]  # never started
    assert asyncio.run(sends([(sequence_id, True, False), (sequence_id, False, False), (sequence_id, False, True),
                              (sequence_id, False, False)])) == [True, True, True, False]  # fmt: skip # ended
    assert asyncio.run(sends([(sequence_id, True, False), (sequence_id, True, True)])) == [True, True]  # a START restarts


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sequences_are_driven_error_free(sequence_triton, protocol, tmp_path):
    url = sequence_triton.http if protocol == "http" else sequence_triton.grpc
    args = ["run", "-u", url, "-i", protocol, "-m", MODEL, "--concurrency-range", "1:4:3", "-p", "400", "-r", "3",
            "-s", "50", "--sequence-length", "6", "--sequence-id-range", "7:11", "--seed", "1",
            "--report-dir", str(tmp_path / "report")]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    levels = json.loads((tmp_path / "report" / "summary.json").read_text())["levels"]
    assert [level["value"] for level in levels] == [1, 4]
    for level in levels:
        assert level["client"]["error_count"] == 0 and level["client"]["request_count"] > 0
        sequences = level["sequences"]
        assert sequences["completed"] > 0 and sequences["failed"] == 0
        assert 0 <= sequences["cut_short"] <= level["value"]
        # about 6 requests a sequence (4 to 8): the completed ones carry nearly all of the requests
        assert 4 <= level["client"]["request_count"] / sequences["completed"] <= 8.5
    assert "completed/sec" in process.stdout


def _sequence_run(server, protocol, tmp_path, *argv):
    """A loadgen run on running-sum; its levels, each checked error-free with sequences completed."""
    url = server.http if protocol == "http" else server.grpc
    args = ["run", "-u", url, "-i", protocol, "-m", MODEL, "-p", "500", "-r", "3", "-s", "50", "--seed", "1",
            "--report-dir", str(tmp_path / "report"), *argv]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=240, check=False)
    assert process.returncode == 0, process.stderr
    levels = json.loads((tmp_path / "report" / "summary.json").read_text())["levels"]
    for level in levels:
        assert level["client"]["error_count"] == 0 and level["client"]["request_count"] > 0, level["client"]
        assert level["sequences"]["completed"] > 0 and level["sequences"]["failed"] == 0
    return levels


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_open_loop_sequences_are_driven_error_free(sequence_triton, protocol, tmp_path):
    """With --serial-sequences, one request of a sequence at a time: error-free at any rate."""
    levels = _sequence_run(sequence_triton, protocol, tmp_path, "--request-rate-range", "100:400:300", "--serial-sequences",
                           "--num-of-sequences", "3", "--sequence-length", "5", "--sequence-id-range", "7:10")  # fmt: skip
    assert [level["value"] for level in levels] == [100, 400]
    for level in levels:
        assert level["open_loop"] is not None and level["open_loop"]["achieved_rate_per_s"] > 0.9 * level["value"]
        assert 0 <= level["sequences"]["cut_short"] <= 3
        assert 3.5 <= level["client"]["request_count"] / level["sequences"]["completed"] <= 6.5  # 4 to 6 a sequence


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_open_loop_sequences_without_serial_overlap_and_stay_in_order(sequence_triton, protocol, tmp_path):
    """Without --serial-sequences a request goes to its sequence even while the previous one is in
    flight (test_open_loop_sequences_flag_their_requests_in_order shows they overlap), and
    running-sum fails any request that reaches it out of its sequence's order (a step before its
    START, or after its END). Triton runs a sequence's requests in the order they arrive, so the run
    is error-free as long as they arrive in the order sent: true when the sends of one sequence are
    apart by at least the gap between sends (here 20 ms; running-sum answers in about 1 ms, so they
    seldom even overlap), far more than the server's threads take to pass a request on. Under load
    that does not hold (a gRPC run at 200/s on 2 busy cores once failed 2 sequences of ~70):
    --serial-sequences is for a model that needs its requests in order."""
    levels = _sequence_run(sequence_triton, protocol, tmp_path, "--request-rate-range", "50", "--sequence-length", "4",
                           "--sequence-length-variation", "0")  # fmt: skip
    # 4 a sequence, more for the few sequences that straddle the windows' edges
    assert 3.5 <= levels[0]["client"]["request_count"] / levels[0]["sequences"]["completed"] <= 5.5


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_streams_of_steps_are_replayed_as_sequences(sequence_triton, protocol, tmp_path):
    """perf_analyzer's sequence input data: a stream per sequence, its length the stream's (2 and 5,
    in turn: 3.5 requests a sequence, whatever --sequence-length says)."""
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"data": [[{"INPUT": [1]}, {"INPUT": [2]}],
                                            [{"INPUT": [3]}, {"INPUT": [4]}, {"INPUT": [5]}, {"INPUT": [6]}, {"INPUT": [7]}]]}))  # fmt: skip
    closed = _sequence_run(sequence_triton, protocol, tmp_path, "--concurrency-range", "2", "--input-data", str(streams),
                           "--sequence-length", "20")  # fmt: skip
    opened = _sequence_run(sequence_triton, protocol, tmp_path / "open", "--request-rate-range", "200", "--serial-sequences",
                           "--input-data", str(streams), "--sequence-length", "20")  # fmt: skip
    for level in closed + opened:
        assert 3.0 <= level["client"]["request_count"] / level["sequences"]["completed"] <= 4.0


@pytest.mark.parametrize("protocol", ["http", pytest.param("grpc", marks=pytest.mark.slow)])  # 11 s each: CI budget
def test_two_workers_drive_sequences_each_on_its_own_ids(sequence_triton, ray_cluster, protocol, tmp_path):
    """Each worker opens its sequences on its own slice of the ids (7:11 between two): were one id
    open on both, the model would see two sequences interleaved and fail their requests."""
    workers = ["--workers", "2", "--ray-address", ray_cluster.address, "--sequence-length", "5", "--sequence-id-range", "7:11"]
    closed = _sequence_run(sequence_triton, protocol, tmp_path, "--concurrency-range", "4", *workers)
    opened = _sequence_run(sequence_triton, protocol, tmp_path / "open", "--request-rate-range", "300", "--serial-sequences",
                           "--num-of-sequences", "4", *workers)  # fmt: skip
    for level in closed + opened:
        assert len(level["workers"]) == 2 and all(w["request_count"] > 0 for w in level["workers"])
        assert 3.5 <= level["client"]["request_count"] / level["sequences"]["completed"] <= 6.5


# -- bad sequence options: one line, exit 2 ---------------------------------------------------


def _refused(argv, tmp_path, capsys, message):
    code = main(["run", "-p", "200", "-r", "3", "--report-dir", str(tmp_path / "report"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("loadgen: error: ") and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("flag", [["--sequence-length", "5"], ["--sequence-id-range", "1:9"], ["--serial-sequences"]])
def test_sequence_options_need_a_sequence_model(echo_triton, flag, tmp_path, capsys):
    _refused(["-u", echo_triton.http, "-m", "ident", *flag], tmp_path, capsys, "only apply to a sequence model: 'ident'")


@pytest.mark.parametrize("argv,message", [
    (["--concurrency-range", "1:5", "--sequence-id-range", "7:11"], "has 4 ids for 5 concurrent sequences"),
    (["--request-rate-range", "100", "--num-of-sequences", "5", "--sequence-id-range", "7:11"], "has 4 ids for 5 concurrent sequences"),
    (["--num-of-sequences", "4"], "--num-of-sequences apply to open loop"),
    (["--serial-sequences"], "--serial-sequences apply to open loop"),
    (["--request-rate-range", "100", "--num-of-sequences", "0"], "--num-of-sequences must be at least 1"),
    (["--request-rate-range", "100", "--num-of-sequences", "1", "--workers", "2"], "cannot be split among 2 workers"),
    (["--schedule-file", "{schedule}"], "--schedule-file is not supported"),
    (["--input-data", "{streams}", "-b", "2"], "streams of steps are sent one step a request"),
    (["--sequence-length", "0"], "--sequence-length must be at least 1"),
    (["--sequence-length-variation", "150"], "--sequence-length-variation must be a percentage"),
    (["--sequence-id-range", "5:5"], "ends at or before it starts"),
    (["--input-data", "{mixed}"], "mixes streams of steps with other entries"),
])  # fmt: skip
def test_bad_sequence_loads_are_refused(sequence_triton, argv, message, tmp_path, capsys):
    streams, mixed, schedule = tmp_path / "streams.json", tmp_path / "mixed.json", tmp_path / "schedule.jsonl"
    streams.write_text(json.dumps({"data": [[{"INPUT": [1]}, {"INPUT": [2]}], [{"INPUT": [3]}]]}))
    mixed.write_text(json.dumps({"data": [[{"INPUT": [1]}], {"INPUT": [2]}]}))
    schedule.write_text('{"offset_ms": 0}\n{"offset_ms": 5}\n')
    argv = [arg.format(streams=streams, mixed=mixed, schedule=schedule) for arg in argv]
    _refused(["-u", sequence_triton.http, "-m", MODEL, *argv], tmp_path, capsys, message)


def test_streams_need_a_sequence_model(echo_triton, tmp_path, capsys):
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"data": [[{"INPUT0": [0.5] * 16}], [{"INPUT0": [1.5] * 16}]]}))
    _refused(["-u", echo_triton.http, "-m", "ident", "--input-data", str(streams)], tmp_path, capsys, "streams of steps are a sequence model's input")
