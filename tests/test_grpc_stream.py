"""Streamed gRPC requests (GrpcTransport.stream over Triton's ModelStreamInfer): the framing and
reading of the stream's messages without sockets (hypothesis: split anywhere, any response), then
the real embedded server on tests/model_repos/decoupled (stream16, stream-fail, stream-echo), a
TCP relay that cuts connections, and a grpc.aio peer that ends streams with an error status or
sends GOAWAY (Triton does neither on demand)."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import struct
from time import monotonic_ns

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from loadgen.outcome import FailureKind, StreamOutcome, timeout
from loadgen.protocol.grpc_stream import FINAL_KEY, broken_stream_error, elements, read_response, split_messages
from loadgen.protocol.h2 import Failure, Stream, StreamError
from loadgen.transport.base import InputTensor
from loadgen.transport.grpc import GrpcTransport

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))  # a request that never ends fails the test, not the session


def message(body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(body)) + body


def tokens_input(n: int) -> InputTensor:
    """IN of `n` elements: each of stream16's responses then holds n tokens."""
    return InputTensor("IN", "INT32", (n,), struct.pack(f"<{n}i", *range(n)))


# -- the stream's messages, without sockets ---------------------------------------------------


@PROPERTY
@given(st.lists(st.binary(max_size=300), max_size=10), st.lists(st.integers(0, 10**6), max_size=12))
def test_messages_split_anywhere_come_out_whole_and_in_order(bodies, cuts):
    """As the transport reads them: the bytes so far, its whole messages taken, the rest kept."""
    wire = b"".join(message(b) for b in bodies)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    got, buffer = [], b""
    for a, b in itertools.pairwise([0, *points, len(wire)]):
        buffer += wire[a:b]
        bounds, used = split_messages(buffer)
        got += [buffer[start:end] for start, end in bounds]
        buffer = buffer[used:]
    assert got == bodies and buffer == b""


def test_a_compressed_message_is_refused():
    with pytest.raises(ValueError, match="compressed"):
        split_messages(message(b"ok") + b"\x01\x00\x00\x00\x01x")
    assert split_messages(message(b"ok") + b"\x00\x00\x00")[1] == 7  # a prefix cut short waits for the rest


def response_bytes(rid: str, error: str, final: bool | str | None, outputs: list[tuple[str, list[int]]], extra: dict) -> bytes:
    """A ModelStreamInferResponse as Triton's protobuf writes it. `final`: the flag's bool_param,
    or a string_param in its place, or no such parameter (None)."""
    response = service_pb2.ModelStreamInferResponse(error_message=error)
    infer = response.infer_response
    infer.id, infer.model_name = rid, "m"
    for key, value in extra.items():
        infer.parameters[key].int64_param = value
    if isinstance(final, bool):
        infer.parameters[FINAL_KEY].bool_param = final
    elif isinstance(final, str):
        infer.parameters[FINAL_KEY].string_param = final
    for name, shape in outputs:
        output = infer.outputs.add()
        output.name, output.datatype = name, "INT32"
        output.shape.extend(shape)
        infer.raw_output_contents.append(bytes(4 * max(0, len(shape))))
    return response.SerializeToString()


NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@PROPERTY
@given(NAMES, NAMES, st.one_of(st.none(), st.booleans(), NAMES),
       st.lists(st.tuples(st.sampled_from(["OUT", "TEXT", "ids"]), st.lists(st.integers(0, 2**20), max_size=3)), max_size=3),
       st.dictionaries(NAMES, st.integers(-(2**40), 2**40), max_size=2))  # fmt: skip
def test_a_response_says_its_id_error_final_flag_and_outputs(rid, error, final, outputs, extra):
    got_id, got_error, got_final, got_outputs = read_response(response_bytes(rid, error, final, outputs, extra))
    assert (got_id, got_error, got_final) == (rid, error, final is True)
    for name in ("OUT", "TEXT", "ids", "absent"):  # the first output of that name counts
        assert elements(got_outputs, name) == next((math.prod(shape) for n, shape in outputs if n == name), 0)


@PROPERTY
@given(st.binary(max_size=200))
def test_any_bytes_are_a_response_or_a_value_error(data):
    try:
        rid, error, final, outputs = read_response(data)
    except ValueError:
        return
    assert isinstance(rid, str) and isinstance(error, str) and isinstance(final, bool)


