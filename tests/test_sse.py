"""The socket-free server-sent-events parser (loadgen.protocol.sse): generated streams parse to their
events however their bytes are split; arbitrary and mutated bytes give what a literal reading of
the WHATWG rules gives, split anywhere; and each rule alone."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.protocol.sse import Event, EventParser

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(pieces: list[bytes]) -> list[Event]:
    parser = EventParser()
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def reference(stream: bytes) -> list[Event]:
    """The standard read literally: decode the whole stream, drop a leading BOM, cut it into lines
    (CRLF, LF or CR), and process each line as the standard's steps say."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines, line, i = [], "", 0
    while i < len(text):
        c = text[i]
        if c == "\r" or c == "\n":
            lines.append(line)
            line = ""
            if c == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            line += c
        i += 1
    events, data, kind, last_id = [], "", "", ""
    for line in lines:  # an unterminated last line (in `line`) is never processed
        if line == "":
            if data:
                events.append(Event(kind or "message", data[:-1] if data.endswith("\n") else data, last_id))
            data, kind = "", ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "data":
            data += value + "\n"
        elif field == "event":
            kind = value
        elif field == "id" and "\0" not in value:
            last_id = value
    return events


# -- generated streams ----------------------------------------------------------------------

line_end = st.sampled_from([b"\n", b"\r\n", b"\r"])
text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)


@st.composite
def streams(draw) -> tuple[bytes, list[Event]]:
    """A stream that ends each event with a blank line, with comments, spacing and line endings
    varied, and the events it must give."""
    out, events, last_id = [b"\xef\xbb\xbf"] if draw(st.booleans()) else [], [], ""
    previous_end = b""

    def ended(line: bytes) -> bytes:
        # A CR then an empty line's LF would be one CRLF: after a CR, an empty line ends otherwise.
        nonlocal previous_end
        previous_end = draw(line_end.filter(lambda end: line or previous_end != b"\r" or end != b"\n"))
        return line + previous_end

    for _ in range(draw(st.integers(0, 6))):
        lines, kind = [], ""
        data = draw(st.lists(text, max_size=4))
        if draw(st.booleans()):
            kind = draw(text.filter(lambda t: not t.startswith(" ")))
            lines.append(b"event: " + kind.encode())
        if draw(st.booleans()):
            last_id = draw(text.filter(lambda t: "\0" not in t and not t.startswith(" ")))
            lines.append(b"id: " + last_id.encode())
        lines += [b":" + c.encode() for c in draw(st.lists(text, max_size=2))]  # comments
        lines += [b"retry: 1000"] * draw(st.integers(0, 1))
        lines = draw(st.permutations(lines))
        at = 0
        for value in data:  # data lines among the others, in their order
            at = draw(st.integers(at, len(lines)))
            space = b" " if value.startswith(" ") else draw(st.sampled_from([b"", b" "]))  # one space is dropped
            lines.insert(at, b"data:" + space + value.encode())
            at += 1
        out += [ended(line) for line in lines] + [ended(b"")]
        if data:
            events.append(Event(kind or "message", "\n".join(data), last_id))
    return b"".join(out), events


@PROPERTY
@given(streams(), st.lists(st.integers(0, 2000), max_size=12))
def test_generated_streams_give_their_events_however_split(stream, cuts):
    data, events = stream
    assert parse([data]) == events
    assert parse(split(data, cuts)) == events
    assert parse([data[i : i + 1] for i in range(len(data))]) == events


# -- arbitrary and mutated bytes ------------------------------------------------------------

ALPHABET = [b"\n", b"\r", b"\r\n", b":", b" ", b"data", b"event", b"id", b"x", b"\x00", b"\xef\xbb\xbf", b"\xe2\x82", b"\xac", b"\xff"]
noise = st.binary(max_size=300) | st.lists(st.sampled_from(ALPHABET), max_size=80).map(b"".join)


@st.composite
def mutated(draw) -> bytes:
    wire = bytearray(draw(streams())[0])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(wire)))
        chunk = draw(st.sampled_from(ALPHABET) | st.binary(min_size=1, max_size=6))
        if draw(st.booleans()):
            wire[at:at] = chunk
        else:
            del wire[at : at + len(chunk)]
    return bytes(wire)


