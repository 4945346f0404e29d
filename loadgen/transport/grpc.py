"""gRPC transport: tritonclient.grpc.aio for the control calls, a lean HTTP/2 client for infer.

Control calls: loadgen.transport.grpc_control (tritonclient, answers in the HTTP API's JSON shape).

Infer: `prepare` builds the ModelInferRequest once (with --shared-memory, each tensor naming its
slot of the registered region in its parameters, and no raw_input_contents), marshals it once and
frames it as a gRPC message (5-byte prefix); `infer` sends those bytes as one HTTP/2 stream on a connection of our
own and unmarshals the ModelInferResponse. The HTTP/2 connection's state machine (framing, HPACK,
flow control, stream states) is loadgen.protocol.h2, without sockets; what a finished stream
means in gRPC terms is loadgen.protocol.grpc_status. This module is the asyncio layer around
them: connections (an asyncio.Protocol, like the HTTP transport's; TLS with ALPN h2), timing,
retries.

Why not grpc.aio for infer: bench/grpc_cpu.py measured, on the centernet ensemble (80-170
req/s), 800-1200 µs of client CPU per request through grpc.aio on a busy machine (450-700 on a
quiet one), under uvloop or asyncio's loop, with GRPC_POLL_STRATEGY=poll or without channel
options; the sync stack with `.future()` or with worker threads was no better. It is no polling:
with up to 32 calls held in flight, idle, grpc.aio burns under 3 ms of CPU per second. It is the
cost of a request passing through a large machine (grpc's Python and Cython layers, its
EventEngine threads, its completion-queue poller thread, the handoff to the event loop), paid
cold after every wait: against a fake server answering in 10 ms, grpc.aio cost 513 µs per request
at concurrency 1 (89 req/s) and 236 at concurrency 8 (670 req/s). The client here is one read
and one write per request on the event loop's thread, like the HTTP transport: 280-380 µs per
request on the same busy machine, 0.7-0.95x perf_analyzer's gRPC client
(bench/vs_perf_analyzer.py --protocols grpc). The `h2` package (python-hyper) as the state
machine instead of loadgen.protocol.h2 cost more: see README, "Why gRPC inference is hand-written too".

Connections: one, multiplexed (every request is a stream); a new one after GOAWAY, stream-id
exhaustion or a broken connection, opened once the server's SETTINGS have come (as grpc waits for
them: a server's MAX_CONCURRENT_STREAMS must be known before the first burst of streams).
A stream the server never processed (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last stream
id) is sent once more, as grpc's transparent retry does, on the connection a new request would
take (the same one after REFUSED_STREAM, a fresh one after GOAWAY); only a second refusal is the
request's failure. A cancelled infer resets its stream (RST_STREAM CANCEL) and leaves the
connection usable.

Timing (perf_analyzer's gRPC meaning: marshalling and unmarshalling): send_ns is from the start
of the request until its frames were built, queued for the socket write of the loop's turn (the
message was marshalled once, in `prepare`; a wait for a connection or for flow-control window
counts, and for a retried request everything from its first send to the retry's); recv_ns is
from the arrival of the response's first frame until its last was read, plus unmarshalling the
ModelInferResponse (not the wait for the event loop to resume the request's task in between).
A request whose data entry has validation_data has each response checked against it
(loadgen.validation), after the timing: check_ns.

Streaming (a decoupled model's requests, `stream`): Triton's bidirectional ModelStreamInfer call,
one HTTP/2 stream per connection (a duplex one: loadgen.protocol.h2) opened on first use and
again after it ends, with every streamed request in flight on it at once, as perf_analyzer's
--streaming does. A request is one gRPC message on the stream (a ModelInferRequest asking for
the empty final response, so that its end is known whichever response carries the final flag);
its responses are told apart by the request's id, which every streamed request carries: the id
prefix and the caller's number, or the transport's own serial. The id is last in the prepared
message, so a send writes the prepared bytes up to its digits and its own digits (no copy).
A response with an error message ends its request with that error (gRPC UNKNOWN: Triton sends
the message alone); the final flag ends it; responses after that, or for a request given up on,
are dropped. A stream that ends fails every request in flight on it with a connection error
(loadgen.protocol.grpc_stream) and the next request opens a new one. After a GOAWAY the next
request opens a stream on a new connection and ends the old stream's body, so that the server
finishes what is in flight on it and then ends it (and the old connection closes). The request
timeout is the transport's own timer per request (no grpc-timeout on a stream that outlives every
request): a timeout error that keeps the responses read; Triton goes on with the request (a
stream has no per-request cancel), its later responses dropped. A cancelled request likewise.
Timing: send_ns as infer's; recv_ns is unmarshalling the request's responses and taking what
they say; response_ns stamps each with the monotonic_ns of the read that brought it.
"""

