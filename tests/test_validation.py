"""Output validation: the wire codec, the comparison rules per datatype and at the tolerance's edges,
HTTP bodies and gRPC messages as Triton sends them (and broken ones, fuzzed), validation_data read
from perf_analyzer's formats; then the real server: a model that answers wrong one time in ten,
over both protocols, and one that answers right."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from loadgen.cli import main
from loadgen.errors import UsageError
from loadgen.inputs import build_request_inputs, model_inputs
from loadgen.options import build_config
from loadgen.outcome import FailureKind
from loadgen.server import EmbeddedServer
from loadgen.transport import open_transport
from loadgen.transport.base import InputTensor, RequestInputs
from loadgen.validation import (
    ExpectedOutputs,
    WireError,
    check_grpc,
    check_http,
    compare_output,
    expected_output,
    from_wire,
    to_wire,
)

REPOSITORY = Path(__file__).resolve().parent / "model_repos" / "validation"  # right, wrong-one-in-ten
MISMATCH, PROTOCOL = FailureKind.OUTPUT_MISMATCH, FailureKind.PROTOCOL


def expect(*outputs, rtol: float = 1e-5, atol: float = 1e-6) -> ExpectedOutputs:
    """ExpectedOutputs of (name, datatype, values) with known shapes."""
    made = []
    for name, datatype, values in outputs:
        held = np.float32 if datatype == "BF16" else (np.object_ if datatype == "BYTES" else None)
        made.append(expected_output(name, datatype, np.asarray(values, dtype=held), True))
    return ExpectedOutputs(tuple(made), rtol, atol)


def compare(datatype: str, want, got, rtol: float = 1e-5, atol: float = 1e-6, shape=None):
    (expected,) = expect(("OUT", datatype, want)).outputs
    got = np.asarray(got, dtype=np.object_ if datatype == "BYTES" else (np.float32 if datatype == "BF16" else None))
    return compare_output(expected, datatype, tuple(got.shape) if shape is None else shape, to_wire(datatype, got), rtol, atol)


def http_body(outputs, *, json_data: bool = False) -> tuple[bytes, int]:
    """A 200 body as Triton sends it: the JSON header, then each output's wire bytes.
    `outputs`: (name, datatype, array). With json_data, the values sit in the header's `data`."""
    entries, binary = [], []
    for name, datatype, array in outputs:
        entry = {"name": name, "datatype": datatype, "shape": list(np.shape(array))}
        if json_data:
            flat = np.asarray(array).reshape(-1).tolist()
            entry["data"] = [e.decode() for e in flat] if datatype == "BYTES" else flat
        else:
            raw = to_wire(datatype, np.asarray(array, dtype=np.object_ if datatype == "BYTES" else None))
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        entries.append(entry)
    header = json.dumps({"model_name": "m", "model_version": "1", "outputs": entries}).encode()
    return header + b"".join(binary), len(header)


def grpc_response(outputs, *, typed: bool = False):
    response = service_pb2.ModelInferResponse(model_name="m", model_version="1")
    for name, datatype, array in outputs:
        entry = response.outputs.add()
        entry.name, entry.datatype = name, datatype
        entry.shape.extend(np.shape(array))
        if typed:
            field = {"FP32": "fp32_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}[datatype]
            getattr(entry.contents, field).extend(np.asarray(array).reshape(-1).tolist())
        else:
            response.raw_output_contents.append(to_wire(datatype, np.asarray(array, dtype=np.object_ if datatype == "BYTES" else None)))
    return response


# -- the wire codec ---------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
                                      "FP16", "FP32", "FP64"])  # fmt: skip
def test_fixed_size_datatypes_round_trip(datatype):
    values = np.array([0, 1, 2, 3, 100], dtype=np.float64)
    array = (values > 1) if datatype == "BOOL" else values.astype(from_wire(datatype, b"").dtype)
    raw = to_wire(datatype, array)
    assert len(raw) == array.size * array.dtype.itemsize
    assert from_wire(datatype, raw).tolist() == array.tolist()


