"""Output validation (`validation_data` in an --input-data JSON): does a response hold the outputs
its request's data entry expects?

Pure functions: a response (an HTTP body in KServe v2's binary tensor form, or a parsed gRPC
ModelInferResponse) and the request's ExpectedOutputs in, None or a RequestError out. The error is
an `output_mismatch` when an expected output is missing, of another datatype or shape, or holds a
value that differs, and a `protocol` error when the response's bytes break the tensor format (a
JSON header that is not one, sizes that do not add up, a BYTES element running past its tensor).

The rule (perf_analyzer compares bytes; loadgen allows floating-point noise): BOOL, integer and
BYTES outputs must be equal; FP16, BF16, FP32 and FP64 outputs match as
`numpy.isclose(got, expected, rtol, atol, equal_nan=True)`, i.e. |got - expected| <= atol +
rtol * |expected| element by element, NaN matching NaN. Messages name the output and the first
element that differs, by its index in the output's shape.

Cost: an output whose bytes equal the expected bytes (a deterministic model answering right) is
one memory comparison, nothing decoded; only a difference decodes the values to find and judge it.
The HTTP JSON header of a repeated response is parsed once (cached by its bytes).
bench/validation.py measures it.

The wire codec (`to_wire`, `from_wire`) is also how loadgen.inputs serializes request tensors.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from loadgen.outcome import FailureKind, RequestError, output_mismatch, protocol

# Each fixed-size datatype as numpy holds it on the wire (little-endian); BF16 is 2 bytes on the
# wire and held as float32 (numpy has no bfloat16); BYTES is variable.
_WIRE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"), ("INT8", "i1"), ("INT16", "<i2"), ("INT32", "<i4"), ("INT64", "<i8"),
        ("UINT8", "u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"),
        ("FP16", "<f2"), ("FP32", "<f4"), ("FP64", "<f8"), ("BF16", "<u2"),
    )
}  # fmt: skip
_FLOATING = frozenset({"FP16", "BF16", "FP32", "FP64"})
_LENGTH = struct.Struct("<I")
_SHOWN_CHARS = 40  # a BYTES element in a message, cut short


def wire_element_bytes(datatype: str) -> int | None:
    """The bytes of one `datatype` element on the wire; None for BYTES (variable) or a datatype not known."""
    dtype = _WIRE_DTYPES.get(datatype)
    return dtype.itemsize if dtype is not None else None


class WireError(ValueError):
    """Tensor bytes that are not a tensor of their datatype. The message says why, as a predicate of
    the tensor ("has 5 bytes, not a whole number of ..."), to follow its name."""


def to_wire(datatype: str, array: np.ndarray) -> bytes:
    """A tensor's bytes as both protocols carry them: row-major, little-endian; BYTES elements each
    a 4-byte little-endian length and its bytes; BF16 each float32 rounded to its upper half
    (to nearest, ties to even, as frameworks convert; NaN stays NaN)."""
    if datatype == "BYTES":
        flat = [e if isinstance(e, bytes) else str(e).encode() for e in np.asarray(array, dtype=np.object_).reshape(-1)]
        return b"".join(_LENGTH.pack(len(e)) + e for e in flat)
    if datatype == "BF16":
        single = np.ascontiguousarray(array, dtype="<f4")
        bits = single.view("<u4").astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
        return np.where(np.isnan(single), np.uint16(0x7FC0), rounded).astype("<u2").tobytes()
    return np.ascontiguousarray(array, dtype=_WIRE_DTYPES[datatype]).tobytes()


def from_wire(datatype: str, raw: bytes | bytearray) -> np.ndarray:
    """A tensor's elements from its wire bytes, flat: BYTES as an object array of bytes, BF16 as
    float32, BOOL from any byte (non-zero is true). Raises WireError on bytes that do not divide into
    elements."""
    if datatype == "BYTES":
        return _bytes_elements(raw)
    dtype = _WIRE_DTYPES.get(datatype)
    if dtype is None:
        raise WireError(f"is of datatype {datatype}, which loadgen does not read")
    if len(raw) % dtype.itemsize:
        raise WireError(f"has {len(raw)} bytes, not a whole number of {datatype} elements ({dtype.itemsize} bytes each)")
    if datatype == "BOOL":
        return np.frombuffer(raw, dtype="u1") != 0
    values = np.frombuffer(raw, dtype=dtype)
    if datatype == "BF16":
        return (values.astype("<u4") << 16).view("<f4")
    return values


def json_value_fits(value: Any, datatype: str) -> bool:
    """A JSON value the datatype holds as it is: a string for BYTES, true/false for BOOL, a whole
    number in range for an integer type, a number for a floating-point one."""
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if datatype in _FLOATING:
        return True
    info = np.iinfo(_WIRE_DTYPES[datatype])
    return float(value).is_integer() and info.min <= value <= info.max


def _bytes_elements(raw: bytes | bytearray) -> np.ndarray:
    elements, position, end = [], 0, len(raw)
    view = memoryview(raw)
    while position < end:
        if end - position < 4:
            raise WireError(f"has a BYTES element's 4-byte length cut short at byte {position}")
        (length,) = _LENGTH.unpack_from(view, position)
        position += 4
        if length > end - position:
            raise WireError(f"has BYTES element {len(elements)} of {length} bytes running past the tensor's end")
        elements.append(bytes(view[position : position + length]))
        position += length
    array = np.empty(len(elements), dtype=np.object_)
    array[:] = elements
    return array


@dataclass(frozen=True, eq=False)
class ExpectedOutput:
    """One output a response must hold. `shape` is the whole response tensor's (the batch
    dimension included), or None when validation_data left a variable dimension open: then only
    the element count is checked. `raw` is its wire bytes; `values` its elements, flat (float64 for
    floating-point datatypes)."""

    name: str
    datatype: str
    shape: tuple[int, ...] | None
    raw: bytes
    values: np.ndarray

    @property
    def count(self) -> int:
        return int(self.values.size)


def expected_output(name: str, datatype: str, array: np.ndarray, shape_known: bool) -> ExpectedOutput:
    """The expected output from its values (held as loadgen.inputs reads them: object arrays of
    bytes for BYTES, float32 for BF16). With `shape_known` False, `array`'s shape is no promise.
    The values compared are the datatype's own (3.14 as FP16 is 3.140625), as the model answers."""
    raw = to_wire(datatype, array)
    values = from_wire(datatype, raw)
    if datatype in _FLOATING:
        values = values.astype(np.float64)  # once here, not per response
    return ExpectedOutput(name, datatype, tuple(int(d) for d in array.shape) if shape_known else None, raw, values)


