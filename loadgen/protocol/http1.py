"""HTTP/1.1 responses parsed without sockets: bytes in, responses (or a ProtocolError) out.

`ResponseParser.feed(data)` takes the bytes as they arrive, split anywhere, and returns the next
complete response or None while it needs more; `feed_eof()` ends a body read until the
connection closes. Bytes after a complete response stay in `unparsed` for the next `feed`
(pipelined responses parse one per call: `feed(b"")` continues). Anything that is not valid
HTTP/1.1 raises ProtocolError, and the parser stays failed. A body that streams (server-sent
events) is read as it arrives: once `status` is set, `take_body()` hands out the body bytes
de-chunked so far, and the complete response's body holds only those not taken.

The rules (RFC 9110, RFC 9112):
- Interim responses (1xx: 100 Continue, 103 Early Hints, ...) are skipped and the final response
  read after them; `Response.interim` lists their statuses. 101 Switching Protocols is an error:
  loadgen never asks to switch.
- Framing: 1xx, 204 and 304 have no body; else a Transfer-Encoding whose final coding is
  chunked means chunked, any other Transfer-Encoding means read until close; else
  Content-Length; else read until close. Transfer-Encoding with Content-Length: the
  Transfer-Encoding wins and the connection is not reused (RFC 9112 6.3). Transfer-Encoding in
  an HTTP/1.0 response is an error (RFC 9112 6.1). `Transfer-Encoding: identity` (RFC 2616's
  "no encoding", since retired) is taken as absent, so such a server keeps working.
- Content-Length is 1*DIGIT; duplicates, as separate fields or as a list (`42, 42`), count when
  all the same (RFC 9110 8.6) and are an error when they differ. Chunk sizes are 1*HEXDIG (no
  `0x`, `_`, sign or space), at most 16 digits, then optional whitespace and `;` extensions; a
  size line is at most 4096 bytes and the chunk's data must end in CRLF.
- The head (status line and fields) is at most 64 KiB, and so is a chunked body's trailer
  section. Field names are tokens with no space before the colon; values hold no CR, LF or NUL;
  obsolete line folding is unfolded into a space (RFC 9112 5.2).
- Bare LF line endings are refused with an error naming them. RFC 9112 2.2 lets a recipient
  accept them, but parsers that disagree on line endings are how responses get split and
  smuggled; Triton and every proxy seen in front of it send CRLF, and a server that does not is
  broken in a way a load test should report, not measure around. Refusing also keeps the head's
  end a single `find(b"\\r\\n\\r\\n")`.

Speed: the hot path (a whole response in one read, Content-Length framing) is one find for the
head's end and one comparison with the connection's previous head: a load test's responses
repeat it byte for byte, and what a head says is a pure function of its bytes. A new head costs
one regular-expression match that checks all of it, one lowercase copy and one more match that
picks out the fields loadgen reads: no Python-level work per byte or per header line.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_HEAD_BYTES = 64 * 1024  # a response head; also a chunked body's trailer section
MAX_CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions
_MAX_DIGITS = 18  # below 2**63; int() of a longer run of digits is also slow or refused

# framings
LENGTH, CHUNKED, UNTIL_CLOSE = "length", "chunked", "until-close"
_HEAD = "head"  # still reading the head

_VALUE = rb"[^\r\n\x00]*"  # a field value or reason phrase: no CR, LF or NUL (RFC 9110 5.5)
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_STATUS_LINE = rb"HTTP/1\.[01] [0-9]{3}(?: " + _VALUE + rb")?"
_HEAD_RE = re.compile(_STATUS_LINE + rb"(?:\r\n" + _TOKEN + rb":" + _VALUE + rb")*")
_STATUS_RE = re.compile(_STATUS_LINE)
_FIELD_RE = re.compile(_TOKEN + rb":" + _VALUE)
_OBS_FOLD_RE = re.compile(rb"\r\n[ \t]+")
# The fields loadgen reads, found in the lowercased head in one pass: (name, value) pairs.
_FIELDS_RE = re.compile(rb"\r\n(content-length|transfer-encoding|connection|inference-header-content-length):[ \t]*([^\r\n]*)")
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;" + _VALUE + rb")?")


class ProtocolError(Exception):
    """The server's bytes are not a valid HTTP/1.1 response; the message says what is wrong."""


