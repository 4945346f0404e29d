"""A sequence's request parameters (`sequence_id`, `sequence_start`, `sequence_end`) patched into a
prepared request per send, as loadgen.transport.request_id patches the tracing id: the request is
prepared once with the parameters at a fixed width, and a send writes the prepared bytes before
them, its own parameters, and the prepared bytes after them.

HTTP: a JSON fragment in the request's `parameters`, the id right-aligned in spaces (JSON allows
whitespace before a number) and `true ` padded to `false`'s width. gRPC: three `parameters` map
entries last in the message, the id an int64 varint always 10 bytes long (a protobuf parser takes
a varint with redundant continuation bytes) and each flag a one-byte bool.
"""

from __future__ import annotations

from loadgen.transport.request_id import JOIN_BELOW


def http_fragment(sequence_id: int, start: bool, end: bool) -> bytes:
    """The members of HTTP's request `parameters` for one request of a sequence, at a fixed width."""
    return b'"sequence_id":%20d,"sequence_start":%s,"sequence_end":%s' % (
        sequence_id, b"true " if start else b"false", b"true " if end else b"false")


# A varint's bytes for each 14 bits of a value, continued (_LOW) or, for the top 7 bits, ending
# (_TOP): a send joins five lookups. Encoding the varint bit by bit cost 3.6 us a send, this 0.5 (bytes and flags included).
_LOW = [bytes((0x80 | c & 0x7F, 0x80 | c >> 7)) for c in range(1 << 14)]
_TOP = [bytes((0x80 | c & 0x7F, c >> 7)) for c in range(1 << 7)]


def _varint10(value: int) -> bytes:
    """`value` (0 to 2**63 - 1) as a protobuf varint of exactly 10 bytes."""
    return b"".join((_LOW[value & 0x3FFF], _LOW[value >> 14 & 0x3FFF], _LOW[value >> 28 & 0x3FFF],
                     _LOW[value >> 42 & 0x3FFF], _TOP[value >> 56]))  # fmt: skip


def _map_entry(key: bytes, value: bytes) -> bytes:
    """A ModelInferRequest.parameters (field 4) entry: key (1) and InferParameter (2)."""
    entry = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    return b"\x22" + bytes([len(entry)]) + entry


# The id's entry up to its varint (int64_param, InferParameter field 2: Triton takes no uint64_param
# for it), and the flags' entries (bool_param, field 1) for each (START, END).
_ID_HEAD = _map_entry(b"sequence_id", b"\x10" + _varint10(0))[:-10]
_FLAGS = {(start, end): _map_entry(b"sequence_start", b"\x08" + bytes([start])) + _map_entry(b"sequence_end", b"\x08" + bytes([end]))
          for start in (False, True) for end in (False, True)}  # fmt: skip


def grpc_fields(sequence_id: int, start: bool, end: bool) -> bytes:
    """The ModelInferRequest fields for one request of a sequence, at a fixed width."""
    return _ID_HEAD + _varint10(sequence_id) + _FLAGS[start, end]


HTTP_WIDTH = len(http_fragment(0, False, False))
GRPC_WIDTH = len(grpc_fields(0, False, False))


class SequencePieces:
    """A prepared request around its sequence parameters (`width` bytes from `at`): `head` before
    them, `tail` after, both views of the prepared bytes."""

    __slots__ = ("head", "tail", "_join")

    def __init__(self, data: bytes, at: int, width: int) -> None:
        view = memoryview(data)
        self.head, self.tail = view[:at], view[at + width:]
        self._join = len(data) < JOIN_BELOW

    def wire(self, parameters: bytes) -> bytes | tuple[memoryview, bytes, memoryview]:
        """What a send writes: its bytes (a small request), or its pieces for one writev."""
        pieces = (self.head, parameters, self.tail)
        return b"".join(pieces) if self._join else pieces
