"""HTTP transport: a lean HTTP/1.1 keep-alive client on asyncio.Protocol.

Why hand-written: on a 2-core machine every microsecond the client spends is taken from the
server, and a general client (aiohttp, tritonclient.http.aio) costs several times what this
one does per request; `bench/http_clients.py` keeps the measurement.

Design:
- A pool of keep-alive connections: a request takes an idle connection or opens a new one and
  gives it back when the response is complete, so a closed loop at concurrency N ends up with
  N connections and an open loop may have as many requests in flight as it likes.
- `prepare` builds the whole request (request line, headers, KServe binary-tensor body) once;
  `infer` writes those bytes and waits for the response. Outputs are asked for in binary form
  and never decoded: a 200 response's body is counted, not kept. Only a request whose data
  entry has validation_data keeps its responses' bodies, to check them (loadgen.validation).
  With --shared-memory the body is the JSON header alone, each tensor naming its slot of the
  registered region in its `parameters` (loadgen.shared_memory).
- Responses are parsed by `loadgen.protocol.http1.ResponseParser` (socket-free; its docstring
  has the rules: 1xx interim responses skipped, strict framing, bare LF refused). This module
  keeps the sockets, the pool, TLS and the timing. A non-200 status carries Triton's JSON
  `{"error": "..."}`, which becomes the outcome's error text; a response that breaks HTTP/1.1
  is a `protocol` error and its connection is dropped.
- A reused connection that the server had already closed (idle keep-alive timeout, restart) is
  retried once on a fresh connection, only when no byte of an answer (not even a 1xx) came.
- Streaming (a decoupled model's many responses): `prepare_stream` maps the inputs to Triton's
  generate extension, `stream` posts them to `/generate_stream` and reads the server-sent events
  (loadgen.protocol.sse) as their bytes arrive, on a pooled connection like any request; the
  "Streaming" section below has the rules.

Triton 2.51 (libevhtp) as seen here: every /v2 response carries Content-Length except
generate_stream's, which is chunked; an idle keep-alive connection stayed open for 400 s and one
connection carried 20,000 requests without being closed; an unknown model on /infer is a 404
whose JSON error comes with Content-Type text/plain.

Streaming, Triton 2.51's generate extension as seen here (its docs call it provisional):
- The request is one JSON object: each input a member under its name, a one-element tensor as
  a scalar and a longer one as a flat list (BYTES as strings, numbers as JSON numbers); the server
  gives the list the model's shape itself (fixed dimensions first, the innermost variable one the
  rest, other variable ones 1), so only shapes whose dimensions are all 1 but the last keep theirs
  whatever the model's are, and only those are sent. A top-level `id` is the request's id (echoed
  in every event). FP16 and BF16 cannot travel as JSON, nor can NaN or infinity, nor bytes that
  are not UTF-8: those are refused at prepare time, pointing to -i grpc. Every output comes back
  (the extension has no way to ask for some), so `outputs` is not sent.
- The answer: `200`, `text/event-stream`, chunked, one `data: {JSON}` event per response (outputs
  by name, a one-element output as a scalar, with model_name, model_version and the id); a
  response that fails is an event `data: {"error": "..."}`, still under the 200 sent with the
  first response. The final flag alone (an empty final response) sends no event: the chunked
  body's end is the stream's end. A request refused before inference is an error status with
  Triton's JSON error; one whose first response fails gets 400 with that error as an event.
- Read as: each event that holds more than id/model_name/model_version is a response, timed at the
  monotonic_ns its bytes were read (events read together share it); its tokens are the token
  output's element count in it (a list's length, 1 for a scalar: a string output counts 1 per
  string, 0 when the event lacks it). An error event fails the stream as `HTTP 400` (the status
  Triton gives the same error when it comes first, and /infer gives a model's error); the
  responses before it are kept, later events are read (so the connection stays usable) but not
  counted. An error status is that status's error; a connection that breaks mid-stream is a
  `connection` error and an event that is not JSON a `protocol` one, both keeping the responses
  read. A stream past the request timeout (the transport's own timer, from the send) is a
  `timeout` error that keeps the responses read; it drops its connection, which cannot be reused
  mid-stream, as does a cancelled stream.
  recv_ns is the time spent reading the answer's bytes as they came, not the waits between them.

Timing (perf_analyzer's meaning): send_ns is from just before the request is written until its
last byte was handed to the socket; recv_ns is from the response's first byte until the
response was fully read and parsed. Interim (1xx) responses are not the response: a proxy's
immediate `100 Continue` would otherwise move the whole server wait into recv_ns.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from time import monotonic_ns, perf_counter_ns
from typing import Any
from urllib.parse import quote

from loadgen.errors import ModelLoadError, ServerError, UsageError
from loadgen.redact import redact_url
from loadgen.outcome import InferOutcome, RequestError, StreamOutcome, connection, http_status, protocol, timeout
from loadgen.protocol.http1 import ProtocolError, Response, ResponseParser
from loadgen.protocol.sse import EventParser
from loadgen.transport.base import (
    CONNECT_TIMEOUT_S,
    LOAD_TIMEOUT_S,
    InputTensor,
    Transport,
    check_header,
    expected_outputs,
    index_entry,
    split_host_port,
    unknown_model_error,
    url_credentials,
)
from loadgen.transport.probe import check_port
from loadgen.transport.request_id import IdPieces, request_id
from loadgen.transport.sequence_params import HTTP_WIDTH, SequencePieces, http_fragment
from loadgen.shared_memory import Placement, Slot
from loadgen.transport.tls import TlsOptions, tls_failure
from loadgen.validation import ExpectedOutputs, WireError, check_http, from_wire

_CONTROL_TIMEOUT_S = 60.0
# Triton's HTTP status for each of its error codes (by gRPC's names), so that a refused load
# says the same whichever protocol carried it.
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}


def _region_parameters(region: str, slot: Slot) -> dict[str, Any]:
    """A tensor's `parameters` naming its slot of a registered region."""
    return {"shared_memory_region": region, "shared_memory_byte_size": slot.size_bytes, "shared_memory_offset": slot.offset_bytes}