def ended_stream(error=None, headers=None, trailers=None) -> Stream:
    stream = Stream(b"", block=b"")
    stream.error, stream.headers, stream.trailers = error, headers, trailers
    return stream


OK = [(b":status", b"200"), (b"content-type", b"application/grpc")]


@pytest.mark.parametrize(
    "stream,kind,code,says",
    [
        (ended_stream(StreamError(Failure.LOST, 0, "connection to the server lost")), FailureKind.CONNECTION, "UNAVAILABLE", "lost"),
        (ended_stream(StreamError(Failure.GOAWAY, 0, "the server closed the connection (GOAWAY NO_ERROR)")), FailureKind.CONNECTION,
         "UNAVAILABLE", "GOAWAY"),
        (ended_stream(StreamError(Failure.RESET, 8, "the server reset the stream (CANCEL)")), FailureKind.CONNECTION, "CANCELLED",
         "gRPC CANCELLED: the server reset the stream"),
        (ended_stream(None, OK, [(b"grpc-status", b"14"), (b"grpc-message", b"shutting%20down")]), FailureKind.CONNECTION,
         "UNAVAILABLE", "the stream ended with gRPC UNAVAILABLE: shutting down"),
        (ended_stream(None, OK, [(b"grpc-status", b"0")]), FailureKind.CONNECTION, "UNAVAILABLE", "before the request's final response"),
        (ended_stream(StreamError(Failure.MALFORMED, 1, "bad HTTP/2 response from the server: x")), FailureKind.PROTOCOL, "INTERNAL",
         "bad HTTP/2"),
    ],
)  # fmt: skip
def test_what_an_ended_stream_means_for_the_requests_in_flight(stream, kind, code, says):
    error = broken_stream_error(stream)
    assert (error.kind, error.code) == (kind, code) and says in error.message


# -- the real server ------------------------------------------------------------------------------


async def timed(transport: GrpcTransport, prepared, number=None) -> tuple[int, StreamOutcome]:
    """The monotonic_ns just before the request, and its outcome."""
    start_ns = monotonic_ns()
    return start_ns, await transport.stream(prepared, number)


def test_stream16_times_each_of_its_16_responses(decoupled_triton):
    async def go():
        async with GrpcTransport(decoupled_triton.grpc, {}) as transport:
            prepared = transport.prepare_stream("stream16", "", [tokens_input(3)], ["OUT"], token_output="OUT")
            await transport.stream(prepared)  # warm-up: the model's first request starts its threads
            return [await timed(transport, prepared) for _ in range(5)]

    for start_ns, outcome in run(go()):
        assert outcome.error is None and len(outcome.response_ns) == 16 and outcome.tokens == (3,) * 16
        assert outcome.send_ns > 0 and outcome.recv_ns > 0
        first_ms = (outcome.response_ns[0] - start_ns) / 1e6
        gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(outcome.response_ns)]
        assert 38 <= first_ms < 150, first_ms
        assert 3 <= statistics.median(gaps_ms) < 15 and min(gaps_ms) >= 0, gaps_ms


def test_many_requests_in_flight_on_one_stream_each_get_their_own_responses(decoupled_triton):
    """Each request's IN has its own size, so each of its responses' tokens say whose they are."""

    async def go():
        async with GrpcTransport(decoupled_triton.grpc, {}) as transport:
            prepared = [transport.prepare_stream("stream16", "", [tokens_input(n)], ["OUT"], token_output="OUT") for n in range(1, 25)]
            outcomes = await asyncio.gather(*(transport.stream(p) for p in prepared))
            again = await asyncio.gather(*(transport.stream(p, 1000 + i) for i, p in enumerate(prepared[:4])))
            return outcomes + again, transport._conn.h2.next_sid

    outcomes, next_sid = run(go())
    sizes = list(range(1, 25)) + [1, 2, 3, 4]
    assert [o.error for o in outcomes] == [None] * len(sizes)
    assert [o.tokens for o in outcomes] == [(n,) * 16 for n in sizes]
    assert all(len(o.response_ns) == 16 and list(o.response_ns) == sorted(o.response_ns) for o in outcomes)
    assert next_sid == 3  # one HTTP/2 stream carried them all