def test_bf16_is_float32_rounded_to_its_upper_half_and_bool_any_nonzero_byte():
    array = np.array([1.0, -2.5, 3.140625], dtype=np.float32)  # exact in bfloat16
    raw = to_wire("BF16", array)
    assert raw == struct.pack("<3H", 0x3F80, 0xC020, 0x4049)
    assert from_wire("BF16", raw).tolist() == array.tolist()
    # to nearest, ties to even: 1.00390625 and 1.01171875 lie halfway between two BF16 values
    rounded = from_wire("BF16", to_wire("BF16", np.array([1.00390625, 1.01171875, 3.14, np.nan, np.inf], dtype=np.float32)))
    assert rounded[:3].tolist() == [1.0, 1.015625, 3.140625] and np.isnan(rounded[3]) and rounded[4] == np.inf
    assert from_wire("BOOL", b"\x00\x01\x02\xff").tolist() == [False, True, True, True]


def test_bytes_elements_and_broken_ones():
    elements = np.array([b"", b"abc", "d\xe9".encode()], dtype=np.object_)
    raw = to_wire("BYTES", elements)
    assert raw == b"\x00\x00\x00\x00" + b"\x03\x00\x00\x00abc" + b"\x03\x00\x00\x00d\xc3\xa9"
    assert from_wire("BYTES", raw).tolist() == elements.tolist()
    with pytest.raises(WireError, match="length cut short at byte 0"):
        from_wire("BYTES", b"\x01\x00")
    with pytest.raises(WireError, match="running past the tensor's end"):
        from_wire("BYTES", b"\x09\x00\x00\x00abc")
    with pytest.raises(WireError, match="not a whole number of FP32 elements"):
        from_wire("FP32", b"12345")


# -- the comparison rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "want", "got", "index"),
    [("INT32", [[1, 2], [3, 4]], [[1, 2], [3, 5]], "[1, 1]"), ("INT64", [2**40], [2**40 + 1], "[0]"),
     ("UINT8", [0, 255], [0, 254], "[1]"), ("BOOL", [True, False], [True, True], "[1]"),
     ("BYTES", [[b"a"], [b"b"]], [[b"a"], [b"c"]], "[1, 0]")],
)  # fmt: skip
def test_integers_bools_and_bytes_must_be_equal(datatype, want, got, index):
    assert compare(datatype, want, want) is None
    error = compare(datatype, want, got)
    assert error.kind is MISMATCH and error.label == "output mismatch"
    assert error.message.startswith(f"OUT differs at {index}: ")
    assert "rtol" not in error.message


def test_bytes_mismatch_shows_both_values():
    error = compare("BYTES", [b"sum=5.6"], [b"sum=5.7"])
    assert error.message == "OUT differs at [0]: b'sum=5.7', expected b'sum=5.6'"


def test_floats_within_rtol_plus_atol_match_as_isclose():
    rtol, atol = 1e-3, 1e-2
    # |got - expected| <= atol + rtol * |expected|: 1000 may be off by 1.01, 0 by 0.01
    edge = np.nextafter(1000 + 1.01, 0)  # just inside, for float64 rounding
    assert compare("FP64", [1000.0, 0.0], [edge, 0.01], rtol, atol) is None
    error = compare("FP64", [1000.0, 0.0], [1000.0, 0.0101], rtol, atol)
    assert error.kind is MISMATCH
    assert error.message == "OUT differs at [1]: 0.0101, expected 0 (beyond rtol 0.001 + atol 0.01)"
    assert compare("FP64", [1000.0], [1001.02], rtol, atol).kind is MISMATCH
    # relative to the expected value, not the received one (numpy.isclose's asymmetry)
    assert compare("FP64", [1.0], [2.0], rtol=0.6, atol=0) is not None
    assert compare("FP64", [2.0], [1.0], rtol=0.6, atol=0) is None