class _ConnectionFailed(Exception):
    """The connection ended or broke before a complete response; `received` if any byte came;
    `broken_protocol` when the server's bytes were not HTTP/1.1."""

    def __init__(self, message: str, received: bool, broken_protocol: bool = False) -> None:
        super().__init__(message)
        self.received = received
        self.broken_protocol = broken_protocol


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its response parsed as it arrives."""

    __slots__ = ("transport", "closed", "paused", "waiter", "t_first", "t_sent", "received", "parser", "pool", "stream")

    def __init__(self, pool: set) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self.waiter: asyncio.Future | None = None
        self.t_first = 0
        self.t_sent = 0
        self.received = False  # some byte of an answer came (a 1xx included): not to be retried
        self.parser = ResponseParser()
        self.pool = pool
        self.stream: _StreamReader | None = None  # the generate_stream answer being read, if any

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        # Any byte left in the write buffer pauses writing, and resume_writing tells us when
        # the buffer has drained: that is when the request's last byte reached the socket.
        transport.set_write_buffer_limits(high=0)
        self.pool.add(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.waiter is not None and self.t_sent == 0:
            self.t_sent = perf_counter_ns()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None:
            response = self.parser.feed_eof()
            if response is not None:  # a body read until close
                self._finish(waiter, response)
                return
        reason = str(exc) if exc is not None else "the server closed the connection"
        waiter.set_exception(_ConnectionFailed(reason or type(exc).__name__, self.received))

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None:  # bytes nobody asked for: the connection can't be trusted any more
            self._fail(None, "unexpected data from the server")
            return
        if self.stream is not None:
            self._stream_received(data, waiter)
            return
        if self.t_first == 0:
            self.t_first = perf_counter_ns()
            self.received = True
        parser = self.parser
        try:
            response = parser.feed(data)
        except ProtocolError as exc:
            self._fail(waiter, str(exc))
            return
        if response is None:
            if not parser.started:  # only 1xx responses so far: the response proper starts later
                self.t_first = 0
            return
        if parser.unparsed:  # we never pipeline, so these belong to no request
            self._fail(waiter, "more bytes than the response's framing says")
            return
        self._finish(waiter, response)

    def _stream_received(self, data: bytes, waiter: asyncio.Future) -> None:
        """A streamed answer's bytes: a 200's body handed to the stream's reader as it arrives (an
        error status's kept whole, for its error text); the time spent here is the stream's recv_ns."""
        t0 = perf_counter_ns()
        self.received = True
        stream, parser = self.stream, self.parser
        try:
            response = parser.feed(data)
            if response is None:
                if parser.status == 200:
                    stream.feed(parser.take_body())
            elif response.status == 200:
                stream.feed(response.body)
        except (ProtocolError, _BadEvent) as exc:
            stream.recv_ns += perf_counter_ns() - t0
            self._fail(waiter, str(exc))
            return
        stream.recv_ns += perf_counter_ns() - t0
        if response is None:
            return
        if parser.unparsed:
            self._fail(waiter, "more bytes than the response's framing says")
            return
        self._finish(waiter, response)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the waiter

    def _finish(self, waiter: asyncio.Future, response: Response) -> None:
        now = perf_counter_ns()
        self.waiter = None
        if not response.keep_alive:
            self.closed = True
            self.transport.close()
        if not waiter.done():
            waiter.set_result((response, now - self.t_first, self.t_sent or self.t_first))

    def _fail(self, waiter: asyncio.Future | None, message: str) -> None:
        self.closed = True
        self.waiter = None
        self.transport.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(_ConnectionFailed(f"bad response: {message}", True, broken_protocol=True))

    # -- request side -----------------------------------------------------------------------

    def drop(self) -> None:
        self.waiter = None
        self.closed = True
        self.transport.abort()

    def start(self, waiter: asyncio.Future, keep_body: bool, stream: _StreamReader | None = None) -> None:
        self.waiter = waiter
        self.stream = stream
        self.parser.keep_body = keep_body
        self.t_first = 0
        self.t_sent = 0
        self.received = False


class _Prepared:
    """A request built once: every byte of it, request line to body; and what its responses must
    hold (None: they are not checked). With tracing, the pieces around its id's digits (`ids`,
    loadgen.transport.request_id), each send writing its own digits between them. For a sequence
    model, the pieces around its sequence parameters (`sequence`, loadgen.transport.sequence_params)."""

    __slots__ = ("request", "expected", "ids", "sequence")

    def __init__(self, request: bytes, expected: ExpectedOutputs | None = None, ids: IdPieces | None = None,
                 sequence: SequencePieces | None = None) -> None:  # fmt: skip
        self.request = request
        self.expected = expected
        self.ids = ids
        self.sequence = sequence


# What the generate extension puts in every event besides the outputs (and response parameters).
_EVENT_METADATA = frozenset({"id", "model_name", "model_version"})
# Triton's error status for a model's error: /infer's, and generate_stream's when the first response fails.
_MODEL_ERROR_STATUS = 400


class _BadEvent(Exception):
    """A generate_stream event that is not Triton's JSON object."""