@dataclass(frozen=True, eq=False)
class ExpectedOutputs:
    """What every response of one prepared request must hold, and the tolerances of floating-point
    outputs (--validation-rtol, --validation-atol)."""

    outputs: tuple[ExpectedOutput, ...]
    rtol: float
    atol: float


# -- one output ---------------------------------------------------------------------------------


def _index(flat: int, shape: tuple[int, ...] | None) -> str:
    if not shape:
        return f"[{flat}]"
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


def _shown(value: Any, datatype: str) -> str:
    if datatype == "BYTES":
        text = repr(value)
        return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
    if datatype == "BOOL":
        return "true" if value else "false"
    return f"{value:.9g}" if datatype in _FLOATING else str(int(value))


def _first_difference(expected: ExpectedOutput, got: np.ndarray, rtol: float, atol: float) -> int | None:
    want = expected.values
    if expected.datatype in _FLOATING:
        differs = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:  # BYTES elements compare as bytes objects, elementwise
        differs = got != want
    found = np.flatnonzero(differs)
    return int(found[0]) if found.size else None


def compare_output(
    expected: ExpectedOutput, datatype: str, shape: tuple[int, ...], raw: bytes | bytearray, rtol: float, atol: float
) -> RequestError | None:
    """One output of a response (its datatype, shape and wire bytes) against what was expected."""
    name = expected.name
    if datatype != expected.datatype:
        return output_mismatch(f"{name} is {datatype}, expected {expected.datatype}")
    if any(d < 0 for d in shape):
        return protocol(f"bad response: {name} has shape {list(shape)}")
    if expected.shape is not None and shape != expected.shape:
        return output_mismatch(f"{name} has shape {list(shape)}, expected {list(expected.shape)}")
    count = math.prod(shape)
    if count == expected.count and raw == expected.raw:
        return None
    try:
        got = from_wire(datatype, raw)
    except WireError as exc:
        return protocol(f"bad response: {name} {exc}")
    if got.size != count:
        return protocol(f"bad response: {name} holds {got.size} elements where its shape {list(shape)} has {count}")
    if count != expected.count:
        return output_mismatch(f"{name} has {count} elements, expected {expected.count}")
    flat = _first_difference(expected, got, rtol, atol)
    if flat is None:
        return None
    tolerance = f" (beyond rtol {rtol:g} + atol {atol:g})" if datatype in _FLOATING else ""
    return output_mismatch(
        f"{name} differs at {_index(flat, shape)}: {_shown(got[flat], datatype)}, "
        f"expected {_shown(expected.values[flat], datatype)}{tolerance}"
    )


def _missing(name: str) -> RequestError:
    return output_mismatch(f"{name} is not in the response")


# -- HTTP: a KServe v2 body, JSON header then binary outputs -------------------------------------


class _Broken(Exception):
    """A response that breaks the binary tensor extension (the message says how)."""


def _json_raw(datatype: str, data: Any) -> bytes:
    """An output given in the JSON header's `data` (a server that ignored binary_data), of a
    datatype loadgen reads, as wire bytes."""
    if not isinstance(data, list):
        raise _Broken("its data is not a list")
    try:
        flat = np.asarray(data, dtype=np.object_).reshape(-1)
    except ValueError:  # lists of uneven lengths
        flat = np.array([data], dtype=np.object_)
    if not all(json_value_fits(e, datatype) for e in flat):
        raise _Broken(f"its data are not {datatype} values")
    if datatype == "BYTES":
        return to_wire(datatype, flat)
    return to_wire(datatype, flat.astype(np.float32 if datatype == "BF16" else _WIRE_DTYPES[datatype]))


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise _Broken(f"shape {value!r} is not a list of sizes")
    return tuple(value)