def test_float_defaults_and_special_values():
    assert compare("FP32", [1.0], [1.0 + 5e-6]) is None  # within rtol 1e-5
    assert compare("FP32", [1.0], [1.0 + 5e-5]).kind is MISMATCH
    assert compare("FP32", [0.0], [5e-7]) is None  # within atol 1e-6
    assert compare("FP32", [0.0], [5e-6]).kind is MISMATCH
    assert compare("FP32", [np.nan, np.inf, -np.inf], [np.nan, np.inf, -np.inf]) is None
    assert compare("FP32", [np.nan], [1.0]).kind is MISMATCH
    assert compare("FP32", [np.inf], [-np.inf]).kind is MISMATCH
    assert compare("FP32", [0.0], [-0.0]) is None  # other bytes, equal values


def test_half_precision_outputs():
    assert compare("FP16", [1.0, 2.0], [1.0, 2.0]) is None
    assert compare("FP16", [1.0], [1.0009765625], rtol=1e-4).kind is MISMATCH  # one FP16 step above 1
    assert compare("FP16", [1.0], [1.0009765625], rtol=1e-4, atol=1e-3) is None
    # expected values are the datatype's: 3.14 written for an FP16 output is FP16's 3.140625
    assert compare("FP16", [3.14], [3.140625]) is None
    assert compare("BF16", [3.14], [3.140625]) is None
    # BF16 keeps 8 bits of mantissa: one step above 1 is 0.0078125
    assert compare("BF16", [1.0], [1.0078125]).kind is MISMATCH
    assert compare("BF16", [1.0], [1.0078125], rtol=1e-2) is None
    assert compare("BF16", [1.0, 2.0], [1.0, 3.0], rtol=1e-2).message.startswith("OUT differs at [1]: 3, expected 2")


def test_datatype_shape_and_count_mismatches():
    (expected,) = expect(("OUT", "FP32", [[1.0, 2.0]])).outputs
    raw = to_wire("FP32", np.array([1.0, 2.0]))
    assert compare_output(expected, "FP64", (1, 2), to_wire("FP64", np.array([1.0, 2.0])), 0, 0).message == "OUT is FP64, expected FP32"
    assert compare_output(expected, "FP32", (2, 1), raw, 0, 0).message == "OUT has shape [2, 1], expected [1, 2]"
    assert compare_output(expected, "FP32", (1, 3), raw, 0, 0).message == "OUT has shape [1, 3], expected [1, 2]"
    open_shape = expected_output("OUT", "FP32", np.array([1.0, 2.0]), False)
    assert open_shape.shape is None
    assert compare_output(open_shape, "FP32", (2,), raw, 0, 0) is None
    assert compare_output(open_shape, "FP32", (2, 1), raw, 0, 0) is None  # only the count is known
    three = to_wire("FP32", np.array([1.0, 2.0, 3.0]))
    assert compare_output(open_shape, "FP32", (3,), three, 0, 0).message == "OUT has 3 elements, expected 2"
    broken = compare_output(open_shape, "FP32", (3,), raw, 0, 0)
    assert broken.kind is PROTOCOL and "holds 2 elements where its shape [3] has 3" in broken.message


# -- HTTP bodies --------------------------------------------------------------------------------

OUTPUTS = [("OUT_FP32", "FP32", np.array([[0.1, -2.0, 3.5, 4.0]], dtype=np.float32)),
           ("OUT_INT32", "INT32", np.array([[0, -2, 4, 4]], dtype=np.int32)),
           ("OUT_BYTES", "BYTES", np.array([[b"sum=5.6"]], dtype=np.object_))]  # fmt: skip


def test_http_body_as_triton_sends_it():
    body, header_length = http_body(OUTPUTS)
    assert check_http(expect(*OUTPUTS), body, header_length) is None
    assert check_http(expect(OUTPUTS[2]), body, header_length) is None  # some outputs checked, not all
    assert check_http(expect(*OUTPUTS), bytearray(body), header_length) is None
    wrong = [OUTPUTS[0], ("OUT_INT32", "INT32", np.array([[0, -2, 4, 5]], dtype=np.int32)), OUTPUTS[2]]
    error = check_http(expect(*wrong), body, header_length)
    assert error.kind is MISMATCH and error.message == "OUT_INT32 differs at [0, 3]: 4, expected 5"
    missing = check_http(expect(*OUTPUTS, ("OUT_FP16", "FP16", [[1.0]])), body, header_length)
    assert missing.kind is MISMATCH and missing.message == "OUT_FP16 is not in the response"