def test_an_error_response_ends_its_request_and_the_others_go_on(decoupled_triton):
    async def go():
        async with GrpcTransport(decoupled_triton.grpc, {}) as transport:
            good = transport.prepare_stream("stream16", "", [tokens_input(2)], ["OUT"], token_output="OUT")
            failing = transport.prepare_stream("stream-fail", "", [tokens_input(2)], ["OUT"], token_output="OUT")
            unknown = transport.prepare_stream("no-such-model", "", [tokens_input(2)], ["OUT"])
            bad_input = transport.prepare_stream("stream16", "", [InputTensor("NOPE", "INT32", (1,), bytes(4))], ["OUT"])
            outcomes = await asyncio.gather(transport.stream(good), transport.stream(failing), transport.stream(unknown),
                                            transport.stream(bad_input), transport.stream(good))  # fmt: skip
            after = await transport.stream(good)
            return outcomes, after, transport._conn.h2.next_sid

    (first, failed, unknown, bad_input, second), after, next_sid = run(go())
    assert failed.error.kind is FailureKind.GRPC_STATUS and failed.error.code == "UNKNOWN"
    assert failed.error.message == "failed at response 3"
    assert len(failed.response_ns) == 3 and failed.tokens == (2, 2, 2)  # the responses before the error count
    assert "unknown model" in unknown.error.message and unknown.response_ns == ()
    assert "NOPE" in bad_input.error.message and bad_input.error.kind is FailureKind.GRPC_STATUS
    for outcome in (first, second, after):
        assert outcome.error is None and len(outcome.response_ns) == 16
    assert next_sid == 3  # errors of requests leave the stream alone


def test_the_empty_final_response_is_not_a_response(decoupled_triton):
    """stream-echo sends 4 responses, then the final flag alone; an id prefix and number work as tracing's."""

    async def go():
        async with GrpcTransport(decoupled_triton.grpc, {}) as transport:
            plain = transport.prepare_stream("stream-echo", "", [tokens_input(5)], ["OUT"])
            traced = transport.prepare_stream("stream-echo", "1", [tokens_input(5)], ["OUT"], "OUT", id_prefix="0a1b2c3d-")
            return await asyncio.gather(transport.stream(plain), transport.stream(traced, 41), transport.stream(traced, 42))

    outcomes = run(go())
    assert [(len(o.response_ns), o.tokens, o.error) for o in outcomes] == [(4, (), None), (4, (5,) * 4, None), (4, (5,) * 4, None)]


def test_a_request_past_its_deadline_times_out_with_its_responses_and_the_stream_goes_on(decoupled_triton):
    async def go():
        async with GrpcTransport(decoupled_triton.grpc, {}, request_timeout_ms=90) as transport:
            slow = transport.prepare_stream("stream16", "", [tokens_input(1)], ["OUT"], token_output="OUT")
            quick = transport.prepare_stream("stream-echo", "", [tokens_input(2)], ["OUT"], token_output="OUT")
            await transport.stream(quick)
            started_ns, late = await timed(transport, slow)
            took_ms = (monotonic_ns() - started_ns) / 1e6
            # stream16's last responses to it arrive now, and are dropped
            following = [await transport.stream(quick) for _ in range(10)]
            return late, took_ms, following, transport._conn.h2.next_sid

    late, took_ms, following, next_sid = run(go())
    assert late.error == timeout(90) and len(late.response_ns) < 16 and late.tokens == (1,) * len(late.response_ns)
    assert 85 <= took_ms < 1000
    assert all(o.error is None and o.tokens == (2,) * 4 for o in following)
    assert next_sid == 3


def test_a_cancelled_request_leaves_the_stream_to_the_others(decoupled_triton):
    async def go():
        async with GrpcTransport(decoupled_triton.grpc, {}) as transport:
            prepared = [transport.prepare_stream("stream16", "", [tokens_input(n)], ["OUT"], token_output="OUT") for n in (1, 2, 3)]
            tasks = [asyncio.ensure_future(transport.stream(p)) for p in prepared]
            await asyncio.sleep(0.06)
            tasks[1].cancel()
            with pytest.raises(asyncio.CancelledError):
                await tasks[1]
            in_flight = len(transport._feed.calls)
            outcomes = [await tasks[0], await tasks[2], await transport.stream(prepared[1])]
            return outcomes, in_flight, len(transport._feed.calls), transport._conn.h2.next_sid

    outcomes, in_flight, left, next_sid = run(go())
    assert in_flight == 2 and left == 0
    assert [(o.error, o.tokens) for o in outcomes] == [(None, (1,) * 16), (None, (3,) * 16), (None, (2,) * 16)]
    assert next_sid == 3