class _PreparedStream:
    """A generate_stream request built once (as _Prepared), and the output whose elements are a
    response's tokens (None: not counted)."""

    __slots__ = ("request", "ids", "token_output")

    def __init__(self, request: bytes, ids: IdPieces | None, token_output: str | None) -> None:
        self.request = request
        self.ids = ids
        self.token_output = token_output


class _StreamReader:
    """One generate_stream answer's events, read as the body arrives (module docstring,
    "Streaming"): each response's arrival time and tokens, the first error, the time spent reading."""

    __slots__ = ("events", "token_output", "response_ns", "tokens", "error", "recv_ns")

    def __init__(self, token_output: str | None) -> None:
        self.events = EventParser()
        self.token_output = token_output
        self.response_ns: list[int] = []
        self.tokens: list[int] = []
        self.error: RequestError | None = None
        self.recv_ns = 0

    def feed(self, body: bytes) -> None:
        """Body bytes as they came. Raises _BadEvent."""
        events = self.events.feed(body)
        if not events:
            return
        now_ns = monotonic_ns()
        for event in events:
            try:
                response = json.loads(event.data)
            except ValueError:
                raise _BadEvent(f"a generate_stream event that is not JSON: {event.data[:80]!r}") from None
            if not isinstance(response, dict):
                raise _BadEvent(f"a generate_stream event that is not a JSON object: {event.data[:80]!r}")
            if self.error is not None:
                continue  # the stream has failed: read to its end, not counted
            if response.keys() == {"error"}:
                self.error = http_status(_MODEL_ERROR_STATUS, str(response["error"]))
            elif not response.keys() <= _EVENT_METADATA:
                self.response_ns.append(now_ns)
                if self.token_output is not None:
                    self.tokens.append(_element_count(response.get(self.token_output)))

    def outcome(self, send_ns: int, error: RequestError | None) -> StreamOutcome:
        return StreamOutcome(send_ns, self.recv_ns, tuple(self.response_ns), tuple(self.tokens), error)