def test_http_outputs_in_the_json_header():
    body, _ = http_body(OUTPUTS, json_data=True)
    assert check_http(expect(*OUTPUTS), body, -1) is None
    assert check_http(expect(*OUTPUTS), body, len(body)) is None
    wrong = [("OUT_BYTES", "BYTES", np.array([[b"sum=5.7"]], dtype=np.object_))]
    assert check_http(expect(*wrong), body, -1).message == "OUT_BYTES differs at [0, 0]: b'sum=5.6', expected b'sum=5.7'"


@pytest.mark.parametrize(
    ("header", "binary", "message"),
    [(b"not json", b"", "its JSON header is not JSON"), (b"[]", b"", "its JSON header has no list of outputs"),
     (b'{"outputs": {}}', b"", "its JSON header has no list of outputs"),
     (b'{"outputs": [{"name": 1}]}', b"", "an output without a name or datatype"),
     (b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [-1], "data": [1]}]}', b"", "output O: shape [-1] is not a list of sizes"),
     (b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 8}}]}', b"1234",
      "4 bytes of binary outputs where their binary_data_size add up to 8"),
     (b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}', b"12345",
      "5 bytes of binary outputs where their binary_data_size add up to 4"),
     (b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": -4}}]}', b"",
      "output O: binary_data_size -4"),
     (b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [1], "data": ["x"]}]}', b"", "output O: its data are not FP32 values"),
     (b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [1], "data": 1.0}]}', b"", "output O: its data is not a list")],
)  # fmt: skip
def test_http_bodies_that_break_the_binary_extension_are_protocol_errors(header, binary, message):
    error = check_http(expect(("O", "FP32", [1.0])), header + binary, len(header))
    assert error.kind is PROTOCOL and error.message == f"bad response: {message}"


def test_http_header_length_beyond_the_body():
    error = check_http(expect(("O", "FP32", [1.0])), b"{}", 10)
    assert error.kind is PROTOCOL and "Inference-Header-Content-Length 10 exceeds the body's 2 bytes" in error.message


def test_http_json_data_of_an_output_not_checked_or_of_another_datatype_is_not_read():
    header = b'{"outputs": [{"name": "O", "datatype": "FP32", "shape": [1], "data": [1.0]}, {"name": "X", "datatype": "NOPE", "shape": [1], "data": [{}]}]}'
    assert check_http(expect(("O", "FP32", [1.0])), header, -1) is None
    assert check_http(expect(("X", "INT8", [1])), header, -1).message == "X is NOPE, expected INT8"
    assert check_http(expect(("O", "INT8", [300 % 128])), header, -1).message == "O is FP32, expected INT8"
    out_of_range = b'{"outputs": [{"name": "O", "datatype": "INT8", "shape": [1], "data": [300]}]}'
    assert check_http(expect(("O", "INT8", [1])), out_of_range, -1).message == "bad response: output O: its data are not INT8 values"


# -- gRPC messages ------------------------------------------------------------------------------


def test_grpc_response_as_triton_sends_it():
    response = grpc_response(OUTPUTS)
    assert check_grpc(expect(*OUTPUTS), response) is None
    assert check_grpc(expect(*OUTPUTS), service_pb2.ModelInferResponse.FromString(response.SerializeToString())) is None
    wrong = ("OUT_FP32", "FP32", np.array([[0.1, -2.0, 4.5, 4.0]], dtype=np.float32))
    error = check_grpc(expect(wrong), response)
    assert error.kind is MISMATCH and error.message == "OUT_FP32 differs at [0, 2]: 3.5, expected 4.5 (beyond rtol 1e-05 + atol 1e-06)"
    assert check_grpc(expect(("NOPE", "FP32", [1.0])), response).message == "NOPE is not in the response"