class Response(NamedTuple):
    status: int
    keep_alive: bool  # the connection may carry the next request
    inference_header_length: int  # Inference-Header-Content-Length, -1 when absent
    body: bytes | bytearray | None  # None: a 200 with keep_body off (counted, not kept)
    body_bytes: int
    framing: str  # LENGTH, CHUNKED or UNTIL_CLOSE
    interim: tuple[int, ...]  # statuses of the 1xx responses skipped before this one


_new_response = tuple.__new__  # builds a Response without a Python-level __new__ call


class ResponseParser:
    """One connection's responses, in order. `keep_body`: keep a 200's body (else only count it);
    other statuses always keep theirs (it holds the error text)."""

    __slots__ = (
        "keep_body", "unparsed", "_failed", "_last_head", "_last_parsed", "_interim", "_framing",
        "_buf", "_scan", "_pos", "_status", "_keep", "_keep_alive", "_ih_len", "_remaining",
        "_body", "_body_bytes", "_chunk_left", "_trailer_bytes",
    )  # fmt: skip

    def __init__(self, keep_body: bool = True) -> None:
        self.keep_body = keep_body
        self.unparsed = b""  # bytes after the last returned response, parsed by the next feed
        self._failed = ""
        # A load test's responses repeat their head byte for byte (Triton sends no Date), so the
        # last final head and what it said are kept: the next equal head costs one comparison.
        self._last_head = b""
        self._last_parsed: tuple = ()
        self._interim: tuple[int, ...] = ()
        self._reset()

    def _reset(self) -> None:
        self._framing = _HEAD
        self._buf: bytearray | None = None  # an incomplete head; then chunked data not yet consumed
        self._scan = 0  # where to go on searching _buf for a line end
        self._pos = 0  # chunked: the first byte of _buf not yet consumed
        self._status = 0
        self._keep = True
        self._keep_alive = True
        self._ih_len = -1
        self._remaining = 0
        self._body: bytes | bytearray | None = None
        self._body_bytes = 0
        self._chunk_left = -1  # chunked: >0 data to read, 0 the CRLF after it, -1 a size line
        self._trailer_bytes = -1  # chunked: >=0 once in the trailer section

    @property
    def status(self) -> int:
        """The status of the response whose body is being read; 0 while its head is incomplete."""
        return self._status

    def take_body(self) -> bytes:
        """The kept body bytes of the response being read that arrived since the last take (empty
        for a 200 with keep_body off): the response, once complete, holds only the rest."""
        body = self._body
        if not body:
            return b""
        self._body = bytearray()
        return bytes(body)

    @property
    def started(self) -> bool:
        """Some byte of the next final response has arrived (skipped 1xx responses don't count)."""
        return self._framing is not _HEAD or self._buf is not None or bool(self.unparsed)

    def feed(self, data: bytes) -> Response | None:
        """The next complete response, or None until more bytes arrive. Raises ProtocolError."""
        if self._failed:
            raise ProtocolError(self._failed)
        try:
            if self.unparsed:
                data = self.unparsed + data
                self.unparsed = b""
            while self._framing is _HEAD:  # once per head: 1xx responses loop
                buf = self._buf
                if buf is None:
                    end = data.find(b"\r\n\r\n")
                    if end < 0:
                        if data:
                            self._buf = bytearray(data)
                            self._scan = 0
                            self._check_partial_head()
                        return None
                else:
                    buf += data
                    end = buf.find(b"\r\n\r\n", self._scan)
                    if end < 0:
                        self._check_partial_head()
                        return None
                    data = bytes(buf)
                    self._buf = None
                if end > MAX_HEAD_BYTES:
                    raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES // 1024} KiB")
                head = data[:end]
                if head == self._last_head:
                    status, keep_alive, ih_len, framing, length = self._last_parsed
                else:
                    parsed = status, keep_alive, ih_len, framing, length = _parse_head(head)
                    if framing is not _HEAD:
                        self._last_head, self._last_parsed = head, parsed
                start = end + 4
                if framing is _HEAD:  # a 1xx: skipped, the response proper follows
                    self._interim += (status,)
                    data = data[start:]
                    continue
                keep = self.keep_body or status != 200
                if framing is LENGTH:
                    n = len(data) - start
                    if n >= length:  # the whole response in hand, the common case: no state kept
                        if n > length:
                            self.unparsed = data[start + length :]
                        interim = self._interim
                        if interim:
                            self._interim = ()
                        body = data[start : start + length] if keep else None
                        return _new_response(Response, (status, keep_alive, ih_len, body, length, LENGTH, interim))
                    self._remaining = length - n
                    self._body_bytes = n
                    self._body = bytearray(data[start:]) if keep else None
                else:
                    self._body = bytearray() if keep else None
                    if framing is CHUNKED:
                        self._buf = bytearray()
                        self._scan = 0
                self._framing = framing
                self._status = status
                self._keep_alive = keep_alive
                self._ih_len = ih_len
                self._keep = keep
                if framing is LENGTH:
                    return None
                data = data[start:]
            framing = self._framing
            if framing is LENGTH:
                remaining = self._remaining
                n = len(data)
                if n < remaining:
                    self._remaining = remaining - n
                    self._body_bytes += n
                    if self._keep:
                        self._body += data
                    return None
                self._body_bytes += remaining
                if self._keep:
                    self._body += data[:remaining]
                if n > remaining:
                    self.unparsed = data[remaining:]
                return self._complete()
            if framing is CHUNKED:
                return self._feed_chunked(data)
            self._body_bytes += len(data)  # until close
            if self._keep:
                self._body += data
            return None
        except ProtocolError as exc:
            self._failed = str(exc)  # the parser stays failed: what follows can't be framed
            raise

    def feed_eof(self) -> Response | None:
        """The connection ended: the response being read until close, now complete; None if no
        response was being read until close (whether an early end is an error is the caller's call)."""
        if self._framing is UNTIL_CLOSE and not self._failed:
            return self._complete()
        return None

    def _complete(self) -> Response:
        response = _new_response(
            Response,
            (self._status, self._keep_alive, self._ih_len, self._body, self._body_bytes, self._framing, self._interim),
        )
        self._interim = ()
        self._reset()
        return response

    def _check_partial_head(self) -> None:
        """An incomplete head so far: fail early on what can never become a valid head, so a
        broken server is named at once rather than waited for until the request's deadline."""
        buf = self._buf
        if len(buf) > MAX_HEAD_BYTES + 3:
            raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES // 1024} KiB")
        if not (buf.startswith(b"HTTP/1.") or b"HTTP/1.".startswith(buf)):
            raise ProtocolError(f"not an HTTP/1.1 response: it starts {bytes(buf[:40])!r}")
        i = buf.find(b"\n", self._scan)
        while i >= 0:
            if i == 0 or buf[i - 1] != 13:
                raise _bare_lf("response head")
            i = buf.find(b"\n", i + 1)
        self._scan = max(0, len(buf) - 3)

    # -- chunked bodies ---------------------------------------------------------------------

    def _feed_chunked(self, data: bytes) -> Response | None:
        buf = self._buf
        buf += data
        pos = self._pos
        while True:
            left = self._chunk_left
            if left > 0:  # chunk data
                n = min(left, len(buf) - pos)
                if n == 0:
                    break
                if self._keep:
                    self._body += buf[pos : pos + n]
                self._body_bytes += n
                pos += n
                self._chunk_left = left - n
            elif left == 0:  # the CRLF that ends a chunk's data
                if len(buf) - pos < 2:
                    if len(buf) > pos and buf[pos] != 13:
                        raise ProtocolError("chunk data not followed by CRLF: the chunk is longer than its size line says")
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    raise ProtocolError("chunk data not followed by CRLF: the chunk is longer than its size line says")
                pos += 2
                self._chunk_left = -1
            else:  # a line: a chunk size, or a trailer field
                in_trailer = self._trailer_bytes >= 0
                limit = MAX_HEAD_BYTES - self._trailer_bytes if in_trailer else MAX_CHUNK_LINE_BYTES
                start = max(pos, self._scan)
                j = buf.find(b"\r\n", start)
                if j < 0:
                    if buf.find(b"\n", start) >= 0:
                        raise _bare_lf("chunked body")
                    if len(buf) - pos > limit + 1:  # + 1: the line's CR may be here already
                        raise _line_too_long(in_trailer)
                    self._scan = max(pos, len(buf) - 1)
                    break
                if j - pos > limit:
                    raise _line_too_long(in_trailer)
                line = bytes(buf[pos:j])
                if in_trailer:
                    if j == pos:  # the empty line that ends the message
                        if len(buf) > j + 2:
                            self.unparsed = bytes(buf[j + 2 :])
                        return self._complete()
                    if _FIELD_RE.fullmatch(line) is None:
                        raise _line_error(line, "trailer field")
                    self._trailer_bytes += j + 2 - pos
                    if self._trailer_bytes > MAX_HEAD_BYTES:
                        raise _line_too_long(in_trailer)
                else:
                    match = _CHUNK_SIZE_RE.fullmatch(line)
                    if match is None:
                        if b"\n" in line:
                            raise _bare_lf("chunked body")
                        raise ProtocolError(f"malformed chunk size line {line[:40]!r}: the size must be 1 to 16 hex digits")
                    size = int(match.group(1), 16)
                    if size:
                        self._chunk_left = size
                    else:
                        self._trailer_bytes = 0
                pos = j + 2
        if pos > 65536:  # drop what was consumed, so the buffer doesn't grow with the body
            del buf[:pos]
            self._scan = max(0, self._scan - pos)
            pos = 0
        self._pos = pos
        return None