class Relay:
    """A TCP relay on 127.0.0.1 in front of `target` (host:port) whose connections `cut()` aborts,
    both sides at once: a connection broken mid-stream, as a crashed proxy or a reset leaves it."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = host, int(port)
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _handle(self, client_reader, client_writer) -> None:
        self.connections += 1
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self.writers += [client_writer, server_writer]

        async def pump(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))


def test_a_broken_connection_fails_the_requests_in_flight_and_the_next_gets_a_new_stream(decoupled_triton):
    async def go():
        async with Relay(decoupled_triton.grpc) as relay, GrpcTransport(relay.url, {}) as transport:
            prepared = [transport.prepare_stream("stream16", "", [tokens_input(n)], ["OUT"], token_output="OUT") for n in (1, 2, 3)]
            await transport.stream(prepared[0])  # warm
            tasks = [asyncio.ensure_future(transport.stream(p)) for p in prepared]
            while not any(call.response_ns for call in transport._feed.calls.values()):  # a response in, and more to come
                await asyncio.sleep(0.002)
            relay.cut()
            broken = await asyncio.gather(*tasks)
            after = await transport.stream(prepared[1])
            return broken, after, relay.connections

    broken, after, connections = run(go())
    for outcome in broken:
        assert outcome.error.kind is FailureKind.CONNECTION and "lost" in outcome.error.message
        assert len(outcome.response_ns) < 16 and len(outcome.tokens) == len(outcome.response_ns)
    assert any(outcome.response_ns for outcome in broken)  # what came before the break is kept
    assert after.error is None and after.tokens == (2,) * 16 and connections == 2


def test_closing_the_transport_ends_the_requests_in_flight(decoupled_triton):
    async def go():
        transport = GrpcTransport(decoupled_triton.grpc, {})
        prepared = transport.prepare_stream("stream16", "", [tokens_input(1)], ["OUT"])
        task = asyncio.ensure_future(transport.stream(prepared))
        await asyncio.sleep(0.02)
        await transport.close()
        outcome = await asyncio.wait_for(task, 5)
        return outcome, await transport.stream(prepared)

    outcome, after = run(go())
    assert outcome.error.kind is FailureKind.CONNECTION
    assert after.error.kind is FailureKind.CONNECTION and "closed" in after.error.message


def test_no_server_is_a_connection_error_outcome():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused

        async def go():
            async with GrpcTransport(f"127.0.0.1:{port}", {}) as transport:
                return await transport.stream(transport.prepare_stream("m", "", [tokens_input(1)], ["OUT"]))

        outcome = run(go())
    assert outcome.error.kind is FailureKind.CONNECTION and "cannot connect" in outcome.error.message


# -- a grpc.aio peer: error status, GOAWAY --------------------------------------------------------


def infer_response(rid: str, final: bool, with_output: bool) -> service_pb2.ModelStreamInferResponse:
    response = service_pb2.ModelStreamInferResponse()
    infer = response.infer_response
    infer.id = rid
    infer.parameters[FINAL_KEY].bool_param = final
    if with_output:
        output = infer.outputs.add()
        output.name, output.datatype = "OUT", "INT32"
        output.shape.append(2)
        infer.raw_output_contents.append(bytes(8))
    return response


class StreamPeer(grpc.GenericRpcHandler):
    """ModelStreamInfer as Triton answers it: each request (model "ok") 5 responses 10 ms apart,
    then the empty final one; a request for model "abort" ends the call with UNAVAILABLE after
    100 ms, one for "garbage" gets bytes that are no response after 100 ms. Counts the calls and
    those the client ended (its body over, every request answered) or reset."""

    def __init__(self) -> None:
        self.calls = 0
        self.ended_by_client = 0
        self.cancelled = 0

    def service(self, handler_call_details):
        if not handler_call_details.method.endswith("/ModelStreamInfer"):
            return None

        async def bidi(requests, context):
            self.calls += 1
            lock = asyncio.Lock()

            async def answer(rid: str) -> None:
                for i in range(6):
                    await asyncio.sleep(0.01)
                    async with lock:
                        await context.write(infer_response(rid, i == 5, i < 5))

            answering = []
            try:
                async for request in requests:
                    if request.model_name == "abort":
                        await asyncio.sleep(0.1)
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "going down")
                    if request.model_name == "garbage":
                        await asyncio.sleep(0.1)
                        async with lock:
                            await context.write(b"\x12\x05ab")  # a field longer than the message
                    answering.append(asyncio.ensure_future(answer(request.id)))
                await asyncio.gather(*answering)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            self.ended_by_client += 1

        return grpc.stream_stream_rpc_method_handler(
            bidi, request_deserializer=service_pb2.ModelInferRequest.FromString,
            response_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
        )  # fmt: skip


async def stream_peer(options=()):
    peer = StreamPeer()
    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers((peer,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, peer, f"127.0.0.1:{port}"


def test_a_stream_the_server_ends_with_an_error_status_fails_its_requests_and_the_next_opens_another():
    async def go():
        server, peer, url = await stream_peer()
        try:
            async with GrpcTransport(url, {}) as transport:
                ok = transport.prepare_stream("ok", "", [tokens_input(1)], ["OUT"], token_output="OUT")
                abort = transport.prepare_stream("abort", "", [tokens_input(1)], ["OUT"])
                broken = await asyncio.gather(transport.stream(ok), transport.stream(abort), transport.stream(ok))
                after = await transport.stream(ok)
                return broken, after, transport._conn.h2.next_sid, peer.calls
        finally:
            await server.stop(None)

    broken, after, next_sid, calls = run(go())
    assert broken[0].error is None and broken[0].tokens == (2,) * 5  # answered before the end
    for outcome in broken[1:]:
        assert outcome.error.kind is FailureKind.CONNECTION and outcome.error.code == "UNAVAILABLE"
        assert outcome.error.message == "the stream ended with gRPC UNAVAILABLE: going down"
    assert after.error is None and after.tokens == (2,) * 5
    assert (next_sid, calls) == (5, 2)  # a second stream, on the same connection


def test_after_goaway_requests_move_to_a_new_connection_and_the_old_stream_finishes():
    """A server with a maximum connection age sends GOAWAY and lets the calls on it finish: none of
    the requests fails, and each old stream is ended by the client once it moved on."""

    async def go():
        server, peer, url = await stream_peer([("grpc.max_connection_age_ms", 250), ("grpc.max_connection_age_grace_ms", 10_000)])
        try:
            async with GrpcTransport(url, {}) as transport:
                prepared = transport.prepare_stream("ok", "", [tokens_input(1)], ["OUT"], token_output="OUT")
                stop_ns = monotonic_ns() + 1_200_000_000

                async def client():
                    outcomes = []
                    while monotonic_ns() < stop_ns:
                        outcomes.append(await transport.stream(prepared))
                    return outcomes

                outcomes = sum(await asyncio.gather(*(client() for _ in range(4))), [])
                await asyncio.sleep(0.2)
                return outcomes, peer.calls, peer.ended_by_client
        finally:
            await server.stop(None)

    outcomes, calls, ended_by_client = run(go())
    assert [o.error for o in outcomes] == [None] * len(outcomes) and all(o.tokens == (2,) * 5 for o in outcomes)
    assert calls >= 3 and ended_by_client == calls - 1  # every stream but the last was ended by the client


def test_bytes_that_are_no_response_fail_the_requests_in_flight_and_reset_the_stream():
    async def go():
        server, peer, url = await stream_peer()
        try:
            async with GrpcTransport(url, {}) as transport:
                ok = transport.prepare_stream("ok", "", [tokens_input(1)], ["OUT"], token_output="OUT")
                garbage = transport.prepare_stream("garbage", "", [tokens_input(1)], ["OUT"])
                broken = await asyncio.gather(transport.stream(ok), transport.stream(garbage), transport.stream(ok))
                after = await transport.stream(ok)
                await asyncio.sleep(0.1)
                return broken, after, transport._conn.h2.next_sid, peer.cancelled
        finally:
            await server.stop(None)

    broken, after, next_sid, cancelled = run(go())
    assert broken[0].error is None and broken[0].tokens == (2,) * 5
    for outcome in broken[1:]:
        assert outcome.error.kind is FailureKind.PROTOCOL and "not a ModelStreamInferResponse" in outcome.error.message
    assert after.error is None and (next_sid, cancelled) == (5, 1)  # the first stream reset, a second one opened