def test_grpc_typed_contents_and_broken_messages():
    typed = [("F", "FP32", np.array([1.5, 2.0], dtype=np.float32)), ("I", "INT64", np.array([2**40], dtype=np.int64)),
             ("B", "BYTES", np.array([b"x", b"yz"], dtype=np.object_))]  # fmt: skip
    assert check_grpc(expect(*typed), grpc_response(typed, typed=True)) is None
    uneven = grpc_response(OUTPUTS)
    uneven.raw_output_contents.pop()
    error = check_grpc(expect(*OUTPUTS), uneven)
    assert (error.kind, error.code) == (PROTOCOL, "INTERNAL") and "2 raw_output_contents for 3 outputs" in error.message
    short = grpc_response([("H", "FP16", np.array([1.0, 2.0], dtype=np.float16))])
    del short.raw_output_contents[:]
    error = check_grpc(expect(("H", "FP16", [1.0, 2.0])), short)
    assert (error.kind, error.code) == (PROTOCOL, "INTERNAL") and "FP16 has no typed contents" in error.message
    assert check_grpc(expect(("H", "FP32", [1.0, 2.0])), short).message == "H is FP16, expected FP32"  # not read
    cut = grpc_response([("F", "FP32", np.array([1.0, 2.0], dtype=np.float32))])
    cut.raw_output_contents[0] = cut.raw_output_contents[0][:7]
    error = check_grpc(expect(("F", "FP32", [1.0, 2.0])), cut)
    assert (error.kind, error.code) == (PROTOCOL, "INTERNAL") and "F has 7 bytes, not a whole number" in error.message


# -- fuzzed: arbitrary or mutated bytes end in a typed error or a mismatch, never an exception ----

FUZZ_EXPECTED = expect(*OUTPUTS, ("OUT_BOOL", "BOOL", [[True]]), ("OUT_BF16", "BF16", [[1.0, 2.0]]))
DATATYPES = st.sampled_from(["FP32", "FP16", "BF16", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "FP64", "NOPE"])
NAMES = st.sampled_from(["OUT_FP32", "OUT_INT32", "OUT_BYTES", "OUT_BOOL", "OUT_BF16", "OTHER"])
fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _settled(error) -> None:
    assert error is None or error.kind in (MISMATCH, PROTOCOL)


@fuzz
@given(st.binary(max_size=400), st.integers(min_value=-2, max_value=500))
def test_fuzz_http_arbitrary_bodies(body, header_length):
    _settled(check_http(FUZZ_EXPECTED, body, header_length))


@fuzz
@given(st.data())
def test_fuzz_http_mutated_bodies(data):
    body, header_length = http_body(OUTPUTS)
    body = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    _settled(check_http(FUZZ_EXPECTED, bytes(body[:cut]), header_length))


@fuzz
@given(st.lists(st.fixed_dictionaries({
    "name": NAMES, "datatype": DATATYPES,
    "shape": st.lists(st.one_of(st.integers(0, 5), st.integers(-3, 2**40), st.booleans(), st.text(max_size=2)), max_size=3),
    "parameters": st.one_of(st.none(), st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-2, 40), st.floats(), st.text())})),
    "data": st.one_of(st.none(), st.lists(st.one_of(st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3), st.booleans()), max_size=4)),
}), max_size=4), st.binary(max_size=120))  # fmt: skip
def test_fuzz_http_arbitrary_headers(outputs, binary):
    header = json.dumps({"outputs": outputs}).encode()
    _settled(check_http(FUZZ_EXPECTED, header + binary, len(header)))


@fuzz
@given(st.binary(max_size=300))
def test_fuzz_grpc_arbitrary_messages(raw):
    try:
        response = service_pb2.ModelInferResponse.FromString(raw)
    except DecodeError:  # the transport's protocol error already, before any check
        return
    _settled(check_grpc(FUZZ_EXPECTED, response))


@fuzz
@given(st.lists(st.tuples(NAMES, DATATYPES, st.lists(st.integers(-2**63, 2**63 - 1), max_size=3), st.binary(max_size=40)),
                max_size=5), st.booleans())  # fmt: skip
def test_fuzz_grpc_arbitrary_outputs(outputs, raw_contents):
    response = service_pb2.ModelInferResponse()
    for name, datatype, shape, raw in outputs:
        entry = response.outputs.add()
        entry.name, entry.datatype = name, datatype
        entry.shape.extend(shape)
        entry.contents.fp32_contents.extend([1.0] * (len(raw) % 3))
        entry.contents.bytes_contents.append(raw)
        if raw_contents:
            response.raw_output_contents.append(raw)
    _settled(check_grpc(FUZZ_EXPECTED, response))