# -- the head (once per distinct head) ------------------------------------------------------


def _parse_head(head: bytes) -> tuple[int, bool, int, str, int]:
    """A complete head (without its final CRLFCRLF): (status, keep_alive, inference header
    length or -1, framing, content length); framing _HEAD for a 1xx. A pure function of the
    bytes, so the parser can keep its answer for the next equal head."""
    if _HEAD_RE.fullmatch(head) is None:
        head = _repaired_head(head)
    status = int(head[9:12])
    if 100 <= status < 200:
        if status == 101:
            raise ProtocolError("101 Switching Protocols: the server switched protocols, which loadgen never asks for")
        return status, False, -1, _HEAD, 0
    http11 = head[7] == 49  # b"1"
    found = _FIELDS_RE.findall(head.lower())
    fields = dict(found)
    if len(fields) != len(found):
        fields = _combined(found)
    keep_alive = http11
    value = fields.get(b"connection")
    if value is not None:
        keep_alive = _connection_keep_alive(value, keep_alive)
    ih_len = -1
    value = fields.get(b"inference-header-content-length")
    if value is not None:
        ih_len = _length(value, "Inference-Header-Content-Length")
    if status == 204 or status == 304:
        return status, keep_alive, ih_len, LENGTH, 0
    value = fields.get(b"transfer-encoding")
    if value is not None:
        framing = _transfer_framing(value, http11)
        if framing is not None:
            # TE wins over Content-Length, and such a response ends the connection (RFC 9112 6.1, 6.3)
            keep_alive = keep_alive and framing is CHUNKED and b"content-length" not in fields
            return status, keep_alive, ih_len, framing, 0
    value = fields.get(b"content-length")
    if value is None:
        return status, False, ih_len, UNTIL_CLOSE, 0
    length = _length(value, "Content-Length")
    if ih_len > length:
        raise ProtocolError(f"Inference-Header-Content-Length {ih_len} exceeds Content-Length {length}")
    return status, keep_alive, ih_len, LENGTH, length