@PROPERTY
@given(noise | mutated(), st.lists(st.integers(0, 2000), max_size=12))
def test_any_bytes_read_as_the_standard_says_however_split(data, cuts):
    expected = reference(data)
    assert parse([data]) == expected
    assert parse(split(data, cuts)) == expected
    assert parse([data[i : i + 1] for i in range(len(data))]) == expected


def test_work_stays_linear_in_the_bytes_fed_one_at_a_time():
    # A long line fed byte by byte would be quadratic if each piece rescanned the line so far.
    long_line = b"data: " + b"x" * 300_000 + b"\n\n"
    many_events = b"data: {}\n\n" * 30_000
    start = time.process_time()
    assert parse([long_line[i : i + 1] for i in range(len(long_line))]) == [Event("message", "x" * 300_000, "")]
    assert len(parse([many_events[i : i + 1] for i in range(len(many_events))])) == 30_000
    assert time.process_time() - start < 30  # linear: about a second here


# -- the rules, one by one ------------------------------------------------------------------


def test_triton_generate_stream_events():
    body = (b'data: {"OUT":[1,2,3],"model_name":"stream16","model_version":"1"}\n\n'
            b'data: {"error":"failed at response 3"}\n\n')  # fmt: skip
    assert parse([body]) == [
        Event("message", '{"OUT":[1,2,3],"model_name":"stream16","model_version":"1"}', ""),
        Event("message", '{"error":"failed at response 3"}', ""),
    ]


def test_lines_end_in_crlf_lf_or_cr_mixed():
    assert parse([b"data: a\r\ndata: b\rdata: c\n\r\n"]) == [Event("message", "a\nb\nc", "")]


def test_a_crlf_split_between_pieces_is_one_line_end():
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF ends the same line: no blank line yet
    assert parser.feed(b"\r") == [Event("message", "a", "")]
    assert parser.feed(b"\ndata: b\n\n") == [Event("message", "b", "")]


def test_a_cr_then_other_bytes_in_the_next_piece_is_not_waiting_for_an_lf():
    parser = EventParser()
    assert parser.feed(b"data: a\rdata: b") == []
    assert parser.feed(b"\n\n") == [Event("message", "a\nb", "")]


def test_data_lines_join_with_lf_and_an_empty_data_line_counts():
    assert parse([b"data: a\ndata\ndata:\ndata:  b\n\n"]) == [Event("message", "a\n\n\n b", "")]


def test_an_event_without_data_dispatches_nothing_and_resets_its_type():
    assert parse([b"event: ping\n\ndata: x\n\n"]) == [Event("message", "x", "")]


def test_event_names_the_type_for_one_event():
    assert parse([b"event: error\ndata: x\n\ndata: y\n\n"]) == [Event("error", "x", ""), Event("message", "y", "")]


def test_comments_and_unknown_fields_are_ignored():
    assert parse([b": keep-alive\nretry: 10\nfoo: bar\ndata: x\n:\n\n"]) == [Event("message", "x", "")]


def test_the_last_event_id_persists_and_one_with_nul_is_ignored():
    events = parse([b"id: 7\ndata: a\n\ndata: b\n\nid: 8\x00\ndata: c\n\nid\ndata: d\n\n"])
    assert [e.id for e in events] == ["7", "7", "7", ""]


def test_an_event_cut_off_by_the_stream_end_is_not_given():
    assert parse([b"data: a\n\ndata: b\n"]) == [Event("message", "a", "")]


def test_a_leading_byte_order_mark_is_dropped_even_split_but_not_later_ones():
    assert parse([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == [Event("message", "a", "")]
    assert parse([b"data: \xef\xbb\xbfa\n\n"]) == [Event("message", "\ufeffa", "")]


def test_utf8_split_inside_a_character_and_invalid_bytes():
    euro = "€".encode()
    assert parse([b"data: " + euro[:1], euro[1:2], euro[2:] + b"\n\n"]) == [Event("message", "€", "")]
    assert parse([b"data: \xff\n\n"]) == [Event("message", "\ufffd", "")]