@lru_cache(maxsize=256)
def _http_outputs(header: bytes, binary_bytes: int) -> dict[str, tuple[str, tuple[int, ...], int, Any]]:
    """The outputs a response's JSON header describes: name -> (datatype, shape, offset into the
    binary part, size) for a binary output, (datatype, shape, -1, its JSON `data`) for one in JSON.
    Cached: a load test's responses repeat their header byte for byte. Raises _Broken."""
    try:
        document = json.loads(header)
    except (ValueError, UnicodeDecodeError):
        raise _Broken("its JSON header is not JSON") from None
    outputs = document.get("outputs", []) if isinstance(document, dict) else None
    if not isinstance(outputs, list):
        raise _Broken("its JSON header has no list of outputs")
    layout: dict[str, tuple[str, tuple[int, ...], int, Any]] = {}
    offset = 0
    for entry in outputs:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("datatype"), str):
            raise _Broken("an output without a name or datatype")
        name, datatype = entry["name"], entry["datatype"]
        try:
            shape = _shape(entry.get("shape"))
            parameters = entry.get("parameters") or {}
            size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
            if size is None:
                layout[name] = (datatype, shape, -1, entry.get("data"))
                continue
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _Broken(f"binary_data_size {size!r}")
        except _Broken as exc:
            raise _Broken(f"output {name}: {exc}") from None
        layout[name] = (datatype, shape, offset, size)
        offset += size
    if offset != binary_bytes:
        raise _Broken(f"{binary_bytes} bytes of binary outputs where their binary_data_size add up to {offset}")
    return layout


def check_http(expected: ExpectedOutputs, body: bytes | bytearray | None, header_length: int) -> RequestError | None:
    """A 200 response's body against `expected`; `header_length` is its Inference-Header-Content-Length
    (-1 when absent: the body is all JSON)."""
    body = body or b""
    if header_length > len(body):
        return protocol(f"bad response: Inference-Header-Content-Length {header_length} exceeds the body's {len(body)} bytes")
    split = len(body) if header_length < 0 else header_length
    try:
        layout = _http_outputs(bytes(body[:split]), len(body) - split)
    except _Broken as exc:
        return protocol(f"bad response: {exc}")
    for want in expected.outputs:
        found = layout.get(want.name)
        if found is None:
            return _missing(want.name)
        datatype, shape, offset, size = found
        if offset >= 0:  # a slice, not a memoryview: comparing a memoryview with bytes goes element by element
            raw = body[split + offset : split + offset + size]
        elif datatype != want.datatype:
            raw = b""  # compare_output reports the datatype
        else:
            try:
                raw = _json_raw(datatype, size)
            except _Broken as exc:
                return protocol(f"bad response: output {want.name}: {exc}")
        error = compare_output(want, datatype, shape, raw, expected.rtol, expected.atol)
        if error is not None:
            return error
    return None


# -- gRPC: a ModelInferResponse -----------------------------------------------------------------

# The InferTensorContents field of each datatype, for a response without raw_output_contents.
_TYPED_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def _typed_raw(datatype: str, contents: Any) -> bytes:
    field = _TYPED_CONTENTS.get(datatype)
    if field is None:
        raise _Broken(f"no raw_output_contents, and {datatype} has no typed contents")
    values = list(getattr(contents, field))
    if datatype == "BYTES":
        return to_wire("BYTES", np.array(values, dtype=np.object_))
    try:
        return to_wire(datatype, np.array(values, dtype=_WIRE_DTYPES[datatype]))
    except OverflowError:
        raise _Broken(f"typed contents out of {datatype}'s range") from None


def check_grpc(expected: ExpectedOutputs, response: Any) -> RequestError | None:
    """A ModelInferResponse against `expected`. Outputs are in raw_output_contents, one per output
    in order (as Triton sends them), or else in each output's typed contents."""
    outputs, raws = response.outputs, response.raw_output_contents
    if raws and len(raws) != len(outputs):
        return protocol(f"bad response: {len(raws)} raw_output_contents for {len(outputs)} outputs", "INTERNAL")
    for want in expected.outputs:
        for index, output in enumerate(outputs):
            if output.name == want.name:
                break
        else:
            return _missing(want.name)
        if raws:
            raw = raws[index]
        elif output.datatype != want.datatype:
            raw = b""  # compare_output reports the datatype
        else:
            try:
                raw = _typed_raw(output.datatype, output.contents)
            except _Broken as exc:
                return protocol(f"bad response: output {want.name}: {exc}", "INTERNAL")
        error = compare_output(want, output.datatype, tuple(output.shape), raw, expected.rtol, expected.atol)
        if error is not None:  # a broken message is gRPC's INTERNAL, as the transport names it
            return protocol(error.message, "INTERNAL") if error.kind is FailureKind.PROTOCOL else error
    return None