def _element_count(value: Any) -> int:
    """An output's element count as the generate extension writes it: a flat list, or a scalar for
    one element (a string is one element); 0 when the event lacks it."""
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


def _generate_value(tensor: InputTensor) -> Any:
    """An input as the generate extension carries it (module docstring, "Streaming"): a scalar or a
    flat list. UsageError, on one line, for what it cannot carry."""
    name, datatype, shape = tensor.name, tensor.datatype, [int(d) for d in tensor.shape]
    if name in ("id", "parameters"):
        raise UsageError(f"input {name!r} cannot go over HTTP streaming: Triton's generate extension reads that member itself; use -i grpc")
    if any(d != 1 for d in shape[:-1]):
        raise UsageError(
            f"input {name!r} of shape {shape} cannot go over HTTP streaming: Triton's generate extension takes a flat list and "
            "shapes it itself, keeping only shapes whose dimensions are all 1 but the last; use -i grpc"
        )
    if datatype in ("FP16", "BF16"):
        raise UsageError(f"input {name!r} is {datatype}, which Triton's generate extension cannot take as JSON; use -i grpc")
    try:
        values = from_wire(datatype, tensor.data).tolist()
    except WireError as exc:
        raise UsageError(f"input {name!r} {exc}") from None
    if datatype == "BYTES":
        try:
            values = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise UsageError(
                f"input {name!r} holds bytes that are not UTF-8 text, which Triton's generate extension cannot carry "
                "(it takes strings as JSON text); use -i grpc"
            ) from None
    elif datatype in ("FP32", "FP64") and not all(math.isfinite(v) for v in values):
        raise UsageError(f"input {name!r} holds NaN or infinity, which JSON cannot carry to Triton's generate extension; use -i grpc")
    return values[0] if len(values) == 1 else values


def _stream_error(status: int, body: bytes | bytearray | None) -> RequestError:
    """A generate_stream error status's error: Triton's JSON error, or the error event it sends
    under a 400 when the first response fails."""
    for event in EventParser().feed(bytes(body or b"")):
        try:
            return http_status(status, str(json.loads(event.data)["error"]))
        except (ValueError, KeyError, TypeError):
            break
    return _http_error(status, body)


def _error_text(body: bytes | bytearray | None) -> str:
    """Triton's error text in an error response's body."""
    if not body:
        return ""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return bytes(body[:200]).decode("utf-8", errors="replace").strip()


def _http_error(status: int, body: bytes | bytearray | None) -> RequestError:
    """The error of an error response, with Triton's error text."""
    return http_status(status, _error_text(body))