def _combined(found: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Fields given more than once, their values joined as one list (RFC 9110 5.3)."""
    fields: dict[bytes, bytes] = {}
    for name, value in found:
        fields[name] = fields[name] + b", " + value if name in fields else value
    return fields


def _length(value: bytes, field: str) -> int:
    """A length field's value: 1*DIGIT, or a list of one value repeated (RFC 9110 8.6)."""
    if value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)
    members = _members(value)
    for member in members:
        if not member.isdigit():
            raise ProtocolError(f"malformed {field} {member[:40]!r}")
        if len(member) > _MAX_DIGITS:
            raise ProtocolError(f"{field} {member[:40]!r} too large")
    lengths = {int(m) for m in members}
    if not lengths:
        raise ProtocolError(f"empty {field}")
    if len(lengths) > 1:
        listed = ", ".join(str(n) for n in sorted(lengths))
        raise ProtocolError(f"conflicting {field} values ({listed}): the response's length is ambiguous")
    return lengths.pop()


def _members(value: bytes) -> list[bytes]:
    """A list field's members, stripped; empty ones mean nothing (RFC 9110 5.6.1) and are left out."""
    return [m for m in (m.strip(b" \t") for m in value.split(b",")) if m]


def _connection_keep_alive(value: bytes, default: bool) -> bool:
    options = _members(value)
    if b"close" in options:
        return False
    return True if b"keep-alive" in options else default


