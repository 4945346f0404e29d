"""Server-sent events parsed without sockets: body bytes in, events out.

`EventParser.feed(data)` takes a `text/event-stream` body's bytes as they arrive, split anywhere
(inside a line, a CRLF or a UTF-8 sequence), and returns the events completed by them. The rules
are the WHATWG HTML standard's ("Server-sent events", interpreting an event stream):
- The stream is UTF-8 (a leading byte order mark is dropped; invalid sequences decode to U+FFFD).
  Lines end in CRLF, LF or CR, mixed as the server likes; a CR at the end of one piece and an LF
  at the start of the next are one line end.
- A blank line dispatches the event being built; an event with no `data` line dispatches nothing.
  Lines starting with a colon are comments. `field: value` drops one space after the colon; a
  line with no colon is a field with an empty value. `data` lines are joined with LF; `event`
  names the type ("message" when absent); `id` sets the last event id, which later events keep
  (an id holding NUL is ignored); `retry` and unknown fields are ignored.
- An event not ended by a blank line when the stream ends is discarded: a stream cut short loses
  the event it was sending, which is how a reader tells a whole event from part of one.

Triton's generate_stream sends each response as `data: {JSON}` and a blank line (LF endings),
never `event:` or `id:`; the rest of the standard is kept so that a proxy's comments (keep-alive
pings) or re-framed lines do not break the reading.

Speed: the bytes are only searched for the last line end of each piece; the complete lines are
split once and decoded one by one, so the work stays linear in the bytes fed however they are split.
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class Event(NamedTuple):
    type: str  # the `event` field, "message" when absent
    data: str  # the `data` lines joined with LF
    id: str  # the last event id seen on the stream ("" before any)


class EventParser:
    """One event stream, in order."""

    __slots__ = ("_buf", "_bom_checked", "_skip_lf", "_data", "_type", "_id")

    def __init__(self) -> None:
        self._buf = bytearray()  # the last, incomplete line
        self._bom_checked = False
        self._skip_lf = False  # the last piece ended in CR: an LF first in the next ends the same line
        self._data: list[str] = []  # the event being built: its data lines
        self._type = ""
        self._id = ""

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by `data` (often none)."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
        buf = self._buf
        start = len(buf)
        buf += data
        if not self._bom_checked:
            if len(buf) < 3 and _BOM.startswith(buf):
                return []  # perhaps a byte order mark still arriving
            self._bom_checked = True
            if buf.startswith(_BOM):
                del buf[:3]
                start = 0
        end = max(buf.rfind(b"\n", start), buf.rfind(b"\r", start))
        if end < 0:
            return []
        lines = bytes(buf[: end + 1])
        del buf[: end + 1]
        if lines[-1] == 13 and not buf:  # the CR ends this piece: its LF may start the next
            self._skip_lf = True
        events = []
        for line in lines.splitlines():  # bytes split on CR, LF and CRLF only
            if not line:
                if self._data:
                    events.append(Event(self._type or "message", "\n".join(self._data), self._id))
                    self._data = []
                self._type = ""
                continue
            if line[0] == 58:  # ":" a comment
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._type = value.decode("utf-8", "replace")
            elif name == b"id" and b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        return events