# -- validation_data read from perf_analyzer's formats ------------------------------------------

MODEL = ({"name": "right", "inputs": [{"name": "IN", "datatype": "FP32", "shape": [-1, 4]}],
          "outputs": [{"name": "OUT_FP32", "datatype": "FP32", "shape": [-1, 4]},
                      {"name": "OUT_BYTES", "datatype": "BYTES", "shape": [-1, 1]},
                      {"name": "OUT_VAR", "datatype": "INT32", "shape": [-1, -1]}]},
         {"max_batch_size": 4})  # fmt: skip


def build(tmp_path, document, **options):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(document))
    config = build_config({"input-data": str(path), **{k.replace("_", "-"): v for k, v in options.items()}})
    return build_request_inputs(model_inputs(*MODEL, config.inputs.batch_size), config.inputs)


def entry(value: float) -> dict:
    return {"IN": [value] * 4}


def test_validation_data_gives_each_request_its_expected_outputs(tmp_path):
    document = {"data": [entry(1), entry(2), entry(3)],
                "validation_data": [{"OUT_FP32": [1, 1, 1, 1], "OUT_BYTES": ["sum=4"]},
                                    {"OUT_FP32": {"content": [2, 2, 2, 2], "shape": [4]}}, {}]}  # fmt: skip
    first, second, third = build(tmp_path, document, validation_rtol=0.5, validation_atol=0.25)
    assert isinstance(first, RequestInputs) and first[0].name == "IN"
    fp32, text = first.expected.outputs
    assert (fp32.name, fp32.shape, fp32.values.tolist()) == ("OUT_FP32", (1, 4), [1.0] * 4)
    assert (text.name, text.datatype, text.shape, text.raw) == ("OUT_BYTES", "BYTES", (1, 1), b"\x05\x00\x00\x00sum=4")
    assert (first.expected.rtol, first.expected.atol) == (0.5, 0.25)
    assert [o.name for o in second.expected.outputs] == ["OUT_FP32"]
    assert third.expected is None  # an empty entry checks nothing: its responses are not decoded
    (plain,) = build(tmp_path, {"data": [entry(1)]})
    assert plain.expected is None


def test_validation_data_batches_with_its_data_entries(tmp_path):
    document = {"data": [entry(1), entry(2), entry(3)],
                "validation_data": [{"OUT_FP32": [1] * 4, "OUT_VAR": [7]}, {"OUT_FP32": [2] * 4, "OUT_VAR": {"content": [8, 9], "shape": [2]}},
                                    {"OUT_FP32": [3] * 4, "OUT_VAR": [10, 11, 12]}]}  # fmt: skip
    first, second = build(tmp_path, document, batch_size=2)
    fp32, var = first.expected.outputs
    assert fp32.shape == (2, 4) and fp32.values.tolist() == [1.0] * 4 + [2.0] * 4
    assert var.shape is None and var.values.tolist() == [7, 8, 9]  # one entry left the shape open
    fp32, var = second.expected.outputs  # entries 2 and 0 (wrapping round)
    assert fp32.values.tolist() == [3.0] * 4 + [1.0] * 4 and var.values.tolist() == [10, 11, 12, 7]