def _transfer_framing(value: bytes, http11: bool) -> str | None:
    """CHUNKED or UNTIL_CLOSE; None for `identity` alone (taken as no Transfer-Encoding)."""
    codings = [c.split(b";", 1)[0].strip(b" \t") for c in _members(value)]
    if not codings:
        raise ProtocolError("empty Transfer-Encoding: the response's framing is ambiguous")
    if all(c == b"identity" for c in codings):
        return None
    if not http11:
        raise ProtocolError("Transfer-Encoding in an HTTP/1.0 response: its framing cannot be trusted")
    if codings[-1] == b"chunked":
        if b"chunked" in codings[:-1]:
            raise ProtocolError("Transfer-Encoding applies chunked more than once")
        return CHUNKED
    return UNTIL_CLOSE  # chunked not last: the body ends when the connection does (RFC 9112 6.3)


def _repaired_head(head: bytes) -> bytes:
    """A head that failed the whole-head check: unfolded if obsolete line folding was all that
    was wrong (RFC 9112 5.2), else ProtocolError naming the first fault."""
    first_end = head.find(b"\r\n")
    if first_end >= 0 and head[first_end + 2 : first_end + 3] in (b" ", b"\t"):
        raise ProtocolError("whitespace between the status line and the first header field")  # RFC 9112 2.2
    if b"\r\n " in head or b"\r\n\t" in head:
        unfolded = _OBS_FOLD_RE.sub(b" ", head)
        if _HEAD_RE.fullmatch(unfolded) is not None:
            return unfolded
    lines = head.split(b"\r\n")
    if _STATUS_RE.fullmatch(lines[0]) is None:
        if b"\n" in lines[0]:
            raise _bare_lf("response head")
        raise ProtocolError(f"malformed status line {lines[0][:40]!r}: not an HTTP/1.1 response")
    for line in lines[1:]:
        if _FIELD_RE.fullmatch(line) is None:
            raise _line_error(line, "header field")
    raise ProtocolError("malformed response head")  # not reached: some line fails its check


def _line_error(line: bytes, what: str) -> ProtocolError:
    if b"\n" in line:
        return _bare_lf("response head" if what == "header field" else "chunked body")
    if b"\r" in line:
        return ProtocolError(f"bare CR in a {what} {line[:40]!r}")
    if b"\x00" in line:
        return ProtocolError(f"NUL in a {what} {line[:40]!r}")
    if line[:1] in (b" ", b"\t"):
        return ProtocolError(f"{what} line starts with whitespace {line[:40]!r}")
    name, colon, _ = line.partition(b":")
    if colon and name[-1:] in (b" ", b"\t"):
        return ProtocolError(f"whitespace between a {what} name and its colon {line[:40]!r}")
    return ProtocolError(f"malformed {what} {line[:40]!r}")


def _bare_lf(where: str) -> ProtocolError:
    return ProtocolError(f"bare LF line ending in the {where}: HTTP/1.1 lines end in CRLF, and loadgen refuses LF-only ones")


def _line_too_long(in_trailer: bool) -> ProtocolError:
    if in_trailer:
        return ProtocolError(f"chunked trailer section larger than {MAX_HEAD_BYTES // 1024} KiB")
    return ProtocolError(f"chunk size line longer than {MAX_CHUNK_LINE_BYTES} bytes")
