"""Request ids for tracing: a send is the prepared bytes around its own id digits, every other
byte as prepared (HTTP JSON still valid, the gRPC message parses with the id); the client's record by id."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from loadgen.request_log import RequestLog
from loadgen.transport.base import InputTensor
from loadgen.transport.grpc import GrpcTransport
from loadgen.transport.http import HttpTransport
from loadgen.transport.request_id import ID_DIGITS, JOIN_BELOW, IdPieces, id_digits, id_number, request_id, run_prefix

PREFIX = "0a1b2c3d-"
TENSORS = [InputTensor("INPUT0", "FP32", (1, 4), struct.pack("<4f", 1, 2, 3, 4)),
           InputTensor("TEXT", "BYTES", (1, 1), struct.pack("<I", 5) + b"hello")]  # fmt: skip


def http_body(request: bytes) -> tuple[dict, bytes]:
    """The JSON header and the tensor bytes of an HTTP request."""
    head, _, body = request.partition(b"\r\n\r\n")
    json_size = int(next(line for line in head.split(b"\r\n") if line.startswith(b"Inference-Header-Content-Length")).split(b":")[1])
    return json.loads(body[:json_size]), body[json_size:]


def sent(ids: IdPieces, number: int) -> bytes:
    """What a send of request `number` puts on the wire."""
    return bytes(ids.head) + id_digits(number) + bytes(ids.tail)


def differing(a: bytes, b: bytes) -> list[int]:
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


def test_http_request_carries_the_id_and_nothing_else_changes():
    transport = HttpTransport("127.0.0.1:8000", {})
    plain = transport.prepare("model", "", TENSORS, ["OUT"])
    prepared = transport.prepare("model", "", TENSORS, ["OUT"], id_prefix=PREFIX)
    header, tensors = http_body(prepared.request)
    plain_header, plain_tensors = http_body(plain.request)
    assert header == {"id": request_id(PREFIX, 0), **plain_header} and tensors == plain_tensors
    wire = sent(prepared.ids, 1234567)
    assert http_body(wire)[0] == {**header, "id": f"{PREFIX}000001234567"}  # still valid JSON, lengths unchanged
    changed = differing(prepared.request, wire)
    start = prepared.request.index(PREFIX.encode()) + len(PREFIX)
    assert changed and all(start <= i < start + ID_DIGITS for i in changed)


def test_grpc_message_parses_with_the_id_and_nothing_else_changes():
    transport = GrpcTransport("127.0.0.1:8001", {})
    plain = transport.prepare("model", "2", TENSORS, ["OUT"])
    prepared = transport.prepare("model", "2", TENSORS, ["OUT"], id_prefix=PREFIX)
    wire = sent(prepared.ids, 42)
    assert prepared.ids.tail == b"" and wire[:5] == prepared.framed[:5] and int.from_bytes(wire[1:5], "big") == len(wire) - 5
    message = service_pb2.ModelInferRequest.FromString(wire[5:])
    assert message.id == f"{PREFIX}000000000042"
    message.id = ""
    assert message == service_pb2.ModelInferRequest.FromString(plain.framed[5:])
    assert service_pb2.ModelInferRequest.FromString(prepared.framed[5:]).id == request_id(PREFIX, 0)  # sent without a number
    assert len(differing(prepared.framed, wire)) == 2  # "42" over "00"


def test_untraced_requests_are_as_before():
    assert HttpTransport("127.0.0.1:8000", {}).prepare("model", "", TENSORS, []).ids is None
    assert GrpcTransport("127.0.0.1:8001", {}).prepare("model", "", TENSORS, []).ids is None


def test_numbers_past_the_width_wrap_and_keep_the_width():
    assert id_digits(10**ID_DIGITS + 7) == b"000000000007" and id_digits(999_999_999_999) == b"999999999999"
    assert request_id(PREFIX, 10**ID_DIGITS + 7) == request_id(PREFIX, 7)


def test_a_small_request_is_written_joined_and_a_large_one_as_its_pieces():
    transport = HttpTransport("127.0.0.1:8000", {})
    small = transport.prepare("model", "", TENSORS, [], id_prefix=PREFIX)
    assert small.ids.wire(7) == sent(small.ids, 7)
    large = transport.prepare("model", "", [InputTensor("INPUT0", "BYTES", (1, 1), bytes(JOIN_BELOW))], [], id_prefix=PREFIX)
    head, digits, tail = large.ids.wire(7)
    assert digits == b"000000000007" and head.obj is tail.obj is large.request  # the prepared bytes, not a copy
    assert bytes(head) + digits + bytes(tail) == sent(large.ids, 7)


def test_pieces_must_be_cut_at_the_digits():
    with pytest.raises(ValueError, match="no id digits there"):
        IdPieces(b"no id here, not at all", 3)


@pytest.mark.parametrize("text, number", [
    (f"{PREFIX}000000000042", 42), (f"{PREFIX}999999999999", 999999999999), ("ffffffff-000000000042", None),
    (f"{PREFIX}42", None), (f"{PREFIX}0000000000420", None), (f"{PREFIX}00000000004x", None), ("", None),
    (f"{PREFIX}00000000004٣", None),  # a non-ASCII digit
])  # fmt: skip
def test_id_numbers_are_read_back_from_this_runs_ids_only(text, number):
    assert id_number(PREFIX, text) == number


def test_run_prefixes_differ():
    assert len({run_prefix() for _ in range(50)}) == 50


def test_the_log_gives_latencies_of_successes_within_the_span():
    log = RequestLog()
    # number, intended (open loop) or None, sent, end, ok; completed out of order
    log.add(3, None, 3_000, 9_000, True)
    log.add(1, 500, 1_000, 4_000, True)  # open loop: from the intended send
    log.add(2, None, 2_000, 5_000, False)  # failed
    log.add(4, None, 4_000, 50_000, True)  # ended after the span
    records = log.records()
    assert list(records.number) == [1, 2, 3, 4]
    latency = records.latency_us(np.array([1, 2, 3, 4, 5, 0]), 0, 10_000)
    assert list(latency[[0, 2]]) == [3.5, 6.0] and np.isnan(latency[[1, 3, 4, 5]]).all()
    assert np.isnan(RequestLog().records().latency_us(np.array([1]), 0, 1)).all()