@pytest.mark.parametrize(
    ("validation", "options", "message"),
    [([{}], {}, r'"validation_data" is 1 entries: give one entry per "data" entry \(2\)'),
     ({"OUT_FP32": [1]}, {}, r'"validation_data" is not a list: give one entry per "data" entry \(2\)'),
     ([{"NOPE": [1]}, {}], {}, r"validation_data\[0\] has output 'NOPE', which the model does not have: its outputs are OUT_FP32, OUT_BYTES, OUT_VAR"),
     ([{}, {"OUT_FP32": [1, 2, 3]}], {}, r"validation_data\[1\]: OUT_FP32 has 3 elements, shape \[4\] needs 4"),
     ([{}, {"OUT_FP32": {"content": [1] * 4, "shape": [2, 2]}}], {}, r"validation_data\[1\]: OUT_FP32.shape \[2, 2\] does not fit"),
     ([{}, {"OUT_BYTES": [1]}], {}, r"validation_data\[1\]: OUT_BYTES holds 1, which is not BYTES"),
     ([[{"OUT_FP32": [1] * 4}], {}], {}, r"validation_data\[0\] is not an object of output name: value"),
     ([{"OUT_FP32": [1] * 4}, {}], {"batch_size": 2}, r"validation_data entries batched together \(-b 2\) check different outputs")],
)  # fmt: skip
def test_bad_validation_data_is_one_line(tmp_path, validation, options, message):
    with pytest.raises(UsageError, match=message):
        build(tmp_path, {"data": [entry(1), entry(2)], "validation_data": validation}, **options)


def test_directory_with_files_named_after_outputs(tmp_path):
    (tmp_path / "IN").write_bytes(np.ones(4, dtype=np.float32).tobytes())
    (tmp_path / "OUT_FP32").write_bytes(np.full(4, 2, dtype=np.float32).tobytes())
    (tmp_path / "OUT_BYTES").write_bytes(b"sum=4\n")
    config = build_config({"input-data": str(tmp_path)})
    (request,) = build_request_inputs(model_inputs(*MODEL, 1), config.inputs)
    fp32, text = request.expected.outputs
    assert fp32.shape == (1, 4) and fp32.values.tolist() == [2.0] * 4 and text.raw == b"\x05\x00\x00\x00sum=4"
    (tmp_path / "OUT_FP32").write_bytes(b"12345")
    with pytest.raises(UsageError, match="OUT_FP32 has 5 bytes, not a whole number of FP32 elements"):
        build_request_inputs(model_inputs(*MODEL, 1), config.inputs)


@pytest.mark.parametrize(("flag", "value", "line"), [
    ("--validation-rtol", "-1", "--validation-rtol must be a number of 0 or more, got -1: fix --validation-rtol"),
    ("--validation-atol", "nan", "--validation-atol must be a finite number, got nan"),
])  # fmt: skip
def test_bad_tolerances_exit_2_with_one_line(flag, value, line, capsys):
    assert main(["run", "-u", "127.0.0.1:1", "-m", "right", flag, value]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"loadgen: error: {line}"]


# -- the real server ----------------------------------------------------------------------------

FAST = ["-p", "1000", "-r", "5", "-s", "50"]
ITEMS = [[0.1, -2.0, 3.5, 4.0], [1.0, 2.0, 3.0, 4.0], [-0.5, 0.25, 0.0, 2.5]]


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    server = EmbeddedServer(REPOSITORY, tmp_path_factory.mktemp("validation") / "server.log")
    try:
        yield server.start()
    finally:
        server.stop()


def expected_of(item: list[float], fp32_off: float = 0.0) -> dict:
    """What the models answer for one item: FP32 written off by a relative `fp32_off` (within tolerance)."""
    fp32 = np.float32(item)
    return {
        "OUT_FP32": [float(v) * (1 + fp32_off) for v in fp32],
        "OUT_FP16": fp32.astype(np.float16).astype(float).tolist(),
        "OUT_INT32": np.rint(fp32).astype(int).tolist(),
        "OUT_BOOL": (fp32 > 0).tolist(),
        "OUT_BYTES": [f"sum={fp32.sum():g}"],
    }


def input_file(tmp_path: Path, fp32_off: float = 0.0) -> Path:
    path = tmp_path / "validated.json"
    path.write_text(json.dumps({"data": [{"IN": item} for item in ITEMS],
                                "validation_data": [expected_of(item, fp32_off) for item in ITEMS]}))  # fmt: skip
    return path