def _header_block(headers: dict[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        name, value = str(name).strip(), str(value).strip()
        check_header(name, value)
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class HttpTransport(Transport):
    """Triton over HTTP/1.1 (KServe v2 with the binary tensor extension)."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        tls: TlsOptions | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        request_timeout_ms: float | None = None,
    ) -> None:
        self.url = redact_url(url)  # as messages show it
        self._connect_timeout_s = connect_timeout_s
        # A streamed request's deadline (0 or None: none); `infer`'s is the engine's, which cancels it.
        self._stream_timeout_ms = request_timeout_ms or None
        self._host, self._port = split_host_port(url, 8000)
        if tls is None and url.lower().startswith("https://"):
            tls = TlsOptions()
        # Built once: a connection pays for its handshake, and a request for nothing but encryption.
        self._ssl = tls.context("http/1.1") if tls is not None else None
        headers = dict(headers or {})
        lowered = {k.lower() for k in headers}
        credentials = url_credentials(url)
        if credentials is not None and "authorization" not in lowered:  # user:password@, as curl (perf_analyzer) sends it
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
            lowered.add("authorization")
        if "host" not in lowered:
            host = f"[{self._host}]" if ":" in self._host else self._host
            headers = {"Host": f"{host}:{self._port}", **headers}
        self._user_lowered = lowered
        self._headers = _header_block(headers)
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- connections ------------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        if self._closed:
            raise _ConnectionFailed("the transport was closed", False)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._all), self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None
                )
        except TimeoutError:
            raise _ConnectionFailed(f"no connection within {self._connect_timeout_s:g} s", False) from None
        return conn

    async def _exchange(
        self, request: bytes | tuple[bytes | memoryview, ...], keep_body: bool, stream: _StreamReader | None = None
    ) -> tuple:
        """Sends `request` (its bytes, or pieces to write one after the other) on a pooled
        connection: (response, recv_ns, t_sent, t0). With `stream`, a 200's body goes to it as it
        arrives, and the response holds none of it.

        Raises _ConnectionFailed, or OSError when no connection can be opened.
        """
        idle = self._idle
        conn = None
        while idle:
            candidate = idle.pop()
            if not candidate.closed and not candidate.transport.is_closing():
                conn = candidate
                break
        reused = conn is not None
        if conn is None:
            conn = await self._connect()
        while True:
            waiter = self._loop.create_future()
            conn.start(waiter, keep_body, stream)
            t0 = perf_counter_ns()
            if type(request) is tuple:  # a large traced request's pieces around its id: one writev (uvloop)
                conn.transport.writelines(request)
            else:
                conn.transport.write(request)
            if not conn.paused:
                conn.t_sent = perf_counter_ns()
            try:
                result = await waiter
            except _ConnectionFailed as exc:
                if reused and not exc.received:
                    # A kept-alive connection the server had closed: one retry, fresh.
                    reused = False
                    conn = await self._connect()
                    continue
                raise
            except BaseException:  # cancelled mid-request: the connection's state is unknown
                conn.drop()
                raise
            if not conn.closed:
                idle.append(conn)
            return result + (t0,)

    # -- the hot path -----------------------------------------------------------------------

    def prepare(
        self, model: str, version: str, inputs: list[InputTensor], outputs: list[str], id_prefix: str | None = None,
        sequences: bool = False, shared_memory: Placement | None = None,
    ) -> _Prepared:
        header: dict[str, Any] = {"id": request_id(id_prefix, 0)} if id_prefix is not None else {}
        if shared_memory is None:
            input_parameters = [{"binary_data_size": len(t.data)} for t in inputs]
            output_parameters = [{"binary_data": True} for _ in outputs]
        else:  # the tensors are in the region: the body is the JSON alone
            input_parameters = [_region_parameters(shared_memory.region, slot) for slot in shared_memory.inputs]
            output_parameters = [_region_parameters(shared_memory.region, slot) for slot in shared_memory.outputs]
        header |= {
            "inputs": [
                {"name": t.name, "shape": [int(d) for d in t.shape], "datatype": t.datatype, "parameters": parameters}
                for t, parameters in zip(inputs, input_parameters)
            ],
            "parameters": {"binary_data_output": True},
        }
        if outputs:
            header["outputs"] = [{"name": name, "parameters": parameters} for name, parameters in zip(outputs, output_parameters)]
        json_part = json.dumps(header, separators=(",", ":")).encode()
        if sequences:  # the placeholder parameters, right after binary_data_output's
            marker = b'"binary_data_output":true'
            json_part = json_part.replace(marker, marker + b"," + http_fragment(0, False, False), 1)
        body = b"".join([json_part, *(t.data for t in inputs if shared_memory is None)])
        head = [f"POST {self._model_path(model, version)}/infer HTTP/1.1\r\n".encode("latin-1"), self._headers]
        if "content-type" not in self._user_lowered:
            head.append(b"Content-Type: application/octet-stream\r\n")
        head.append(b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(json_part), len(body)))
        request = b"".join(head) + body
        ids = None
        if id_prefix is not None:
            at = len(request) - len(body) + json_part.index(request_id(id_prefix, 0).encode()) + len(id_prefix)
            ids = IdPieces(request, at)
        sequence = None
        if sequences:
            at = len(request) - len(body) + json_part.index(b'"sequence_id":')
            sequence = SequencePieces(request, at, HTTP_WIDTH)
        return _Prepared(request, expected_outputs(inputs), ids, sequence)

    async def infer(
        self, prepared: _Prepared, number: int | None = None, sequence: tuple[int, bool, bool] | None = None
    ) -> InferOutcome:
        expected = prepared.expected
        if sequence is not None:
            request = prepared.sequence.wire(http_fragment(*sequence))
        else:
            request = prepared.request if number is None else prepared.ids.wire(number)
        try:
            response, recv_ns, t_sent, t0 = await self._exchange(request, expected is not None)
        except _ConnectionFailed as exc:
            return InferOutcome(0, 0, protocol(str(exc)) if exc.broken_protocol else connection(str(exc)))
        except OSError as exc:
            return InferOutcome(0, 0, connection(exc.strerror or str(exc)))
        if response.status != 200:
            return InferOutcome(t_sent - t0, recv_ns, _http_error(response.status, response.body))
        if expected is None:
            return InferOutcome(t_sent - t0, recv_ns)
        t1 = perf_counter_ns()
        error = check_http(expected, response.body, response.inference_header_length)
        return InferOutcome(t_sent - t0, recv_ns, error, perf_counter_ns() - t1)

    def prepare_stream(
        self, model: str, version: str, inputs: list[InputTensor], outputs: list[str], token_output: str | None = None,
        id_prefix: str | None = None,
    ) -> _PreparedStream:
        fields: dict[str, Any] = {"id": request_id(id_prefix, 0)} if id_prefix is not None else {}
        for tensor in inputs:
            fields[tensor.name] = _generate_value(tensor)
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        head = [f"POST {self._model_path(model, version)}/generate_stream HTTP/1.1\r\n".encode("latin-1"), self._headers]
        if "content-type" not in self._user_lowered:
            head.append(b"Content-Type: application/json\r\n")
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        request = b"".join(head) + body
        ids = None
        if id_prefix is not None:  # the id is the body's first member
            ids = IdPieces(request, len(request) - len(body) + body.index(request_id(id_prefix, 0).encode()) + len(id_prefix))
        return _PreparedStream(request, ids, token_output)

    async def stream(self, prepared: _PreparedStream, number: int | None = None) -> StreamOutcome:
        request = prepared.request if number is None else prepared.ids.wire(number)
        reader = _StreamReader(prepared.token_output)
        timeout_ms = self._stream_timeout_ms
        try:
            async with asyncio.timeout(timeout_ms / 1e3 if timeout_ms is not None else None):
                response, _, t_sent, t0 = await self._exchange(request, True, reader)
        except TimeoutError:  # the connection was dropped mid-answer; the responses read are kept
            return reader.outcome(0, timeout(timeout_ms))
        except _ConnectionFailed as exc:
            return reader.outcome(0, protocol(str(exc)) if exc.broken_protocol else connection(str(exc)))
        except OSError as exc:
            return reader.outcome(0, connection(exc.strerror or str(exc)))
        if response.status != 200:
            return reader.outcome(t_sent - t0, _stream_error(response.status, response.body))
        return reader.outcome(t_sent - t0, reader.error)

    # -- control calls ----------------------------------------------------------------------

    async def _call(
        self, path: str, what: str, model: str = "", version: str = "", body: bytes | None = None,
        model_control: str = "", timeout_s: float = _CONTROL_TIMEOUT_S, answered: bool = True,
    ) -> Any:  # fmt: skip
        """GET `path`, or POST `body` (JSON) to it: the JSON answer, or a ServerError saying what
        went wrong. With `model_control` (the model a load or unload is for), a refusal is a
        ModelLoadError and the answer, empty, is not read; without `answered`, a 200's body is not read."""
        if body is None:
            request = f"GET {path} HTTP/1.1\r\n".encode("latin-1") + self._headers + b"\r\n"
        else:
            request = (f"POST {path} HTTP/1.1\r\n".encode("latin-1") + self._headers
                       + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        try:
            async with asyncio.timeout(timeout_s):
                response, *_ = await self._exchange(request, True)
        except TimeoutError:
            raise ServerError(f"Triton at {self.url} did not answer {what} within {timeout_s:g} s") from None
        except (_ConnectionFailed, OSError) as exc:
            await self._check_port()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or "the server closed the connection"
            if self._ssl is not None:
                reason = tls_failure(reason, "http") or reason
            raise ServerError(f"cannot reach Triton over HTTP{'S' if self._ssl else ''} at {self.url}: {reason}") from None
        status, body = response.status, response.body
        if model_control:
            if status == 200:
                return None
            message = _error_text(body).strip()
            text = f"{what} failed at {self.url}: {' '.join(message.split())}"
            raise ModelLoadError(text, model_control, message, _STATUS_NAMES.get(status, f"HTTP {status}"))
        if status != 200:
            error = str(_http_error(status, body))
            unknown = unknown_model_error(error, model, version, self.url) if status in (400, 404) else None
            if unknown is not None:
                raise unknown
            await self._check_port()
            raise ServerError(f"{what} failed at {self.url}: {error}")
        if not answered:
            return None
        try:
            return json.loads(body)
        except ValueError:
            await self._check_port()
            raise ServerError(f"{what} at {self.url} returned a body that is not JSON: is it Triton's HTTP port? check -u") from None

    async def _check_port(self) -> None:
        """A clearer error when nothing, or not Triton's HTTP API, answers there; not over TLS: the probe speaks plain HTTP."""
        if self._ssl is None:
            await check_port("http", self._host, self._port, self.url)

    async def server_live(self, timeout_s: float) -> str | None:
        request = b"GET /v2/health/live HTTP/1.1\r\n" + self._headers + b"\r\n"
        try:
            async with asyncio.timeout(timeout_s):
                response, *_ = await self._exchange(request, True)
        except TimeoutError:
            return f"no answer to a liveness check within {timeout_s:g} s"
        except (_ConnectionFailed, OSError) as exc:
            return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None if response.status == 200 else f"its liveness check answered HTTP {response.status}"

    @staticmethod
    def _model_path(model: str, version: str) -> str:
        path = f"/v2/models/{quote(model, safe='')}"
        if version:
            path += f"/versions/{quote(str(version), safe='')}"
        return path

    async def server_metadata(self) -> dict[str, Any]:
        return await self._call("/v2", "server metadata")

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return await self._call(self._model_path(model, version), "model metadata", model, version)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        return await self._call(self._model_path(model, version) + "/config", "model config", model, version)

    async def model_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        if not model:
            return await self._call("/v2/models/stats", "model statistics")
        return await self._call(self._model_path(model, version) + "/stats", "model statistics", model, version)

    async def update_trace_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        answer = await self._call("/v2/trace/setting", "updating the trace settings", body=json.dumps(settings).encode())
        return {key: value if isinstance(value, list) else [value] for key, value in answer.items()}

    async def load_model(self, model: str, config: dict[str, Any] | None = None, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        request = {"parameters": {"config": json.dumps(config)}} if config is not None else {}
        await self._call(f"/v2/repository/models/{quote(model, safe='')}/load", f"loading {model}",
                         body=json.dumps(request).encode(), model_control=model, timeout_s=timeout_s)  # fmt: skip

    async def unload_model(self, model: str) -> None:
        await self._call(f"/v2/repository/models/{quote(model, safe='')}/unload", f"unloading {model}", body=b"{}", model_control=model)

    async def repository_index(self) -> list[dict[str, str]]:
        return [index_entry(entry) for entry in await self._call("/v2/repository/index", "the repository index", body=b"{}")]

    async def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        body = json.dumps({"key": key, "offset": 0, "byte_size": byte_size}).encode()
        await self._call(f"/v2/systemsharedmemory/region/{quote(name, safe='')}/register",
                         f"registering shared-memory region {name}", body=body, answered=False)  # fmt: skip

    async def unregister_system_shared_memory(self, name: str) -> None:
        await self._call(f"/v2/systemsharedmemory/region/{quote(name, safe='')}/unregister",
                         f"unregistering shared-memory region {name}", body=b"", answered=False)  # fmt: skip

    async def close(self) -> None:
        self._closed = True
        self._idle.clear()
        for conn in list(self._all):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