from __future__ import annotations

import asyncio
import base64
from time import monotonic_ns, perf_counter_ns
from typing import Any

from tritonclient.grpc import service_pb2

from loadgen.errors import UsageError
from loadgen.outcome import InferOutcome, RequestError, StreamOutcome, connection, grpc_status, protocol, timeout
from loadgen.protocol.grpc_status import grpc_timeout, outcome_error, response_message
from loadgen.protocol.grpc_stream import broken_stream_error, elements, read_response, split_messages
from loadgen.protocol.h2 import ConnectionTerminated, H2Connection, SettingsReceived, Stream, StreamEnded, request_header_block
from loadgen.redact import redact_url
from loadgen.shared_memory import Placement, Slot
from loadgen.transport.base import (
    CONNECT_TIMEOUT_S,
    LOAD_TIMEOUT_S,
    InputTensor,
    Transport,
    check_header,
    expected_outputs,
    split_host_port,
    url_credentials,
)
from loadgen.transport.grpc_control import GrpcControl
from loadgen.transport.request_id import ID_DIGITS, IdPieces, id_digits, request_id
from loadgen.transport.sequence_params import GRPC_WIDTH, grpc_fields
from loadgen.transport.tls import TlsOptions, tls_failure
from loadgen.validation import ExpectedOutputs, check_grpc

_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


