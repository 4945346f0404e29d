"""The socket-free HTTP/1.1 response parser (loadgen.protocol.http1): generated valid responses
parse the same however their bytes are split; arbitrary and mutated bytes end in responses, a
"need more" state or a ProtocolError, never another exception or a hang; and each rule alone."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.protocol.http1 import (
    CHUNKED,
    LENGTH,
    MAX_CHUNK_LINE_BYTES,
    MAX_HEAD_BYTES,
    UNTIL_CLOSE,
    ProtocolError,
    Response,
    ResponseParser,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Hung(Exception):
    pass


@contextmanager
def bounded(seconds: float = 10.0):
    """Fails the test, rather than hanging it, if the parser loops: an infinite loop never returns
    to a deadline check, so a timer signal interrupts it."""

    def alarm(signum, frame):
        raise Hung(f"the parser did not return within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse(pieces: list[bytes], keep_body: bool = True) -> tuple[list[Response], str | None, bool]:
    """Feeds the pieces in order, then the end of the connection: (responses, the ProtocolError's
    text or None, whether a response was left incomplete)."""
    parser = ResponseParser(keep_body)
    responses: list[Response] = []
    with bounded():
        try:
            for piece in pieces:
                response = parser.feed(piece)
                while response is not None:  # pipelined: the next one may already be in hand
                    assert isinstance(response, Response)
                    responses.append(response)
                    response = parser.feed(b"")
            response = parser.feed_eof()
            if response is not None:
                responses.append(response)
        except ProtocolError as exc:
            assert str(exc), "a protocol error says what is wrong"
            return responses, str(exc), False
    return responses, None, parser.started


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def one(data: bytes, keep_body: bool = True) -> Response:
    responses, error, incomplete = parse([data], keep_body)
    assert error is None and not incomplete and len(responses) == 1, (responses, error, incomplete)
    return responses[0]


def refused(data: bytes) -> str:
    responses, error, _ = parse([data])
    assert error is not None, responses
    return error


# -- generated valid responses ----------------------------------------------------------------

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
READ_FIELDS = {"content-length", "transfer-encoding", "connection", "inference-header-content-length"}
VALUE_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]

names = st.text(TOKEN, min_size=1, max_size=12).filter(lambda n: n.lower() not in READ_FIELDS)
values = st.lists(st.sampled_from(VALUE_BYTES), max_size=30).map(bytes).map(lambda v: v.strip(b" \t"))
other_fields = st.lists(st.tuples(names, values), max_size=5)
ows = st.sampled_from([b"", b" ", b"  ", b"\t"])


def spelled(name: str):
    """A field name in any letter case."""
    return st.sampled_from([name, name.lower(), name.upper(), name.title()]).map(str.encode)


@dataclass
class Spec:
    head: bytes
    body: bytes  # what goes on the wire after the head
    expected: Response  # with keep_body on


@st.composite
def interim(draw) -> tuple[bytes, int]:
    status = draw(st.sampled_from([100, 102, 103, 150, 199]))
    fields = draw(other_fields)
    if status == 103:
        fields.append(("Link", b"</style.css>; rel=preload; as=style"))
    lines = b"".join(b"\r\n%s:%s%s" % (n.encode(), draw(ows), v) for n, v in fields)
    return b"HTTP/1.1 %d %s%s\r\n\r\n" % (status, draw(st.sampled_from([b"Continue", b"Early Hints", b""])), lines), status


@st.composite
def response(draw, until_close_allowed: bool) -> Spec:
    http11 = draw(st.sampled_from([True, True, True, False]))
    status = draw(st.integers(0, 999).filter(lambda s: not 100 <= s < 200) | st.sampled_from([200, 204, 304, 404, 500]))
    no_body = status in (204, 304)
    framings = [LENGTH] + ([CHUNKED] if http11 else []) + ([UNTIL_CLOSE] if until_close_allowed else [])
    framing = LENGTH if no_body else draw(st.sampled_from(framings))
    body = b"" if no_body else draw(st.binary(max_size=300))
    fields: list[bytes] = [b"%s:%s%s" % (n.encode(), draw(ows), v) for n, v in draw(other_fields)]

    connection = draw(st.sampled_from([None, b"close", b"keep-alive", b"Keep-Alive", b"upgrade, close", b"te"]))
    if connection is not None:
        fields.append(draw(spelled("Connection")) + b": " + connection)
    tokens = {t.strip().lower() for t in (connection or b"").split(b",")}
    keep_alive = b"close" not in tokens and (http11 or b"keep-alive" in tokens)

    ih_len = -1
    if draw(st.booleans()):
        ih_len = draw(st.integers(0, len(body)))
        fields.append(draw(spelled("Inference-Header-Content-Length")) + b":" + draw(ows) + str(ih_len).encode())

    wire = body
    if framing is LENGTH:
        length = b"%d" % len(body)
        copies = draw(st.sampled_from([[length], [length, length], [length + b", " + length]]))
        if no_body:
            copies = [b"%d" % draw(st.integers(0, 99))] if draw(st.booleans()) else []  # ignored for 204 and 304
        fields += [draw(spelled("Content-Length")) + b":" + draw(ows) + c + draw(ows) for c in copies]
    elif framing is CHUNKED:
        fields.append(draw(spelled("Transfer-Encoding")) + b": " + draw(st.sampled_from([b"chunked", b"gzip, chunked", b"Chunked"])))
        if draw(st.booleans()):  # Transfer-Encoding wins over Content-Length, and the connection ends
            fields.append(b"Content-Length: %d" % draw(st.integers(0, 999)))
            keep_alive = False
        cuts = draw(st.lists(st.integers(0, len(body)), max_size=6))
        wire = b""
        for piece in split(body, cuts):
            if not piece:
                continue
            size = draw(st.sampled_from(["%x", "%X", "%04x"])) % len(piece)
            extension = draw(st.sampled_from([b"", b";name=value", b" ;a", b";a=\"q\""]))
            wire += size.encode() + extension + b"\r\n" + piece + b"\r\n"
        trailers = b"".join(b"%s: %s\r\n" % (n.encode(), v) for n, v in draw(st.lists(st.tuples(names, values), max_size=3)))
        wire += b"0" + draw(st.sampled_from([b"", b";last"])) + b"\r\n" + trailers + b"\r\n"
    else:
        keep_alive = False
    fields = draw(st.permutations(fields))
    reason = draw(st.sampled_from([b" OK", b" Not Found", b" ", b"", b" \xe9t\xe9 fine"]))
    status_line = b"HTTP/1.%d %03d%s" % (1 if http11 else 0, status, reason)
    before = draw(st.lists(interim(), max_size=2)) if http11 else []
    head = b"".join(h for h, _ in before) + status_line + b"".join(b"\r\n" + f for f in fields) + b"\r\n\r\n"
    expected = Response(status, keep_alive, ih_len, body, len(body), framing, tuple(s for _, s in before))
    return Spec(head, wire, expected)


@st.composite
def pipelines(draw) -> list[Spec]:
    count = draw(st.integers(1, 4))
    return [draw(response(until_close_allowed=i == count - 1)) for i in range(count)]


def without_body(expected: Response) -> Response:
    return expected._replace(body=None) if expected.status == 200 else expected


@PROPERTY
@given(pipelines(), st.lists(st.integers(0, 4000), max_size=12), st.booleans())
def test_valid_responses_parse_the_same_however_split(specs, cuts, keep_body):
    wire = b"".join(s.head + s.body for s in specs)
    expected = [s.expected if keep_body else without_body(s.expected) for s in specs]
    assert parse([wire], keep_body) == (expected, None, False)
    assert parse(split(wire, cuts), keep_body) == (expected, None, False)
    assert parse([wire[i : i + 1] for i in range(len(wire))], keep_body) == (expected, None, False)


@PROPERTY
@given(pipelines(), st.lists(st.integers(0, 4000), max_size=12))
def test_a_body_taken_as_it_arrives_is_the_whole_body(specs, cuts):
    # As generate_stream's events are read: each piece's body bytes taken at once, de-chunked.
    wire = b"".join(s.head + s.body for s in specs)
    parser = ResponseParser()
    responses, taken = [], b""
    with bounded():
        for piece in split(wire, cuts):
            response = parser.feed(piece)
            while response is not None:
                responses.append(response._replace(body=taken + response.body))
                taken = b""
                response = parser.feed(b"")
            if parser.status:  # 0 until the head is in (and for a status 000, which parses)
                assert parser.status == specs[len(responses)].expected.status
            taken += parser.take_body()
        response = parser.feed_eof()
        if response is not None:
            responses.append(response._replace(body=taken + response.body))
    assert responses == [s.expected for s in specs]


@PROPERTY
@given(pipelines(), st.data())
def test_a_truncated_response_never_completes_wrongly(specs, data):
    wire = b"".join(s.head + s.body for s in specs)
    responses, error, incomplete = parse([wire[: data.draw(st.integers(0, len(wire) - 1))]])
    expected = [s.expected for s in specs]
    assert error is None and len(responses) <= len(specs)
    if len(responses) == len(specs):  # only a body read until close ends where the bytes do
        last, whole = responses[-1], expected[-1]
        assert last.framing is UNTIL_CLOSE and whole.body.startswith(last.body) and last.body != whole.body
        assert responses[:-1] == expected[:-1]
    else:
        assert responses == expected[: len(responses)]


# -- arbitrary and mutated bytes --------------------------------------------------------------

noise = st.binary(max_size=600) | st.builds(lambda rest: b"HTTP/1.1 " + rest, st.binary(max_size=600))


@st.composite
def mutated(draw) -> bytes:
    specs = draw(pipelines())
    wire = bytearray(b"".join(s.head + s.body for s in specs))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(wire)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        chunk = draw(st.sampled_from([b"\n", b"\r", b"\r\n", b"\x00", b" ", b":", b";", b"0x", b"-", b"_", b",", b"1"]) | st.binary(min_size=1, max_size=8))
        if kind == "insert":
            wire[at:at] = chunk
        elif kind == "delete":
            del wire[at : at + len(chunk)]
        elif kind == "replace":
            wire[at : at + len(chunk)] = chunk
        else:
            wire[at:at] = wire[at : at + draw(st.integers(1, 40))]
    return bytes(wire)


def outcome(result) -> tuple:
    """What must not depend on the splits: the responses, whether it failed, whether it needs more."""
    responses, error, incomplete = result
    return responses, error is not None, incomplete


@PROPERTY
@given(noise | mutated(), st.lists(st.integers(0, 4000), max_size=12))
def test_any_bytes_end_in_responses_more_or_a_protocol_error(data, cuts):
    at_once = parse([data])  # parse() fails the test on any exception but ProtocolError, or a hang
    assert outcome(parse(split(data, cuts))) == outcome(at_once)
    assert outcome(parse([data[i : i + 1] for i in range(len(data))])) == outcome(at_once)


def test_a_failed_parser_stays_failed():
    parser = ResponseParser()
    with pytest.raises(ProtocolError, match="101"):
        parser.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    with pytest.raises(ProtocolError, match="101"):
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_work_stays_linear_in_the_bytes_fed_one_at_a_time():
    # Each case, fed byte by byte, would be quadratic (in Python-level steps) if a partial head or
    # line were rescanned from its start at every byte; bounded() turns a crawl into a failure.
    many_lines = b"HTTP/1.1 200 OK" + b"\r\nX:y" * ((MAX_HEAD_BYTES - 100) // 5)
    tiny_chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 20000 + b"0\r\n\r\n"
    long_size_line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * MAX_CHUNK_LINE_BYTES
    start = time.process_time()
    for data, expect_error in [(many_lines + b"\r\nContent-Length: 0\r\n\r\n", False), (tiny_chunks, False),
                               (long_size_line, True), (many_lines * 2, True)]:  # fmt: skip
        responses, error, _ = parse([data[i : i + 1] for i in range(len(data))])
        assert (error is not None) == expect_error, error
    assert time.process_time() - start < 60  # linear: about a second here


# -- the rules, one by one --------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_interim_responses_are_skipped():
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n"
    response = one(b"HTTP/1.1 100 Continue\r\n\r\n" + early_hints + OK)
    assert (response.status, response.body, response.interim) == (200, b"ok", (100, 103))
    assert one(b"HTTP/1.1 199 Whatever\r\nX: 1\r\n\r\n" + b"HTTP/1.1 102 Processing\r\n\r\n" + OK).interim == (199, 102)
    # the interim response's own fields frame nothing: it never has a body
    assert one(b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n" + OK).body == b"ok"


def test_an_interim_response_alone_is_not_the_response():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n") is None
    assert not parser.started  # what the transport times its response from
    assert parser.feed(b"HTTP/1.1 2") is None and parser.started
    assert parser.feed(OK[10:]).status == 200


def test_101_switching_protocols_is_a_protocol_error():
    assert "101 Switching Protocols" in refused(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")


@pytest.mark.parametrize("size_line", [b"a", b"A", b"00a", b"a;ext=1", b"a ;ext", b"a\t;x=\"y\"", b"0000000000000000a"[1:]])
def test_chunk_sizes_are_hex_digits(size_line):
    response = one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n0123456789\r\n0\r\n\r\n")
    assert response.body == b"0123456789" and response.framing is CHUNKED


@pytest.mark.parametrize("size_line", [b"0xa", b"0Xa", b"1_0", b"+a", b"-a", b" a", b"a a", b"", b"g", b"a;b\rc", b"1" * 17])
def test_other_chunk_sizes_are_refused(size_line):
    assert "chunk size" in refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n0123456789\r\n0\r\n\r\n")


def test_a_chunk_size_line_is_bounded():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert "longer than 4096" in refused(head + b"1;" + b"x" * MAX_CHUNK_LINE_BYTES)  # refused before its end comes
    assert one(head + b"1;" + b"x" * (MAX_CHUNK_LINE_BYTES - 2) + b"\r\nz\r\n0\r\n\r\n").body == b"z"


def test_chunk_data_must_end_where_its_size_says():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert "not followed by CRLF" in refused(head + b"2\r\nabc\r\n0\r\n\r\n")
    assert "bare LF" in refused(head + b"2\nab\r\n0\r\n\r\n")


def test_trailers_are_read_and_bounded():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert one(head + b"1\r\nx\r\n0\r\nGrpc-Status: 0\r\nX-Sum: abc\r\n\r\n").body == b"x"
    assert "trailer" in refused(head + b"0\r\nBad Name: 1\r\n\r\n")
    assert "trailer section larger" in refused(head + b"0\r\n" + b"X: 1\r\n" * (MAX_HEAD_BYTES // 6 + 1) + b"\r\n")


@pytest.mark.parametrize("fields", [
    b"Content-Length: 2\r\nContent-Length: 2", b"Content-Length: 2, 2", b"Content-Length: 2,2, 2",
    b"Content-Length:2  \r\nContent-length:  2",
])  # fmt: skip
def test_identical_content_lengths_are_one(fields):
    assert one(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n\r\nok").body == b"ok"


@pytest.mark.parametrize("fields", [b"Content-Length: 2\r\nContent-Length: 3", b"Content-Length: 2, 3", b"Content-Length: 3\r\ncontent-length: 2, 2"])
def test_conflicting_content_lengths_are_refused(fields):
    assert "conflicting Content-Length values (2, 3)" in refused(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n\r\nok")


@pytest.mark.parametrize("value", [b"+2", b"-2", b"0x2", b"2_0", b"2 0", b"", b"two", b"1" * 19])
def test_malformed_content_length_is_refused(value):
    assert "Content-Length" in refused(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nok")


def test_inference_header_length_is_read_and_checked():
    assert one(b"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: 1\r\n" + OK[17:]).inference_header_length == 1
    assert "exceeds Content-Length" in refused(b"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: 3\r\n" + OK[17:])
    assert "Inference-Header-Content-Length" in refused(b"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: x\r\n" + OK[17:])


def test_transfer_encoding_wins_over_content_length_and_ends_the_connection():
    response = one(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert (response.body, response.framing, response.keep_alive) == (b"ok", CHUNKED, False)
    # chunked not last: the body runs until the connection closes (RFC 9112 6.3)
    response = one(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\nokay")
    assert (response.body, response.framing, response.keep_alive) == (b"okay", UNTIL_CLOSE, False)
    # RFC 2616's identity is no encoding at all
    assert one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok").keep_alive
    assert "more than once" in refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert "HTTP/1.0" in refused(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert "empty Transfer-Encoding" in refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\nok")


def test_bare_lf_is_refused_at_once_and_named():
    parser = ResponseParser()
    with pytest.raises(ProtocolError, match="bare LF"):  # not waited on until a CRLFCRLF that never comes
        parser.feed(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    assert "bare LF" in refused(b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 5\r\nContent-Length: 2\r\n\r\nok")
    assert "bare LF" in refused(b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\n\r\nok")


def test_the_head_is_bounded():
    assert "larger than 64 KiB" in refused(b"HTTP/1.1 200 OK\r\nX: " + b"x" * MAX_HEAD_BYTES)
    assert "larger than 64 KiB" in refused(b"HTTP/1.1 200 OK\r\nX: " + b"x" * MAX_HEAD_BYTES + b"\r\nContent-Length: 0\r\n\r\n")
    assert one(b"HTTP/1.1 200 OK\r\nX: " + b"x" * (MAX_HEAD_BYTES - 40) + b"\r\nContent-Length: 2\r\n\r\nok").body == b"ok"


@pytest.mark.parametrize("data,message", [
    (b"SSH-2.0-OpenSSH_9.2", "not an HTTP/1.1 response"),
    (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.1 response"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "whitespace between"),
    (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "malformed header field"),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "NUL"),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR"),
    (b"HTTP/1.1 200 OK\r\n Content-Length: 2\r\n\r\n", "whitespace between the status line"),
    (b"HTTP/1.1 200 OK\r\n\tX: 1\r\n\r\n", "whitespace between the status line"),
])  # fmt: skip
def test_malformed_heads_are_named(data, message):
    assert message in refused(data)


def test_obsolete_line_folding_is_unfolded():
    response = one(b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\tc\r\nContent-Length: 2\r\n\r\nok")
    assert response.body == b"ok"


def test_keep_alive_follows_version_and_connection():
    assert one(OK).keep_alive
    assert not one(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not one(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert one(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not one(b"HTTP/1.1 200 OK\r\n\r\nuntil close").keep_alive


def test_a_200_body_is_counted_not_kept_and_error_bodies_are_kept():
    assert one(OK, keep_body=False)[3:5] == (None, 2)
    error = b'HTTP/1.1 404 Not Found\r\nContent-Length: 15\r\n\r\n{"error":"no"}\n'
    assert one(error, keep_body=False).body == b'{"error":"no"}\n'


def test_no_body_for_204_and_304_whatever_they_say():
    responses, error, incomplete = parse([b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" + OK])
    assert [r.status for r in responses] == [204, 200] and error is None and not incomplete


def test_bytes_beyond_the_framing_wait_in_unparsed():
    parser = ResponseParser()
    assert parser.feed(OK + b"HTTP/1.1 5").status == 200
    assert parser.unparsed == b"HTTP/1.1 5"  # what the transport, which never pipelines, refuses
    assert parser.feed(b"00 Oops\r\nContent-Length: 0\r\n\r\n").status == 500


def test_a_repeated_head_is_answered_from_the_last_one():
    parser = ResponseParser()
    first = parser.feed(OK)
    assert parser.feed(OK) == first  # the same head: parsed once, same answer
    assert parser.feed(OK.replace(b": 2\r\n", b": 3\r\n") + b"!").body == b"ok!"
