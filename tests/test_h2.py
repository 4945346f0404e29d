"""The HTTP/2 client state machine (loadgen.protocol.h2) and the gRPC reading of its streams
(loadgen.protocol.grpc_status), without sockets: scripted server byte streams, fed whole and
split anywhere, and arbitrary or mutated frames (hypothesis); unit tests for each rule."""

from __future__ import annotations

import itertools
import struct

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.outcome import FailureKind, timeout
from loadgen.protocol import grpc_status
from loadgen.protocol.h2 import (
    CANCEL,
    MAX_HEADER_LIST_SIZE,
    PREFACE,
    REFUSED_STREAM,
    ConnectionTerminated,
    Failure,
    H2Connection,
    SettingsReceived,
    Stream,
    StreamEnded,
    StreamError,
    request_header_block,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BLOCK = request_header_block(b"h:1", b"/p", False, [(b"content-type", b"application/grpc"), (b"te", b"trailers")])
OK_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
OK_TRAILERS = [("grpc-status", "0")]


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IBI", len(payload) << 8 | ftype, flags, sid) + payload


def settings_frame(*pairs: tuple[int, int]) -> bytes:
    return frame(4, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def message(body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(body)) + body


class Peer:
    """Writes a server's frames: header blocks from one HPACK encoder (Huffman, dynamic table),
    optionally padded, with priority fields, or split over CONTINUATION frames."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def headers(self, sid, pairs, end_stream=False, pad=0, priority=False, pieces=1, huffman=True) -> bytes:
        block = self.encoder.encode(pairs, huffman=huffman)
        cut = [len(block) * i // pieces for i in range(pieces + 1)]
        parts = [block[a:b] for a, b in itertools.pairwise(cut)]
        first = parts[0]
        flags = (0x1 if end_stream else 0) | (0x4 if pieces == 1 else 0)
        if priority:
            first = struct.pack(">IB", 0, 15) + first
            flags |= 0x20
        if pad:
            first = bytes([pad]) + first + bytes(pad)
            flags |= 0x8
        out = frame(1, flags, sid, first)
        for i, part in enumerate(parts[1:], 2):
            out += frame(9, 0x4 if i == pieces else 0, sid, part)
        return out

    @staticmethod
    def data(sid, body, end_stream=False, pad=0) -> bytes:
        if pad:
            return frame(0, 0x8 | (0x1 if end_stream else 0), sid, bytes([pad]) + body + bytes(pad))
        return frame(0, 0x1 if end_stream else 0, sid, body)

    def response(self, sid, body=b"reply", pad=0, pieces=1, split_data=1) -> bytes:
        data = message(body)
        cut = [len(data) * i // split_data for i in range(split_data + 1)]
        out = self.headers(sid, OK_HEADERS, pad=pad, pieces=pieces)
        for a, b in itertools.pairwise(cut):
            out += self.data(sid, data[a:b], pad=pad)
        return out + self.headers(sid, OK_TRAILERS, end_stream=True, pad=pad, pieces=pieces)


def clock():
    return itertools.count(1000, 10).__next__


def connection(streams=0, payload=b"request", block=BLOCK) -> tuple[H2Connection, list[Stream]]:
    """A connection whose preface went out, with `streams` streams started (ids 1, 3, 5, ...)."""
    conn = H2Connection(block, clock())
    conn.initiate()
    started = [Stream(payload, token=i) for i in range(streams)]
    for stream in started:
        assert not conn.start(stream)
    conn.data_to_send()
    return conn, started


def sent_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each frame in what the client sent."""
    if data.startswith(PREFACE):
        data = data[len(PREFACE) :]
    frames, pos = [], 0
    while pos < len(data):
        head, flags, sid = struct.unpack_from(">IBI", data, pos)
        frames.append((head & 0xFF, flags, sid, data[pos + 9 : pos + 9 + (head >> 8)]))
        pos += 9 + (head >> 8)
    return frames


def resets(data: bytes) -> list[tuple[int, int]]:
    return [(sid, struct.unpack(">I", payload)[0]) for ftype, _, sid, payload in sent_frames(data) if ftype == 3]


def ended(events) -> dict[int, Stream]:
    return {e.stream.sid: e.stream for e in events if isinstance(e, StreamEnded)}


def summary(events) -> list:
    """Events as plain data, without the clock's stamps."""
    out = []
    for event in events:
        if isinstance(event, StreamEnded):
            s = event.stream
            out.append(("ended", s.token, s.sid, s.headers, s.trailers, None if s.data is None else bytes(s.data), s.error))
        elif isinstance(event, SettingsReceived):
            out.append(("settings",))
        else:
            assert isinstance(event, ConnectionTerminated)
            out.append(("terminated", event.error, event.by_peer))
    return out


# -- scripted server byte streams, split anywhere ---------------------------------------------

# per stream: how the server answers it
ANSWERS = ("ok", "ok-padded", "ok-continuation", "trailers-only", "interim", "reset", "refused", "http-error", "big-trailer")


@st.composite
def scripts(draw):
    """(number of streams, the server's bytes, what each stream should end with): SETTINGS, PINGs
    and WINDOW_UPDATEs, an answer to each stream in some order, maybe a GOAWAY part way. What a
    stream should end with: (its failure or None, the gRPC status of its outcome error or None,
    its message body or None)."""
    n = draw(st.integers(1, 5))
    peer = Peer()
    out = settings_frame((4, draw(st.sampled_from([1000, 65535]))), (5, 16384), (3, draw(st.integers(1, 8))))
    out += frame(6, 0, 0, b"pingpong") + frame(8, 0, 0, struct.pack(">I", 100_000))
    order = draw(st.permutations(range(n)))
    goaway_at = draw(st.one_of(st.none(), st.integers(0, n)))
    last_sid = None
    expected = {}
    for position, index in enumerate(order):
        sid = 2 * index + 1
        if position == goaway_at:
            out += frame(7, 0, 0, struct.pack(">II", sid, 0) + b"draining")
            last_sid = sid
        answer = draw(st.sampled_from(ANSWERS))
        body = draw(st.binary(max_size=300))
        expect = (None, None, body)
        if answer == "ok":
            out += peer.response(sid, body, split_data=draw(st.integers(1, 3)))
        elif answer == "ok-padded":
            out += peer.response(sid, body, pad=draw(st.integers(1, 20)))
        elif answer == "ok-continuation":
            out += peer.response(sid, body, pieces=draw(st.integers(2, 4)))
        elif answer == "trailers-only":
            out += peer.headers(sid, OK_HEADERS + [("grpc-status", "5"), ("grpc-message", "no%20such")], end_stream=True, priority=True)
            expect = (None, "NOT_FOUND", None)
        elif answer == "interim":
            out += peer.headers(sid, [(":status", "103"), ("link", "</a>; rel=preload")]) + peer.response(sid, body)
        elif answer == "reset":
            out += frame(3, 0, sid, struct.pack(">I", 2))
            expect = (Failure.RESET, "INTERNAL", None)
        elif answer == "refused":
            out += frame(3, 0, sid, struct.pack(">I", REFUSED_STREAM))
            expect = (Failure.RESET, "UNAVAILABLE", None)
        elif answer == "http-error":
            out += peer.headers(sid, [(":status", "503"), ("content-type", "text/plain")]) + peer.data(sid, b"busy", end_stream=True)
            expect = (None, "UNAVAILABLE", b"busy")
        else:
            out += peer.headers(sid, OK_HEADERS) + peer.data(sid, message(body))
            big = OK_TRAILERS + [("grpc-message", "x" * MAX_HEADER_LIST_SIZE)]
            out += peer.headers(sid, big, end_stream=True, huffman=False)  # (Huffman-coding 64 KiB is slow)
            expect = (Failure.TOO_LARGE, "RESOURCE_EXHAUSTED", None)
        out += frame(8, 0, sid, struct.pack(">I", 1000)) if draw(st.booleans()) else b""
        expected[index] = (Failure.GOAWAY, "UNAVAILABLE", None) if last_sid is not None and sid > last_sid else expect
    return n, out, expected


def feed(n: int, pieces: list[bytes]) -> tuple[list, bytes, H2Connection]:
    conn, _ = connection(n, payload=b"x" * 1500)  # more than a 1000-byte window
    events = []
    for piece in pieces:
        events += conn.receive(piece)
    return events, conn.data_to_send(), conn


def came_to(stream: Stream) -> tuple:
    error = grpc_status.outcome_error(stream)
    body = None
    if stream.data is not None and stream.error is None:
        body = bytes(grpc_status.response_message(stream.data)) if error is None else bytes(stream.data)
    return stream.error and stream.error.failure, error and error.code, body


@PROPERTY
@given(scripts(), st.lists(st.integers(0, 10**6), max_size=12))
def test_split_anywhere_gives_the_same_events_as_at_once(script, cuts):
    n, data, expected = script
    whole_events, whole_sent, whole = feed(n, [data])
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    split_events, split_sent, split = feed(n, pieces)
    assert summary(split_events) == summary(whole_events)
    assert split_sent == whole_sent
    assert not split.buf and not whole.buf  # every frame consumed
    # every stream ended, in exactly one event, as the script said
    streams = {s.token: s for s in ended(whole_events).values()}
    assert {token: came_to(s) for token, s in streams.items()} == expected
    assert len([e for e in whole_events if isinstance(e, StreamEnded)]) == n


# -- arbitrary and mutated frames ----------------------------------------------------------------

SIDS = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 99, 2**31 - 1])


