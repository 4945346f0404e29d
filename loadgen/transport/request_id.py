"""Request ids for tracing: every request carries one, so that the trace Triton samples of it names
the request the client recorded (loadgen.tail joins the two).

An id is the run's prefix (random, so that one run's ids never match another's traces) and a
sequence number of ID_DIGITS digits: a fixed width, so a request is prepared once with the id
`PREFIX000000000000` in it, and a send carries the prepared bytes up to the digits, its own
digits, and the prepared bytes after them (HTTP writes the three with one writev, or joined when
the request is small; gRPC puts the id last in its message and the digits last in its DATA
frame). Nothing prepared is changed per send: the pieces are views of the prepared bytes, which
requests still in flight (or in a socket's write buffer) may share safely. bench/http_clients.py (lean-ids) and
bench/grpc_cpu.py (loadgen-ids) measure it (README, "Finding the cause of a tail").
"""

from __future__ import annotations

import secrets

ID_DIGITS = 12
_WRAP = 10**ID_DIGITS  # a number past the width wraps, so the digits keep their width


def run_prefix() -> str:
    """A run's id prefix: 8 random hex digits and a dash."""
    return secrets.token_hex(4) + "-"


def request_id(prefix: str, number: int) -> str:
    """The id a request numbered `number` carries."""
    return f"{prefix}{number % _WRAP:0{ID_DIGITS}d}"


def id_digits(number: int) -> bytes:
    """The part of the id a send patches in: its number, ID_DIGITS wide."""
    return b"%012d" % (number % _WRAP)


def id_number(prefix: str, text: str) -> int | None:
    """The number in one of the run's ids; None for any other id."""
    digits = text[len(prefix):]
    if not text.startswith(prefix) or len(digits) != ID_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits)


# Below this size a request's pieces are joined per send, above it written as they are: on uvloop
# (socketpair) joining added 0.12 µs to a 300-byte write and 0.94 µs to a 61 KB one, a writev of
# the three pieces 0.5 µs at any size.
JOIN_BELOW = 32 * 1024


class IdPieces:
    """A prepared request around its id's digits, which start at `at`: `head` before them, `tail`
    after, both views of the prepared bytes. A send is head + id_digits(number) + tail."""

    __slots__ = ("head", "tail", "_join")

    def __init__(self, data: bytes, at: int) -> None:
        if not data[at : at + ID_DIGITS].isdigit():
            raise ValueError("the prepared request has no id digits there")
        view = memoryview(data)
        self.head, self.tail = view[:at], view[at + ID_DIGITS :]
        self._join = len(data) < JOIN_BELOW

    def wire(self, number: int) -> bytes | tuple[memoryview, bytes, memoryview]:
        """What a send of request `number` writes: its bytes (a small request), or its pieces for
        one writev (a large one: never copied)."""
        pieces = (self.head, id_digits(number), self.tail)
        return b"".join(pieces) if self._join else pieces
