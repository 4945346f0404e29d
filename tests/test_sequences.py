"""Sequence models: the planning (lengths, ids, flags), the parameters patched into prepared
requests, the test model's own checks, and loadgen driving it error-free against the real
embedded Triton on both protocols; bad sequence options get one line and exit 2."""

from __future__ import annotations

import asyncio
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
from loadgen.sequences import MAX_ID, IdPool, SequencePlan, flags, parse_id_range, sequence_length
from loadgen.transport import open_transport
from loadgen.transport.base import InputTensor
from loadgen.transport.sequence_params import GRPC_WIDTH, HTTP_WIDTH, grpc_fields, http_fragment

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
    (["--request-rate-range", "100"], "open-loop load"),
    (["--num-of-sequences", "4"], "--num-of-sequences is not supported"),
    (["--sequence-length", "0"], "--sequence-length must be at least 1"),
    (["--sequence-length-variation", "150"], "--sequence-length-variation must be a percentage"),
    (["--sequence-id-range", "5:5"], "ends at or before it starts"),
    (["--workers", "2"], "--workers is not supported"),
    (["--input-data", "{streams}"], "is a stream of steps (perf_analyzer's sequence input data): not supported yet"),
])  # fmt: skip
def test_bad_sequence_loads_are_refused(sequence_triton, argv, message, tmp_path, capsys):
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"data": [[{"INPUT": [1]}, {"INPUT": [2]}], [{"INPUT": [3]}]]}))
    argv = [arg.format(streams=streams) for arg in argv]
    _refused(["-u", sequence_triton.http, "-m", MODEL, *argv], tmp_path, capsys, message)