@st.composite
def any_frame(draw):
    ftype = draw(st.integers(0, 11))
    flags = draw(st.integers(0, 255))
    payload = draw(st.binary(max_size=40))
    if draw(st.booleans()):  # a payload of the size the type wants, more often than chance
        payload = (payload + bytes(8))[: {2: 5, 3: 4, 4: 6, 6: 8, 7: 8, 8: 4}.get(ftype, len(payload))]
    return frame(ftype, flags, draw(SIDS), payload)


@st.composite
def mutated(draw):
    """A valid script, then: frames of any kind inserted, bytes flipped, cut short."""
    n, data, _ = draw(scripts())
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(any_frame())
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return n, bytes(data)


def check_ends_well(n: int, data: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    conn, started = connection(n)
    events = []
    for piece in pieces:
        events += conn.receive(piece)  # never raises
        sent = conn.data_to_send()
        assert len(sent) <= 2 * len(piece) + 100 * n  # acknowledgements and resets, no more
    events += conn.connection_lost("test over")
    assert len(conn.buf) < len(data) + 1
    for event in events:
        assert type(event) in (StreamEnded, SettingsReceived, ConnectionTerminated)
        if isinstance(event, StreamEnded):
            s = event.stream
            assert s.error is None or isinstance(s.error, StreamError)
            if s.error is None:  # a response: headers that are not interim, and an end
                assert s.headers is not None and not s.headers[0][1].startswith(b"1")
            # what the gRPC layer makes of it is a typed outcome, never an exception
            error = grpc_status.outcome_error(s)
            assert error is None or error.kind in FailureKind
    # every stream ended exactly once: a response, a stream error or a connection error
    tokens = [e.stream.token for e in events if isinstance(e, StreamEnded)]
    assert sorted(tokens) == [s.token for s in started]
    assert not conn.streams and not conn.queued and conn.receive(b"more") == []


@PROPERTY
@given(mutated(), st.lists(st.integers(0, 10**6), max_size=6))
def test_mutated_scripts_end_in_events_or_typed_errors(script, cuts):
    check_ends_well(*script, cuts)


@PROPERTY
@given(st.integers(1, 4), st.lists(any_frame(), max_size=12), st.lists(st.integers(0, 10**6), max_size=4))
def test_arbitrary_frames_end_in_events_or_typed_errors(n, frames, cuts):
    check_ends_well(n, settings_frame() + b"".join(frames), cuts)


@PROPERTY
@given(st.integers(1, 3), st.binary(max_size=300))
def test_arbitrary_bytes_end_in_events_or_typed_errors(n, data):
    check_ends_well(n, data, [])


@PROPERTY
@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_header_blocks_decode_or_fail_typed(block, end_stream):
    conn, (stream,) = connection(1)
    events = conn.receive(settings_frame() + frame(1, 0x4 | (0x1 if end_stream else 0), 1, block))
    assert all(type(e) in (StreamEnded, SettingsReceived, ConnectionTerminated) for e in events)
    if any(isinstance(e, ConnectionTerminated) for e in events):
        assert stream.error.failure is Failure.PROTOCOL


def test_floods_end_in_a_connection_error_with_bounded_buffering():
    # endless CONTINUATION: the header block may not grow without bound
    conn, (stream,) = connection(1)
    events = conn.receive(settings_frame() + frame(1, 0, 1, b"\x88"))
    piece = frame(9, 0, 1, b"\x40" * 16000)
    for _ in range(40):
        events += conn.receive(piece)
        if conn.failed:
            break
    assert stream.error.failure is Failure.PROTOCOL and "header block over" in stream.error.message
    assert len(conn.continuation or ()) == 0 and conn.receive(piece) == []
    # a frame of the largest size is buffered until it is whole, and no further
    conn, _ = connection(1)
    conn.receive(settings_frame() + frame(0, 0, 1, b"")[:3] + b"\xff\xff")
    assert len(conn.buf) < 20


# -- unit tests: the rules one by one ------------------------------------------------------------


def test_preface_advertises_our_settings_and_window():
    conn = H2Connection(BLOCK)
    conn.initiate()
    data = conn.data_to_send()
    assert data.startswith(PREFACE)
    (settings, _, _, payload), (update, _, _, increment) = sent_frames(data)
    assert settings == 4 and update == 8
    ours = dict(struct.iter_unpack(">HI", payload))
    assert ours == {2: 0, 4: 2**31 - 1, 5: 2**24 - 1, 6: MAX_HEADER_LIST_SIZE}
    assert struct.unpack(">I", increment)[0] == 2**31 - 1 - 65535


def test_a_response_with_trailers():
    conn, (stream,) = connection(1)
    peer = Peer()
    events = conn.receive(settings_frame() + peer.response(1, b"hi", pad=3, pieces=2))
    assert summary(events)[0] == ("settings",)
    assert stream.error is None and stream.headers == [(b":status", b"200"), (b"content-type", b"application/grpc")]
    assert stream.trailers == [(b"grpc-status", b"0")] and bytes(stream.data) == message(b"hi")
    assert stream.t_first and stream.t_sent and stream.t_done >= stream.t_first
    assert grpc_status.outcome_error(stream) is None and bytes(grpc_status.response_message(stream.data)) == b"hi"
    assert sent_frames(conn.data_to_send()) == [(4, 1, 0, b"")]  # SETTINGS acknowledged; the stream was closed both ways


def test_interim_responses_are_skipped():
    conn, (stream,) = connection(1)
    peer = Peer()
    interim = peer.headers(1, [(":status", "100")]) + peer.headers(1, [(":status", "103"), ("link", "</x>")])
    events = conn.receive(settings_frame() + interim)
    assert stream.headers is None and not ended(events)
    events = conn.receive(peer.response(1))
    assert stream.error is None and stream.headers[0] == (b":status", b"200") and ended(events) == {1: stream}


@pytest.mark.parametrize("status,end_stream", [("100", True), ("101", False)])
def test_an_interim_response_ending_the_stream_or_switching_protocols_is_malformed(status, end_stream):
    conn, (stream, other) = connection(2)
    peer = Peer()
    conn.receive(settings_frame() + peer.headers(1, [(":status", status)], end_stream=end_stream))
    assert stream.error.failure is Failure.MALFORMED and status in stream.error.message
    assert resets(conn.data_to_send()) == ([] if end_stream else [(1, 1)])
    conn.receive(peer.response(3))
    assert other.error is None and conn.usable  # the connection goes on


def test_refused_stream_is_retryable_and_other_resets_are_not():
    conn, (refused, reset) = connection(2)
    conn.receive(settings_frame() + frame(3, 0, 1, struct.pack(">I", REFUSED_STREAM)) + frame(3, 0, 3, struct.pack(">I", 2)))
    assert refused.error == StreamError(Failure.RESET, REFUSED_STREAM, "the server reset the stream (REFUSED_STREAM)")
    assert refused.error.retryable and not reset.error.retryable
    assert conn.usable and resets(conn.data_to_send()) == []  # never reset back
    failure = grpc_status.outcome_error(refused)
    assert (failure.kind, failure.code) == (FailureKind.GRPC_STATUS, "UNAVAILABLE")
    assert grpc_status.outcome_error(reset).code == "INTERNAL"


def test_goaway_fails_the_streams_above_its_last_id_and_the_queued_ones():
    conn, streams = connection(3)
    queued = Stream(b"late", token="queued")
    conn.receive(settings_frame((3, 3)))
    conn.start(queued)
    assert conn.queued[0] is queued
    peer = Peer()
    events = conn.receive(frame(7, 0, 0, struct.pack(">II", 1, 0) + b"restarting"))
    assert not conn.usable and isinstance(events[-1], ConnectionTerminated) and events[-1].by_peer
    assert [s.error and s.error.failure for s in streams] == [None, Failure.GOAWAY, Failure.GOAWAY]
    assert queued.error.failure is Failure.GOAWAY and all(s.error.retryable for s in [*streams[1:], queued])
    assert streams[1].error is queued.error and "GOAWAY NO_ERROR: restarting" in queued.error.message
    failure = grpc_status.outcome_error(streams[1])
    assert (failure.kind, failure.code) == (FailureKind.CONNECTION, "UNAVAILABLE")
    conn.receive(peer.response(1))  # at or below the last id: answered as usual
    assert streams[0].error is None and not conn.streams
    late = Stream(b"x")
    assert ended(conn.start(late)) == {0: late} and late.error.retryable  # a closed connection starts nothing


def test_a_header_list_over_our_limit_fails_its_stream_alone_and_hpack_stays_in_step():
    conn, (big, small, headers_too) = connection(3)
    peer = Peer()
    huge = "x" * MAX_HEADER_LIST_SIZE
    # the big trailer evicts the whole dynamic table (RFC 7541 4.4); the next blocks must be read
    # against the table as the encoder left it
    data = settings_frame() + peer.headers(1, OK_HEADERS) + peer.data(1, message(b"a"))
    data += peer.headers(1, OK_TRAILERS + [("grpc-message", huge)], end_stream=True)
    data += peer.response(3, b"b")
    data += peer.headers(5, OK_HEADERS + [("x-big", huge)])
    events = conn.receive(data)
    assert big.error.failure is Failure.TOO_LARGE and "trailers are over our header-list limit" in big.error.message
    assert small.error is None and small.headers == [(b":status", b"200"), (b"content-type", b"application/grpc")]
    assert headers_too.error.failure is Failure.TOO_LARGE and "response headers" in headers_too.error.message
    assert resets(conn.data_to_send()) == [(5, CANCEL)]  # stream 1 had ended on both sides already
    assert not any(isinstance(e, ConnectionTerminated) for e in events) and conn.usable
    failure = grpc_status.outcome_error(big)
    assert (failure.kind, failure.code) == (FailureKind.PROTOCOL, "RESOURCE_EXHAUSTED")
    # stream 5's remaining frames are dropped; the connection still carries new streams
    follow = Stream(b"again")
    conn.receive(peer.data(5, b"late", end_stream=True))
    conn.start(follow)
    conn.receive(peer.response(7, b"c"))
    assert follow.sid == 7 and follow.error is None and bytes(follow.data) == message(b"c")


def test_repeated_indexed_blocks_follow_the_dynamic_table():
    """The same indexed-only block means another header once the table has changed."""
    conn, streams = connection(4)

    def added(name: bytes, value: bytes) -> bytes:  # a literal with incremental indexing (RFC 7541 6.2.1)
        return b"\x40" + bytes([len(name)]) + name + bytes([len(value)]) + value

    blocks = [b"\x88" + added(b"x-a", b"1"), b"\x88\xbe", b"\x88" + added(b"x-b", b"2"), b"\x88\xbe"]
    conn.receive(settings_frame() + b"".join(frame(1, 0x5, 2 * i + 1, block) for i, block in enumerate(blocks)))
    assert [s.headers[1] for s in streams] == [(b"x-a", b"1"), (b"x-a", b"1"), (b"x-b", b"2"), (b"x-b", b"2")]


def test_flow_control_both_ways():
    conn, _ = connection(0)
    conn.receive(settings_frame((4, 1000)))
    stream = Stream(b"x" * 2500)
    conn.start(stream)
    first = [f for f in sent_frames(conn.data_to_send()) if f[0] == 0]
    assert sum(len(f[3]) for f in first) == 1000 and stream.t_sent == 0  # the stream's window
    conn.receive(frame(8, 0, 1, struct.pack(">I", 5000)))
    second = [f for f in sent_frames(conn.data_to_send()) if f[0] == 0]
    assert sum(len(f[3]) for f in second) == 1500 and second[-1][1] & 0x1 and stream.t_sent
    # the connection's window, 65535 at first, runs out for a second large stream
    conn.receive(settings_frame((4, 100_000)))
    other = Stream(b"y" * 70000)
    conn.start(other)
    assert sum(len(f[3]) for f in sent_frames(conn.data_to_send()) if f[0] == 0) == 65535 - 2500
    conn.receive(frame(8, 0, 0, struct.pack(">I", 10**6)))
    assert other.payload is None and sum(len(f[3]) for f in sent_frames(conn.data_to_send()) if f[0] == 0) == 2500 + 4465
    # a stream window overflow is that stream's error; a zero increment on the connection, the connection's
    conn.receive(frame(8, 0, 3, struct.pack(">I", 2**31 - 1)))
    assert other.error.code == 3 and resets(conn.data_to_send()) == [(3, 3)] and conn.usable
    conn.receive(frame(8, 0, 0, struct.pack(">I", 0)))
    assert conn.failed and stream.error.failure is Failure.PROTOCOL  # stream 1 was still waiting for its response


def test_a_tail_ends_the_body_in_one_frame_or_across_windows():
    conn, _ = connection(0)
    conn.receive(settings_frame())
    whole = Stream(memoryview(b"head-of-body "), tail=b"000000000042")  # a traced request: its id digits last
    conn.start(whole)
    (data,) = [f for f in sent_frames(conn.data_to_send()) if f[0] == 0]
    assert data[3] == b"head-of-body 000000000042" and data[1] & 0x1 and whole.payload is None
    conn.receive(settings_frame((4, 10)))  # now in pieces, as the stream's window allows
    cut = Stream(b"x" * 15, tail=b"0123456789")
    conn.start(cut)
    conn.receive(frame(8, 0, 3, struct.pack(">I", 100)))
    pieces = [f for f in sent_frames(conn.data_to_send()) if f[0] == 0]
    assert b"".join(f[3] for f in pieces) == b"x" * 15 + b"0123456789" and [len(f[3]) for f in pieces] == [10, 15]
    assert pieces[-1][1] & 0x1 and cut.payload is None


def test_settings_limit_concurrent_streams_and_frame_sizes():
    conn = H2Connection(b"h" * 40000, clock())
    conn.initiate()
    conn.data_to_send()
    streams = [Stream(b"p") for _ in range(3)]
    conn.receive(settings_frame((3, 2)))
    for stream in streams:
        conn.start(stream)
    frames = sent_frames(conn.data_to_send())[1:]
    headers = [f for f in frames if f[0] in (1, 9)]
    assert {f[2] for f in frames} == {1, 3} and len(conn.queued) == 1
    assert [len(f[3]) for f in headers[:3]] == [16384, 16384, 40000 - 2 * 16384]  # CONTINUATION at MAX_FRAME_SIZE
    conn.receive(Peer().headers(1, OK_HEADERS + OK_TRAILERS, end_stream=True))
    assert streams[2].sid == 5 and not conn.queued


@pytest.mark.parametrize(
    "data,what",
    [
        (frame(6, 0, 0, b"pingpong"), "first frame is not SETTINGS"),
        (settings_frame() + frame(5, 0x4, 1, b"\x00\x00\x00\x02\x88"), "PUSH_PROMISE"),
        (settings_frame() + frame(0, 0x8, 1, b"\x05abc"), "padding"),
        (settings_frame() + frame(1, 0x4, 9, b"\x88"), "never opened"),
        (settings_frame() + frame(1, 0x4, 2, b"\x88"), "never opened"),
        (settings_frame() + frame(1, 0x4, 1, b"\xff\xff\xff\x7f"), "HPACK"),
        (settings_frame() + frame(1, 0, 1, b"\x88") + frame(0, 0, 1, b"x"), "inside a header block"),
        (settings_frame() + frame(9, 0x4, 1, b"\x88"), "CONTINUATION outside"),
        (settings_frame() + frame(4, 0, 0, b"\x00"), "SETTINGS of a bad length"),
        (settings_frame((5, 100)), "MAX_FRAME_SIZE"),
        (settings_frame((2, 1)), "ENABLE_PUSH"),
        (settings_frame((4, 2**31)), "INITIAL_WINDOW_SIZE"),
        (settings_frame() + frame(6, 0, 0, b"short"), "PING of a bad length"),
        (settings_frame() + frame(7, 0, 0, b"\x00"), "GOAWAY of a bad length"),
        (settings_frame() + frame(3, 0, 0, bytes(4)), "never opened"),
        (settings_frame() + frame(8, 0, 0, bytes(4)), "WINDOW_UPDATE of 0"),
    ],
)
def test_connection_errors_fail_every_stream_and_say_goaway(data, what):
    conn, streams = connection(2)
    events = conn.receive(data)
    assert isinstance(events[-1], ConnectionTerminated) and not events[-1].by_peer
    assert what in events[-1].error.message and conn.failed and not conn.usable
    assert all(s.error is events[-1].error for s in streams) and len(ended(events)) == 2
    assert [f[0] for f in sent_frames(conn.data_to_send())][-1] == 7  # GOAWAY
    failure = grpc_status.outcome_error(streams[0])
    assert (failure.kind, failure.code) == (FailureKind.PROTOCOL, "INTERNAL")


def test_malformed_responses_fail_their_stream_alone():
    conn, streams = connection(3)
    peer = Peer()
    data = settings_frame() + peer.data(1, b"early")  # DATA before HEADERS
    data += peer.headers(3, OK_HEADERS) + peer.headers(3, OK_TRAILERS)  # trailers without END_STREAM
    data += peer.response(5)
    conn.receive(data)
    assert [s.error and s.error.failure for s in streams] == [Failure.MALFORMED, Failure.MALFORMED, None]
    assert resets(conn.data_to_send()) == [(1, 1), (3, 1)] and conn.usable


def test_ping_is_answered_and_cancel_resets_the_stream():
    conn, (stream, other) = connection(2)
    conn.receive(settings_frame() + frame(6, 0, 0, b"12345678") + frame(6, 1, 0, b"ack-only"))
    assert [(f[0], f[1], f[3]) for f in sent_frames(conn.data_to_send())] == [(4, 1, b""), (6, 1, b"12345678")]
    assert conn.cancel(stream) == [] and resets(conn.data_to_send()) == [(1, CANCEL)]
    conn.receive(Peer().response(1))  # the server's answer to the cancelled stream is dropped
    assert stream.error is None and stream.headers is None and conn.usable


def test_connection_lost_fails_what_is_in_flight():
    conn, streams = connection(2)
    events = conn.connection_lost("reset by peer")
    assert [s.error.failure for s in streams] == [Failure.LOST] * 2 and not streams[0].error.retryable
    assert isinstance(events[-1], ConnectionTerminated) and conn.connection_lost() == []
    failure = grpc_status.outcome_error(streams[0])
    assert (failure.kind, failure.code, failure.message) == (FailureKind.CONNECTION, "UNAVAILABLE", "connection to the server lost: reset by peer")


# -- the gRPC reading of a finished stream ---------------------------------------------------------


def finished(headers, trailers=None, data=None) -> Stream:
    stream = Stream(b"")
    stream.headers, stream.trailers, stream.data = headers, trailers, data
    return stream


@pytest.mark.parametrize(
    "headers,trailers,expected",
    [
        ([(b":status", b"200"), (b"content-type", b"application/grpc")], [(b"grpc-status", b"0")], None),
        ([(b":status", b"200"), (b"content-type", b"application/grpc+proto"), (b"grpc-status", b"0")], None, None),
        ([(b":status", b"503")], None, ("grpc_status", "UNAVAILABLE", "the server answered HTTP 503")),
        ([(b":status", b"418")], None, ("grpc_status", "UNKNOWN", "the server answered HTTP 418")),
        ([(b":status", b"2" * 5000)], None, ("grpc_status", "UNKNOWN", "the server answered HTTP " + "2" * 5000)),
        ([(b":status", b"200"), (b"content-type", b"text/html")], None, ("protocol", "UNKNOWN", "the server answered with content-type 'text/html', not gRPC")),
        ([(b":status", b"200"), (b"content-type", b"application/grpc")], [], ("protocol", "INTERNAL", "the response has no grpc-status")),
        ([(b":status", b"200"), (b"content-type", b"application/grpc")], [(b"grpc-status", b"5"), (b"grpc-message", b"no%20model%0A%E2%9C%93")],
         ("grpc_status", "NOT_FOUND", "no model ✓")),
        ([(b":status", b"200"), (b"content-type", b"application/grpc")], [(b"grpc-status", b"77")], ("grpc_status", "UNKNOWN", "")),
        ([(b":status", b"200"), (b"content-type", b"application/grpc")], [(b"grpc-status", b"9" * 5000)], ("grpc_status", "UNKNOWN", "")),
    ],
)  # fmt: skip
def test_outcome_error_of_a_finished_stream(headers, trailers, expected):
    error = grpc_status.outcome_error(finished(headers, trailers))
    assert (error.kind.value, error.code, error.message) == expected if expected else error is None


def test_deadline_exceeded_from_the_server_is_the_clients_timeout():
    stream = finished([(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"4")])
    assert grpc_status.outcome_error(stream, timeout(500)) == timeout(500)
    assert grpc_status.outcome_error(stream).code == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("data,what", [(None, "no message"), (b"\x01\x00\x00\x00\x00", "compressed"), (message(b"abc")[:-1], "prefix says 3")])
def test_a_bad_grpc_message_is_refused(data, what):
    with pytest.raises(ValueError, match=what):
        grpc_status.response_message(data)


# -- duplex streams (a bidirectional gRPC call) -----------------------------------------------

DUPLEX_BLOCK = request_header_block(b"h:1", b"/duplex", False, [(b"content-type", b"application/grpc")])


def test_a_duplex_stream_keeps_its_body_open_until_end_body():
    conn, _ = connection(0)
    conn.receive(settings_frame())
    conn.data_to_send()
    stream = Stream(b"", token="feed", block=DUPLEX_BLOCK)
    assert not conn.start(stream)
    conn.send(stream, memoryview(b"first "), b"000000000001")
    conn.send(stream, b"second ", b"000000000002")
    frames = sent_frames(conn.data_to_send())
    assert [(f[0], f[1], f[2]) for f in frames] == [(1, 0x4, 1), (0, 0, 1), (0, 0, 1)]  # no END_STREAM anywhere
    assert hpack.Decoder().decode(frames[0][3])[2] == (":path", "/duplex")  # its own header block
    assert [f[3] for f in frames[1:]] == [b"first 000000000001", b"second 000000000002"]
    # responses come into stream.data as they arrive, for the caller to take
    peer = Peer()
    assert conn.receive(peer.headers(1, OK_HEADERS) + peer.data(1, message(b"one"))) == []
    assert stream.data == message(b"one") and stream.headers is not None
    stream.data = None
    conn.receive(peer.data(1, message(b"two")) + peer.data(1, message(b"three")))
    assert bytes(stream.data) == message(b"two") + message(b"three")
    conn.end_body(stream)
    conn.send(stream, b"too late")  # the body is over: nothing
    conn.end_body(stream)
    assert sent_frames(conn.data_to_send()) == [(0, 0x1, 1, b"")]
    events = conn.receive(peer.headers(1, OK_TRAILERS, end_stream=True))
    assert ended(events) == {1: stream} and stream.error is None and not resets(conn.data_to_send())


def test_a_duplex_stream_ended_by_the_server_while_open_is_reset_and_takes_no_more():
    conn, _ = connection(0)
    conn.receive(settings_frame())
    stream = Stream(b"", block=DUPLEX_BLOCK)
    conn.start(stream)
    conn.send(stream, b"request")
    conn.data_to_send()
    peer = Peer()
    events = conn.receive(peer.headers(1, OK_HEADERS + [("grpc-status", "14")], end_stream=True))
    assert ended(events) == {1: stream} and grpc_status.outcome_error(stream).code == "UNAVAILABLE"
    assert resets(conn.data_to_send()) == [(1, 0)]  # our side was open: closed with NO_ERROR
    conn.send(stream, b"more")
    conn.end_body(stream)
    assert conn.data_to_send() == b""
    # a reset by the server, or a lost connection, likewise ends it for good
    other = Stream(b"", block=DUPLEX_BLOCK)
    conn.start(other)
    conn.receive(frame(3, 0, 3, struct.pack(">I", CANCEL)))
    third = Stream(b"", block=DUPLEX_BLOCK)
    conn.start(third)
    conn.data_to_send()
    conn.connection_lost("gone")
    for gone in (other, third):
        conn.send(gone, b"more")
        assert not gone.duplex and gone.error is not None
    assert conn.data_to_send() == b""


def test_a_duplex_stream_queued_or_out_of_window_sends_its_body_in_order():
    conn, _ = connection(0)
    conn.receive(settings_frame((3, 1), (4, 10)))  # one stream at a time, 10-byte stream windows
    unary = Stream(b"u")
    conn.start(unary)
    stream = Stream(b"", block=DUPLEX_BLOCK)
    conn.start(stream)
    conn.send(stream, b"aaaa", b"0001")
    conn.send(stream, b"bbbb", b"0002")  # queued behind the unary stream: the body waits, in order
    assert stream.sid == 0 and stream.payload == b"aaaa0001bbbb0002"
    conn.data_to_send()
    conn.receive(Peer().headers(1, OK_HEADERS + OK_TRAILERS, end_stream=True))
    data = [f for f in sent_frames(conn.data_to_send()) if f[0] == 0]
    assert stream.sid == 3 and b"".join(f[3] for f in data) == b"aaaa0001bb" and not any(f[1] & 0x1 for f in data)
    conn.send(stream, b"cccc", b"0003")  # waiting for window: after what waits
    conn.end_body(stream)  # the end goes with the last of it
    assert conn.data_to_send() == b""
    conn.receive(frame(8, 0, 3, struct.pack(">I", 100)))
    data = [f for f in sent_frames(conn.data_to_send()) if f[0] == 0]
    assert b"".join(f[3] for f in data) == b"bb0002cccc0003" and data[-1][1] & 0x1 and stream.payload is None


def test_a_duplex_stream_ended_before_its_first_message_sends_an_empty_end():
    conn, _ = connection(0)
    conn.receive(settings_frame((3, 0)))  # no streams at all for now
    stream = Stream(b"", block=DUPLEX_BLOCK)
    conn.start(stream)
    conn.end_body(stream)
    conn.data_to_send()
    conn.receive(settings_frame((3, 1)))
    frames = sent_frames(conn.data_to_send())
    assert [(f[0], f[1], f[3]) for f in frames if f[0] in (0, 1)] == [(1, 0x4, DUPLEX_BLOCK), (0, 0x1, b"")]


@PROPERTY
@given(st.lists(st.binary(max_size=40), max_size=8), st.lists(st.integers(0, 10**6), max_size=8), st.integers(1, 4))
def test_a_duplex_streams_data_split_anywhere_comes_whole_and_in_order(bodies, cuts, frames_per_message):
    """The server's DATA frames cut at any byte: what the caller takes after each read, joined, is
    the whole of what was sent."""
    peer = Peer()
    wire = b"".join(message(b) for b in bodies)
    bounds = sorted({len(wire), *range(0, len(wire), max(1, len(wire) // frames_per_message))})  # the DATA frames
    data = settings_frame() + peer.headers(1, OK_HEADERS)
    data += b"".join(peer.data(1, wire[a:b]) for a, b in itertools.pairwise(bounds))
    data += peer.headers(1, OK_TRAILERS, end_stream=True)
    points = sorted({c % (len(data) + 1) for c in cuts})
    conn, _ = connection(0)
    stream = Stream(b"", block=DUPLEX_BLOCK)
    conn.start(stream)
    taken = b""
    events = []
    for a, b in itertools.pairwise([0, *points, len(data)]):
        events += conn.receive(data[a:b])
        if stream.data:
            taken += bytes(stream.data)
            stream.data = None
    assert taken == wire and ended(events) == {1: stream} and stream.error is None