def run(triton, protocol: str, model: str, data: Path, report: Path, *more: str) -> int:
    url = triton.http if protocol == "http" else triton.grpc
    return main(["run", "-u", url, "-i", protocol, "-m", model, "--input-data", str(data), "--concurrency-range", "2",
                 *FAST, "--report-dir", str(report), *more])  # fmt: skip


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_model_wrong_one_time_in_ten_is_caught(triton, protocol, tmp_path, capsys):
    code = run(triton, protocol, "wrong-one-in-ten", input_file(tmp_path), tmp_path / "report")
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    (level,) = summary["levels"]
    assert level["error_rate"] == pytest.approx(0.10, abs=0.03)
    (kind,) = level["errors"]["kinds"]
    assert kind["kind"] == "output mismatch" and kind["code"] is None
    assert kind["count"] == level["client"]["error_count"] > 0
    assert all(message.startswith("output mismatch: OUT_FP32 differs at [0, 2]: ") for message in kind["messages"])
    assert "expected" in next(iter(kind["messages"])) and "output mismatch" in out
    assert (summary["config"]["validation_rtol"], summary["config"]["validation_atol"]) == (1e-5, 1e-6)


@pytest.mark.parametrize("protocol", ["http", pytest.param("grpc", marks=pytest.mark.slow)])
def test_a_model_that_answers_right_has_no_mismatch(triton, protocol, tmp_path):
    # FP32 expectations written off by 3e-6 relative: other bytes, within the default rtol of 1e-5
    data = input_file(tmp_path, fp32_off=3e-6)
    assert run(triton, protocol, "right", data, tmp_path / "report", "-b", "2") == 0
    (level,) = json.loads((tmp_path / "report" / "summary.json").read_text())["levels"]
    assert level["error_rate"] == 0 and level["client"]["request_count"] > 0
    # the same expectations with a tolerance below their offset: every request a mismatch
    assert run(triton, protocol, "right", data, tmp_path / "tight", "-b", "2", "--validation-rtol", "1e-7") == 0
    (level,) = json.loads((tmp_path / "tight" / "summary.json").read_text())["levels"]
    assert level["error_rate"] == 1.0 and level["errors"]["kinds"][0]["kind"] == "output mismatch"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_transports_check_only_requests_with_expected_outputs(triton, protocol):
    """Without expected outputs a response is not checked (check_ns 0); with them it is, after its timing."""
    tensor = InputTensor("IN", "FP32", (1, 4), np.float32([ITEMS[1]]).tobytes())
    right = expect(("OUT_FP32", "FP32", [ITEMS[1]]), ("OUT_FP16", "FP16", [ITEMS[1]]), ("OUT_INT32", "INT32", [[1, 2, 3, 4]]),
                   ("OUT_BOOL", "BOOL", [[True] * 4]), ("OUT_BYTES", "BYTES", [[b"sum=10"]]))  # fmt: skip
    wrong = expect(("OUT_INT32", "INT32", [[1, 2, 3, 5]]))

    async def go():
        url = triton.http if protocol == "http" else triton.grpc
        async with open_transport(protocol, url) as transport:
            outputs = ["OUT_FP32", "OUT_FP16", "OUT_INT32", "OUT_BOOL", "OUT_BYTES"]
            plain = await transport.infer(transport.prepare("right", "", [tensor], outputs))
            unchecked = await transport.infer(transport.prepare("right", "", RequestInputs([tensor]), outputs))
            checked = await transport.infer(transport.prepare("right", "", RequestInputs([tensor], right), outputs))
            failed = await transport.infer(transport.prepare("right", "", RequestInputs([tensor], wrong), outputs))
            return plain, unchecked, checked, failed

    plain, unchecked, checked, failed = asyncio.run(go())
    assert plain.error is unchecked.error is checked.error is None
    assert plain.check_ns == unchecked.check_ns == 0 and checked.check_ns > 0
    assert failed.error.kind is MISMATCH and failed.error.message == "OUT_INT32 differs at [0, 3]: 4, expected 5"


def test_validation_data_the_model_does_not_fit_stops_before_any_load(triton, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": [{"IN": ITEMS[0]}], "validation_data": [{"OUT_FP32": [1, 2, 3]}]}))
    assert run(triton, "http", "right", path, tmp_path / "report") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"loadgen: error: --input-data {path}, validation_data[0]: OUT_FP32 has 3 elements, shape [4] needs 4"