def _request_header_block(
    authority: str, path: str, metadata: tuple[tuple[str, str], ...], https: bool, timeout_ms: float | None = None
) -> bytes:
    fields = []
    if timeout_ms:  # the server gives up on the call at its deadline too, and drops the work
        fields.append((b"grpc-timeout", grpc_timeout(timeout_ms)))
    fields += [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
    if not any(name == "user-agent" for name, _ in metadata):
        fields.append((b"user-agent", b"loadgen-grpc"))
    for name, value in metadata:
        raw = value.encode("utf-8")
        if name.endswith("-bin"):  # binary metadata travels base64-encoded
            raw = base64.b64encode(raw).rstrip(b"=")
        fields.append((name.encode("latin-1"), raw))
    return request_header_block(authority.encode(), path.encode(), https, fields)


class _ConnectionGone(Exception):
    """No connection could be opened (its text is the gRPC error's details)."""


class _H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (loadgen.protocol.h2's state machine) on an asyncio transport.
    Every stream's `token` is the future its caller waits on.

    The frames of the requests started in one turn of the event loop go out in one write, at the
    start of the next turn: on loopback TCP a write costs more than framing a request (the
    kernel runs the peer's receive path in the writer's time), and at high rates the pacer
    fires several requests per turn."""

    def __init__(self, header_block: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = loop
        self.ready = loop.create_future()  # the server's first SETTINGS came
        self.h2 = H2Connection(header_block)
        self.write_due = False  # a write of what the state machine has to send is scheduled
        self.feed: _Feed | None = None  # the ModelStreamInfer call opened here last

    def _write(self) -> None:
        self.write_due = False
        out = self.h2.out
        if out:
            if not self.transport.is_closing():
                self.transport.write(b"".join(out))
            out.clear()

    def _flush(self, events: list | tuple) -> None:
        """Writes what the state machine has to send, wakes the callers of ended streams, and
        closes the socket once the connection has no streams left and takes no new ones."""
        h2 = self.h2
        if h2.out:
            self._write()
        for event in events:
            kind = type(event)
            if kind is StreamEnded:
                _ended(event.stream)
            elif kind is SettingsReceived:
                if not self.ready.done():
                    self.ready.set_result(None)
            elif kind is ConnectionTerminated and not self.ready.done():
                self.ready.set_exception(_ConnectionGone(f"{event.error.message}: is it a gRPC port?"))
                self.ready.exception()  # retrieved, whoever waits
        if h2.closed and not h2.streams and not h2.queued:
            self.transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.h2.initiate()
        transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        reason = str(exc).strip() if exc is not None else ""
        if not self.ready.done():
            self.ready.set_exception(
                _ConnectionGone(f"the connection closed before the server's HTTP/2 settings came{': ' + reason if reason else ''}: is it a gRPC port?")
            )
            self.ready.exception()  # retrieved, whoever waits
        for event in self.h2.connection_lost(reason):
            if type(event) is StreamEnded:
                _ended(event.stream)

    def eof_received(self) -> bool:
        return False  # close; connection_lost fails what is in flight

    def data_received(self, data: bytes) -> None:
        events = self.h2.receive(data)
        feed = self.feed
        if feed is not None and feed.stream.data:  # (before the events: a stream's last responses, then its end)
            feed.read(monotonic_ns())
        if events or self.h2.out:
            self._flush(events)

    # -- streams ----------------------------------------------------------------------------

    def start(self, stream: Stream) -> None:
        """Opens `stream` now, or queues it while the server's concurrent-stream limit is reached."""
        events = self.h2.start(stream)
        if events:
            self._flush(events)
        else:
            self._write_soon()

    def _write_soon(self) -> None:
        if not self.write_due and self.h2.out:
            self.write_due = True
            self.loop.call_soon(self._write)

    def send(self, stream: Stream, data: memoryview, tail: bytes) -> None:
        """More of a duplex stream's body (a streamed request), written with the turn's other frames."""
        self.h2.send(stream, data, tail)
        self._write_soon()

    def end_body(self, stream: Stream) -> None:
        self.h2.end_body(stream)
        self._write_soon()

    def cancel(self, stream: Stream) -> None:
        """The caller gave up on `stream` (its task was cancelled): reset it, keep the connection."""
        if not self.h2.failed:
            self._flush(self.h2.cancel(stream))

    def close(self) -> None:
        self.h2.closed = True
        if self.transport is not None and not self.h2.failed:
            self.transport.close()


class _Prepared:
    """A request built once: the marshalled ModelInferRequest as a gRPC message (5-byte prefix);
    and what its responses must hold (None: they are not checked)."""

    __slots__ = ("framed", "expected", "ids", "sequence_head")

    def __init__(self, raw: bytes, expected: ExpectedOutputs | None = None, traced: bool = False, sequences: bool = False) -> None:
        self.framed = b"\x00" + len(raw).to_bytes(4, "big") + raw
        self.expected = expected
        # With tracing the message ends with its id (prepare): each send puts its own digits last.
        self.ids = IdPieces(self.framed, len(self.framed) - ID_DIGITS) if traced else None
        # For a sequence model it ends with its sequence parameters: each send puts its own last.
        self.sequence_head = memoryview(self.framed)[: len(self.framed) - GRPC_WIDTH] if sequences else None


def _ended(stream: Stream) -> None:
    """Wakes whoever waits on an ended stream: an infer's future, or the requests of a feed."""
    token = stream.token
    if type(token) is _Feed:
        token.broke()
    elif not token.done():
        token.set_result(None)


class _PreparedStream:
    """A streamed request built once: the gRPC message of its ModelInferRequest up to the last
    ID_DIGITS bytes, its id's digits (a send puts its own there); the id's prefix; the output
    whose element count is a response's tokens (None: none)."""

    __slots__ = ("head", "prefix", "token")

    def __init__(self, raw: bytes, prefix: str, token: str | None) -> None:
        framed = b"\x00" + len(raw).to_bytes(4, "big") + raw
        self.head = IdPieces(framed, len(framed) - ID_DIGITS).head
        self.prefix = prefix
        self.token = token


class _Call:
    """A streamed request in flight: what its responses brought so far, and its caller's future."""

    __slots__ = ("waiter", "token", "response_ns", "tokens", "recv_ns", "error", "timer")

    def __init__(self, waiter: asyncio.Future, token: str | None) -> None:
        self.waiter = waiter
        self.token = token
        self.response_ns: list[int] = []
        self.tokens: list[int] = []
        self.recv_ns = 0
        self.error: RequestError | None = None
        self.timer: asyncio.TimerHandle | None = None


class _Feed:
    """A ModelStreamInfer call on a connection: its duplex HTTP/2 stream and the requests in
    flight on it, by id. `ended`: it takes no more requests (the stream is over, or it broke)."""

    __slots__ = ("conn", "stream", "calls", "ended")

    def __init__(self, conn: _H2Protocol, header_block: bytes) -> None:
        self.conn = conn
        self.stream = Stream(b"", self, block=header_block)
        self.calls: dict[str, _Call] = {}
        self.ended = False

    def read(self, now_ns: int) -> None:
        """Takes the stream's whole messages, read at `now_ns`: each response goes to its request."""
        stream = self.stream
        data = stream.data
        try:
            bounds, used = split_messages(data)
        except ValueError as exc:
            self._unreadable(str(exc))
            return
        calls = self.calls
        for start, end in bounds:
            t0 = perf_counter_ns()
            try:
                rid, error, final, outputs = read_response(data[start:end])
            except ValueError as exc:
                self._unreadable(f"not a ModelStreamInferResponse: {exc}")
                return
            call = calls.get(rid)
            if call is None:  # given up on (its deadline, or cancelled) or over: the rest of its responses
                continue
            if outputs:
                call.response_ns.append(now_ns)
                if call.token is not None:
                    call.tokens.append(elements(outputs, call.token))
            call.recv_ns += perf_counter_ns() - t0
            if error:  # Triton sends the message alone, without a status
                self._finish(rid, call, grpc_status("UNKNOWN", error))
            elif final:
                self._finish(rid, call, None)
        stream.data = None if used == len(data) else data[used:]

    def _finish(self, rid: str, call: _Call, error: RequestError | None) -> None:
        del self.calls[rid]
        call.error = error
        if call.timer is not None:
            call.timer.cancel()
        if not call.waiter.done():
            call.waiter.set_result(None)

    def expire(self, rid: str, error: RequestError) -> None:
        """The request's deadline passed: it ends with `error`, keeping the responses it got."""
        call = self.calls.get(rid)
        if call is not None:
            call.timer = None
            self._finish(rid, call, error)

    def forget(self, rid: str) -> None:
        """The caller gave up on the request (cancelled): its later responses are dropped."""
        call = self.calls.pop(rid, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()

    def broke(self) -> None:
        """The stream ended: every request still in flight fails."""
        self._fail(broken_stream_error(self.stream))

    def _unreadable(self, what: str) -> None:
        """Bytes that are no gRPC message or no response: nothing after them can be trusted to
        belong to the request it names, so the stream is reset and its requests fail."""
        self._fail(protocol(f"bad response on the stream: {what}", "INTERNAL"))
        self.conn.cancel(self.stream)

    def _fail(self, error: RequestError) -> None:
        self.ended = True
        self.stream.data = None
        for rid, call in list(self.calls.items()):
            self._finish(rid, call, error)


class GrpcTransport(Transport):
    """Triton over gRPC. Connections are opened on first use, inside the running event loop."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        tls: TlsOptions | None = None,
        request_timeout_ms: float | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = redact_url(url)  # as messages show it
        self._connect_timeout_s = connect_timeout_s
        # The server's DEADLINE_EXCEEDED at the grpc-timeout sent is a timeout, as the engine's own is.
        self._deadline_error = timeout(request_timeout_ms) if request_timeout_ms else None
        if url_credentials(url) is not None:
            raise UsageError("gRPC takes no user:password@ in -u: send credentials as metadata, e.g. -H 'authorization: Bearer TOKEN'")
        self._tls = tls
        # Built once: a connection pays for its handshake, and a request for nothing but encryption.
        self._ssl = tls.context("h2") if tls is not None else None
        self._headers = {str(k).strip().lower(): str(v).strip() for k, v in (headers or {}).items()}
        for name, value in self._headers.items():
            check_header(name, value)
        self._metadata = tuple(self._headers.items())
        self._address = host, port = split_host_port(url, 8001)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._control = GrpcControl(authority, self.url, self._address, self._headers, tls)
        self._header_block = _request_header_block(authority, _INFER_METHOD, self._metadata, tls is not None, request_timeout_ms)
        # No grpc-timeout on the stream: it outlives every request; each has a timer of its own.
        self._stream_block = _request_header_block(authority, _STREAM_METHOD, self._metadata, tls is not None)
        self._timeout_s = request_timeout_ms / 1e3 if request_timeout_ms else None
        self._feed: _Feed | None = None
        self._serial = 0  # the number of a streamed request sent without one
        self._conn: _H2Protocol | None = None
        # The header and trailer lists of the last good response: h2 hands out the same list
        # objects for a block it decoded before, so the next response with these very lists is
        # good too, without reading them again (kept referenced: identity stays meaningful).
        self._good: tuple[Any, Any] = (self, self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future | None = None
        self._closed = False

    # -- control calls (loadgen.transport.grpc_control) --------------------------------------

    async def server_metadata(self) -> dict[str, Any]:
        return await self._control.server_metadata()

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return await self._control.model_metadata(model, version)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        return await self._control.model_config(model, version)

    async def model_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        return await self._control.model_statistics(model, version)

    async def server_live(self, timeout_s: float) -> str | None:
        return await self._control.server_live(timeout_s)

    async def update_trace_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return await self._control.update_trace_settings(settings)

    async def load_model(self, model: str, config: dict[str, Any] | None = None, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        await self._control.load_model(model, config, timeout_s)

    async def unload_model(self, model: str) -> None:
        await self._control.unload_model(model)

    async def repository_index(self) -> list[dict[str, str]]:
        return await self._control.repository_index()

    async def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        await self._control.register_system_shared_memory(name, key, byte_size)

    async def unregister_system_shared_memory(self, name: str) -> None:
        await self._control.unregister_system_shared_memory(name)

    # -- the hot path -----------------------------------------------------------------------

    def prepare(
        self, model: str, version: str, inputs: list[InputTensor], outputs: list[str], id_prefix: str | None = None,
        sequences: bool = False, shared_memory: Placement | None = None,
    ) -> _Prepared:
        raw = _infer_request(model, version, inputs, outputs, shared_memory).SerializeToString()
        if id_prefix is not None:  # the id last (a parser takes fields in any order), so a send's digits end the message
            raw += service_pb2.ModelInferRequest(id=request_id(id_prefix, 0)).SerializeToString()
        if sequences:  # the sequence parameters last, likewise (config refuses them with tracing's id)
            raw += grpc_fields(0, False, False)
        return _Prepared(raw, expected_outputs(inputs), id_prefix is not None, sequences)

    def prepare_stream(
        self, model: str, version: str, inputs: list[InputTensor], outputs: list[str], token_output: str | None = None,
        id_prefix: str | None = None,
    ) -> _PreparedStream:
        request = _infer_request(model, version, inputs, outputs)
        request.parameters["triton_enable_empty_final_response"].bool_param = True
        prefix = id_prefix or ""
        # the id last, as prepare's: a send's digits end the message
        raw = request.SerializeToString() + service_pb2.ModelInferRequest(id=request_id(prefix, 0)).SerializeToString()
        return _PreparedStream(raw, prefix, token_output)

    async def _open(self) -> _H2Protocol:
        """A new connection, once the server's SETTINGS have come (as grpc waits for them: a
        server's MAX_CONCURRENT_STREAMS must be known before the first burst of streams)."""
        loop = self._loop
        host, port = self._address
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _H2Protocol(self._header_block, loop), host, port, ssl=self._ssl, server_hostname=host if self._ssl else None
                ),
                self._connect_timeout_s,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            reason = str(exc).strip() or f"no connection within {self._connect_timeout_s:g} s"
            if self._ssl is not None:
                reason = tls_failure(reason, "grpc") or reason
            raise _ConnectionGone(f"cannot connect to {self.url}: {reason}") from None
        if self._ssl is not None and transport.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            conn.close()
            raise _ConnectionGone(f"{self.url} did not agree to HTTP/2 over TLS (ALPN h2): is it a gRPC port?")
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), self._connect_timeout_s)
        except asyncio.TimeoutError:
            conn.close()
            raise _ConnectionGone(f"no HTTP/2 settings from {self.url} within {self._connect_timeout_s:g} s: is it a gRPC port?") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _opened(self, task: asyncio.Task) -> None:
        self._connecting = None
        if task.cancelled() or task.exception() is not None:  # exception() marks it retrieved
            return
        conn = task.result()
        if self._closed:
            conn.close()
        else:
            self._conn = conn

    async def _connection(self) -> _H2Protocol:
        """The open connection, or a new one. The connecting is a task of its own that every
        request arriving meanwhile waits for: a caller cancelled meanwhile doesn't cancel it."""
        if self._closed:
            raise _ConnectionGone("the transport was closed")
        task = self._connecting
        if task is None:
            self._loop = asyncio.get_running_loop()
            task = self._connecting = self._loop.create_task(self._open())
            task.add_done_callback(self._opened)
        try:
            conn = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and self._closed:  # close() gave up on it, not our caller
                raise _ConnectionGone("the transport was closed") from None
            raise
        if self._closed:
            raise _ConnectionGone("the transport was closed")
        return conn

    async def infer(
        self, prepared: _Prepared, number: int | None = None, sequence: tuple[int, bool, bool] | None = None
    ) -> InferOutcome:
        if sequence is not None:
            payload, digits = prepared.sequence_head, grpc_fields(*sequence)
        elif number is None:
            payload, digits = prepared.framed, b""
        else:
            payload, digits = prepared.ids.head, id_digits(number)
        t0 = perf_counter_ns()
        retried = False
        while True:
            conn = self._conn
            if conn is None or conn.h2.closed:  # none yet, or it takes no new streams (h2.usable, inlined)
                try:
                    conn = await self._connection()
                except _ConnectionGone as exc:
                    return InferOutcome(0, 0, connection(str(exc), "UNAVAILABLE"))
            stream = Stream(payload, self._loop.create_future(), digits)
            conn.start(stream)
            try:
                await stream.token
            except asyncio.CancelledError:
                conn.cancel(stream)
                raise
            if retried or stream.error is None or not stream.error.retryable:
                break
            retried = True  # the server never processed it: once more, as grpc's transparent retry does
        t_sent = stream.t_sent or stream.t_first or stream.t_done
        send_ns = max(t_sent - t0, 0)
        # reading (first frame to END_STREAM) plus unmarshalling, without the wait for this task's turn
        read_ns = stream.t_done - stream.t_first if stream.t_first else 0
        good = self._good
        if stream.headers is not good[0] or stream.trailers is not good[1] or stream.error is not None:
            error = outcome_error(stream, self._deadline_error)
            if error is not None:
                return InferOutcome(send_ns, read_ns, error)
            self._good = (stream.headers, stream.trailers)
        t1 = perf_counter_ns()
        try:
            response = _parse_response(response_message(stream.data))
        except Exception as exc:  # noqa: BLE001 - a malformed response is an outcome, not a crash
            return InferOutcome(send_ns, read_ns + perf_counter_ns() - t1, protocol(f"bad response: {exc}", "INTERNAL"))
        expected = prepared.expected
        if expected is None:
            return InferOutcome(send_ns, read_ns + perf_counter_ns() - t1)
        t2 = perf_counter_ns()
        error = check_grpc(expected, response)
        return InferOutcome(send_ns, read_ns + t2 - t1, error, perf_counter_ns() - t2)

    async def _open_feed(self) -> _Feed:
        """The ModelStreamInfer call to send on: the open one, or a new one (on a new connection
        when this one takes no new streams)."""
        conn = self._conn
        if conn is None or conn.h2.closed:
            conn = await self._connection()
        feed = self._feed
        if feed is None or feed.ended or feed.conn.h2.closed:  # (another request may have opened one meanwhile)
            if feed is not None and not feed.ended:  # its connection is going away: the server finishes what is on it
                feed.conn.end_body(feed.stream)
            feed = self._feed = conn.feed = _Feed(conn, self._stream_block)
            conn.start(feed.stream)
        return feed

    async def stream(self, prepared: _PreparedStream, number: int | None = None) -> StreamOutcome:
        t0 = perf_counter_ns()
        feed = self._feed
        if feed is None or feed.ended or feed.conn.h2.closed:
            try:
                feed = await self._open_feed()
            except _ConnectionGone as exc:
                return StreamOutcome(0, 0, (), error=connection(str(exc), "UNAVAILABLE"))
            if feed.ended:  # the connection closed as the stream started
                return StreamOutcome(perf_counter_ns() - t0, 0, (), error=broken_stream_error(feed.stream))
        calls = feed.calls
        if number is None:
            number = self._serial = self._serial + 1
            while request_id(prepared.prefix, number) in calls:  # a caller's number, in flight
                number = self._serial = self._serial + 1
        rid = request_id(prepared.prefix, number)
        if rid in calls:
            raise ValueError(f"request id {rid!r} is in flight already")
        call = calls[rid] = _Call(self._loop.create_future(), prepared.token)
        feed.conn.send(feed.stream, prepared.head, id_digits(number))
        send_ns = perf_counter_ns() - t0
        if self._timeout_s is not None:
            call.timer = self._loop.call_later(self._timeout_s - send_ns / 1e9, feed.expire, rid, self._deadline_error)
        try:
            await call.waiter
        except asyncio.CancelledError:
            feed.forget(rid)
            raise
        tokens = tuple(call.tokens) if call.token is not None else ()
        return StreamOutcome(send_ns, call.recv_ns, tuple(call.response_ns), tokens, call.error)

    async def close(self) -> None:
        self._closed = True
        self._feed = None
        if self._connecting is not None:
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        await self._control.close()


def _infer_request(
    model: str, version: str, inputs: list[InputTensor], outputs: list[str], shared_memory: Placement | None = None
) -> service_pb2.ModelInferRequest:
    """The request; with `shared_memory`, each tensor names its slot of the region instead of carrying data."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=str(version or ""))
    for i, tensor in enumerate(inputs):
        entry = request.inputs.add()
        entry.name = tensor.name
        entry.datatype = tensor.datatype
        entry.shape.extend(int(d) for d in tensor.shape)
        if shared_memory is None:
            request.raw_input_contents.append(tensor.data)
        else:
            _name_slot(entry.parameters, shared_memory.region, shared_memory.inputs[i])
    for i, name in enumerate(outputs):
        entry = request.outputs.add()
        entry.name = name
        if shared_memory is not None:
            _name_slot(entry.parameters, shared_memory.region, shared_memory.outputs[i])
    return request


def _name_slot(parameters: Any, region: str, slot: Slot) -> None:
    """A tensor's parameters naming its slot of a registered region."""
    parameters["shared_memory_region"].string_param = region
    parameters["shared_memory_byte_size"].int64_param = slot.size_bytes
    parameters["shared_memory_offset"].int64_param = slot.offset_bytes


_parse_response = service_pb2.ModelInferResponse.FromString
