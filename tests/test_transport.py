"""Both transports against a real embedded Triton server; the HTTP client's edge cases against
small local servers on 127.0.0.1 that play a misbehaving peer; -H headers seen by a recording
HTTP server and a recording gRPC server (Triton has no way to echo a header back)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import time

import grpc
import pytest
from conftest import ECHO_REPOSITORY
from tritonclient.grpc import service_pb2

from loadgen.errors import ServerError, UsageError
from loadgen.server import EmbeddedServer, free_port
from loadgen.transport import open_transport
from loadgen.outcome import FailureKind, InferOutcome, timeout
from loadgen.transport.base import InputTensor, split_host_port
from loadgen.transport.grpc import GrpcTransport
from loadgen.transport.http import HttpTransport

PROTOCOLS = ("http", "grpc")


FP32_INPUT = InputTensor("INPUT0", "FP32", (1, 16), struct.pack("<16f", *range(16)))
BYTES_INPUT = InputTensor("INPUT0", "BYTES", (1, 1), struct.pack("<I", 5) + b"hello")


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def triton(echo_triton):
    """The session's echo server (ident, echo_bytes)."""
    return echo_triton


def url_of(endpoints, protocol: str) -> str:
    return endpoints.http if protocol == "http" else endpoints.grpc


def success_count(stats: dict, model: str) -> tuple[int, int]:
    entry = next(e for e in stats["model_stats"] if e["name"] == model)
    return entry["inference_stats"]["success"]["count"], entry["inference_count"]


def shape_of(value):
    """The document's shape: keys and value types, lists by their first element."""
    if isinstance(value, dict):
        return {key: shape_of(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape_of(item) for item in value[:1]]
    return type(value).__name__


# -- the real server, both protocols ----------------------------------------------------------


def test_control_calls_have_the_same_shape_over_both_protocols(triton):
    async def fetch(protocol):
        async with open_transport(protocol, url_of(triton, protocol), {}) as transport:
            return {
                "server": await transport.server_metadata(),
                "metadata": await transport.model_metadata("ident"),
                "metadata_v": await transport.model_metadata("ident", "1"),
                "config": await transport.model_config("ident"),
                "config_bytes": await transport.model_config("echo_bytes"),
                "stats": await transport.model_statistics("ident"),
                "all_stats": await transport.model_statistics(),
            }

    http, grpc_ = run(fetch("http")), run(fetch("grpc"))
    for key in http:
        assert shape_of(http[key]) == shape_of(grpc_[key]), key
    for key in ("server", "metadata", "metadata_v", "config", "config_bytes"):
        assert http[key] == grpc_[key], key
    assert http["metadata"]["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16]}]
    assert http["config"]["name"] == "ident" and http["config"]["input"][0]["dims"] == [1, 16]
    assert http["config_bytes"]["max_batch_size"] == 4
    entry = grpc_["stats"]["model_stats"][0]
    assert isinstance(entry["inference_count"], int) and isinstance(entry["execution_count"], int)
    assert isinstance(entry["inference_stats"]["success"]["count"], int)
    assert isinstance(entry["inference_stats"]["queue"]["ns"], int)
    assert {e["name"] for e in grpc_["all_stats"]["model_stats"]} == {"ident", "echo_bytes"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inference_succeeds_and_is_counted(triton, protocol):
    async def go():
        async with open_transport(protocol, url_of(triton, protocol), {}) as transport:
            before = success_count(await transport.model_statistics("ident"), "ident")
            prepared = transport.prepare("ident", "", [FP32_INPUT], ["OUTPUT0"])
            outcomes = [await transport.infer(prepared) for _ in range(3)]
            outcomes += await asyncio.gather(*(transport.infer(prepared) for _ in range(4)))
            text = transport.prepare("echo_bytes", "1", [BYTES_INPUT], ["OUTPUT0"])
            outcomes.append(await transport.infer(text))
            after = success_count(await transport.model_statistics("ident"), "ident")
            return outcomes, before, after

    outcomes, before, after = run(go())
    assert all(isinstance(o, InferOutcome) and o.error is None for o in outcomes), outcomes
    assert all(o.send_ns >= 0 and o.recv_ns > 0 for o in outcomes)
    assert after[0] - before[0] == 7 and after[1] - before[1] == 7


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failed_requests_are_outcomes_not_exceptions(triton, protocol):
    async def go():
        async with open_transport(protocol, url_of(triton, protocol), {}) as transport:
            unknown = await transport.infer(transport.prepare("no_such_model", "", [FP32_INPUT], []))
            wrong_input = InputTensor("NOPE", "FP32", (1, 16), FP32_INPUT.data)
            bad = await transport.infer(transport.prepare("ident", "", [wrong_input], []))
            good = await transport.infer(transport.prepare("ident", "", [FP32_INPUT], ["OUTPUT0"]))
            return unknown, bad, good

    unknown, bad, good = run(go())
    prefix = "HTTP 4" if protocol == "http" else "gRPC "
    assert str(unknown.error).startswith(prefix) and "no_such_model" in unknown.error.message
    assert str(bad.error).startswith(prefix) and "NOPE" in bad.error.message
    assert "\n" not in str(unknown.error) + str(bad.error)
    kind = FailureKind.HTTP_STATUS if protocol == "http" else FailureKind.GRPC_STATUS
    assert unknown.error.kind is bad.error.kind is kind
    assert good.error is None  # the connection is still usable after errors


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_control_call_failures_are_one_line_typed_errors(triton, protocol):
    async def go():
        async with open_transport(protocol, url_of(triton, protocol), {}) as transport:
            for call in (transport.model_metadata, transport.model_config, transport.model_statistics):
                with pytest.raises(UsageError, match=r"model 'foo' is not on the server at .*: check -m"):
                    await call("foo")
            with pytest.raises(UsageError, match="version 9"):
                await transport.model_config("ident", "9")
        async with open_transport(protocol, f"127.0.0.1:{free_port()}", {}) as transport:
            with pytest.raises(ServerError) as info:
                await transport.server_metadata()
            assert "\n" not in str(info.value)
            outcome = await transport.infer(transport.prepare("ident", "", [FP32_INPUT], []))
            assert outcome.error.kind is FailureKind.CONNECTION and str(outcome.error).startswith("connection error")
            assert outcome.error.code == (None if protocol == "http" else "UNAVAILABLE")

    run(go())


def test_server_dying_mid_run_gives_error_outcomes(tmp_path):
    server = EmbeddedServer(ECHO_REPOSITORY, tmp_path / "server.log")
    endpoints = server.start()
    try:

        async def go():
            transports = [HttpTransport(endpoints.http, {}), GrpcTransport(endpoints.grpc, {})]
            outcomes: dict[int, list[InferOutcome]] = {0: [], 1: []}
            killed = asyncio.Event()

            async def loop(index, transport):
                prepared = transport.prepare("ident", "", [FP32_INPUT], ["OUTPUT0"])
                deadline = None
                while deadline is None or time.monotonic() < deadline:
                    outcomes[index].append(await transport.infer(prepared))
                    if killed.is_set() and deadline is None:
                        deadline = time.monotonic() + 1.0
                    if outcomes[index][-1].error:
                        await asyncio.sleep(0.01)

            async def kill():
                await asyncio.sleep(0.7)
                os.killpg(server.pid, signal.SIGKILL)  # a crash, not a clean shutdown
                killed.set()

            tasks = [loop(i, t) for i, t in enumerate(transports) for _ in range(2)]
            await asyncio.gather(kill(), *tasks)
            for transport in transports:
                await transport.close()
            return outcomes

        outcomes = run(go())
    finally:
        server.stop()
    for index in (0, 1):
        assert any(o.error is None for o in outcomes[index])
        assert outcomes[index][-1].error is not None and outcomes[index][-1].error.kind is FailureKind.CONNECTION


# -- headers reach the server -----------------------------------------------------------------

OK_BODY = b'{"model_name":"m","outputs":[]}'


class LoopbackServer:
    """A TCP server on 127.0.0.1 for the life of an `async with`; subclasses write `_handle`."""

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


class RecordingHttpServer(LoopbackServer):
    """A 127.0.0.1 HTTP server that records each raw request and answers as `behaviour` says."""

    def __init__(self, behaviour=None):
        self.requests: list[bytes] = []
        self.connections = 0
        self.behaviour = behaviour or (lambda server, n, writer: ok_response())

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.behaviour(self, len(self.requests), writer)
                if reply is None:  # close without answering
                    break
                for piece in reply if isinstance(reply, list) else [reply]:
                    writer.write(piece)
                    await writer.drain()
                    if isinstance(reply, list):
                        await asyncio.sleep(0.005)  # so the client reads it in many pieces
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok_response(body: bytes = OK_BODY, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n%s\r\n" % (len(body), len(body), extra) + body
    )


def error_response(status: int, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return b"HTTP/1.1 %d Bad\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body


def test_http_headers_reach_the_server_on_infer_and_control_calls():
    async def go():
        async with RecordingHttpServer(
            lambda s, n, w: ok_response(b'{"name":"triton"}') if b"GET" in s.requests[-1][:4] else ok_response()
        ) as server:
            async with HttpTransport(server.url, {"Authorization": "Bearer abc", "X-Trace": "7"}) as transport:
                assert (await transport.server_metadata()) == {"name": "triton"}
                prepared = transport.prepare("my model", "2", [FP32_INPUT, BYTES_INPUT], ["OUTPUT0"])
                outcome = await transport.infer(prepared)
            return server.requests, outcome

    requests, outcome = run(go())
    assert outcome.error is None
    for request in requests:
        assert b"\r\nAuthorization: Bearer abc\r\n" in request and b"\r\nX-Trace: 7\r\n" in request
    infer = requests[-1]
    head, _, body = infer.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v2/models/my%20model/versions/2/infer HTTP/1.1\r\n")
    json_length = int(head.split(b"Inference-Header-Content-Length: ")[1].split(b"\r\n")[0])
    header = json.loads(body[:json_length])
    assert body[json_length:] == FP32_INPUT.data + BYTES_INPUT.data
    assert [i["parameters"]["binary_data_size"] for i in header["inputs"]] == [64, 9]
    assert header["outputs"] == [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]
    assert header["inputs"][1] == {"name": "INPUT0", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}


class RecordingGrpcHandler(grpc.GenericRpcHandler):
    """Answers every gRPC method of Triton's service, recording the metadata it was called with."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def service(self, handler_call_details):
        method = handler_call_details.method
        self.calls.append((method, dict(handler_call_details.invocation_metadata)))
        if method.endswith("/ModelInfer"):
            reply = service_pb2.ModelInferResponse(model_name="m").SerializeToString()
        elif method.endswith("/ServerMetadata"):
            reply = service_pb2.ServerMetadataResponse(name="triton", version="0").SerializeToString()
        else:
            return None

        async def unary(request, context):
            return reply

        return grpc.unary_unary_rpc_method_handler(unary)


def test_grpc_headers_reach_the_server_as_lowercase_metadata():
    async def go():
        handler = RecordingGrpcHandler()
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with GrpcTransport(f"127.0.0.1:{port}", {"Authorization": "Bearer abc", "X-Trace": "7"}) as transport:
                assert (await transport.server_metadata())["name"] == "triton"
                outcome = await transport.infer(transport.prepare("m", "", [FP32_INPUT], []))
        finally:
            await server.stop(None)
        return handler.calls, outcome

    calls, outcome = run(go())
    assert outcome.error is None
    assert [method.rsplit("/", 1)[1] for method, _ in calls] == ["ServerMetadata", "ModelInfer"]
    for _, metadata in calls:
        assert metadata["authorization"] == "Bearer abc" and metadata["x-trace"] == "7"


# -- the lean gRPC (HTTP/2) client: against grpc's own server, and a scripted HTTP/2 peer -----


class SizedGrpcHandler(grpc.GenericRpcHandler):
    """ModelInfer answers with a response carrying `reply_size` bytes of output and records
    request sizes; model "slow" sleeps first, model "bad" aborts with a two-line message."""

    def __init__(self, reply_size=0):
        self.sizes: list[int] = []
        self.in_flight = 0
        self.peak = 0
        self.cancelled = 0
        self.reply = service_pb2.ModelInferResponse(model_name="m", raw_output_contents=[bytes(reply_size)]).SerializeToString()

    def service(self, handler_call_details):
        if not handler_call_details.method.endswith("/ModelInfer"):
            return None

        async def unary(request, context):
            parsed = service_pb2.ModelInferRequest.FromString(request)
            self.sizes.append(len(request))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                if parsed.model_name == "bad":
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first line\nsecond line: ünïcode 100%")
                await asyncio.sleep(0.5 if parsed.model_name == "slow" else 0.01)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.in_flight -= 1
            return self.reply

        return grpc.unary_unary_rpc_method_handler(unary)


async def grpc_server(handler, options=()):
    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def test_grpc_large_messages_both_ways_and_the_server_stream_limit():
    big = InputTensor("INPUT0", "FP32", (1, 3 << 18), bytes(3 << 20))  # past every default window

    async def go():
        handler = SizedGrpcHandler(reply_size=3 << 20)
        server, url = await grpc_server(handler, [("grpc.max_concurrent_streams", 2)])
        try:
            async with GrpcTransport(url, {}) as transport:
                large = transport.prepare("m", "", [big], [])
                small = transport.prepare("m", "", [FP32_INPUT], [])
                outcomes = await asyncio.gather(*(transport.infer(large if i % 3 == 0 else small) for i in range(9)))
                outcomes.append(await transport.infer(large))
        finally:
            await server.stop(None)
        return outcomes, handler

    outcomes, handler = run(go())
    assert [o.error for o in outcomes] == [None] * 10
    assert sorted(handler.sizes)[-1] > 3 << 20 and len(handler.sizes) == 10
    assert handler.peak <= 2  # the client queued what the server's MAX_CONCURRENT_STREAMS didn't allow
    assert all(o.recv_ns > 0 for o in outcomes)


def test_grpc_error_status_and_cancelled_infer_leave_the_connection_usable():
    async def go():
        handler = SizedGrpcHandler()
        server, url = await grpc_server(handler)
        try:
            async with GrpcTransport(url, {}) as transport:
                bad = await transport.infer(transport.prepare("bad", "", [FP32_INPUT], []))
                slow = asyncio.ensure_future(transport.infer(transport.prepare("slow", "", [FP32_INPUT], [])))
                await asyncio.sleep(0.2)
                slow.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await slow
                good = await asyncio.gather(*(transport.infer(transport.prepare("m", "", [FP32_INPUT], [])) for _ in range(3)))
                conn = transport._conn
                await asyncio.sleep(0.1)
            closed_after = conn.transport.is_closing()
        finally:
            await server.stop(None)
        return bad, good, handler, closed_after

    bad, good, handler, closed_after = run(go())
    assert str(bad.error) == "gRPC INVALID_ARGUMENT: first line second line: ünïcode 100%"
    assert [o.error for o in good] == [None] * 3
    assert handler.cancelled == 1  # the server saw the stream reset
    assert closed_after  # close() closes the connection


def test_grpc_url_must_be_host_and_port():
    with pytest.raises(UsageError, match="host:port"):
        GrpcTransport("unix:/tmp/triton.sock", {})


class ScriptedH2Server(LoopbackServer):
    """A 127.0.0.1 HTTP/2 peer that answers every request with `respond(stream_id, request)`'s
    frames, after its own SETTINGS (MAX_FRAME_SIZE 16384, INITIAL_WINDOW_SIZE `window`), and
    writes everything in small pieces. It tops up the client's windows as request data arrives,
    sends a PING first and records the client's PING ACKs and RST_STREAMs."""

    def __init__(self, respond, window=1000):
        self.respond = respond
        self.window = window
        self.encoder = self.decoder = None  # hpack's: Huffman strings, dynamic table
        self.connections: list[dict[int, dict]] = []  # per connection, the requests by stream id
        self.ping_acks: list[bytes] = []
        self.resets: list[tuple[int, int]] = []

    @staticmethod
    def frame(ftype, flags, sid, payload=b""):
        return struct.pack(">IBI", len(payload) << 8 | ftype, flags, sid) + payload

    def headers(self, sid, pairs, end_stream=False):
        """HEADERS (padded, with priority) + CONTINUATION: the block split in two."""
        block = self.encoder.encode(pairs)
        first, rest = block[: len(block) // 2], block[len(block) // 2 :]
        payload = b"\x03" + struct.pack(">IB", 0, 15) + first + b"\x00\x00\x00"
        flags = 0x8 | 0x20 | (0x1 if end_stream else 0)
        return self.frame(1, flags, sid, payload) + self.frame(9, 0x4, sid, rest)

    def message(self, sid, body, end_stream=False):
        """A gRPC message in two DATA frames, the first one padded."""
        data = b"\x00" + struct.pack(">I", len(body)) + body
        half = len(data) // 2
        return self.frame(0, 0x8, sid, b"\x02" + data[:half] + b"\x00\x00") + self.frame(0, 0x1 if end_stream else 0, sid, data[half:])

    async def _handle(self, reader, writer):
        async def send(data):
            for i in range(0, len(data), 7):
                writer.write(data[i : i + 7])
                await writer.drain()

        import hpack

        requests: dict[int, dict] = {}
        self.connections.append(requests)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()  # one HPACK context per connection (in turn)
        try:
            assert await reader.readexactly(24) == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            settings = struct.pack(">HI", 4, self.window) + struct.pack(">HI", 5, 16384)
            await send(self.frame(4, 0, 0, settings) + self.frame(6, 0, 0, b"pingpong"))
            while True:
                head = await reader.readexactly(9)
                length_type, flags, sid = struct.unpack(">IBI", head)
                payload = await reader.readexactly(length_type >> 8)
                ftype = length_type & 0xFF
                if ftype == 4 and not flags & 1:
                    await send(self.frame(4, 1, 0))
                elif ftype == 6 and flags & 1:
                    self.ping_acks.append(payload)
                elif ftype == 3:
                    self.resets.append((sid, struct.unpack(">I", payload)[0]))
                elif ftype in (1, 9):
                    entry = requests.setdefault(sid, {"headers": [], "data": b""})
                    entry["block"] = entry.get("block", b"") + payload
                    if flags & 0x4:
                        entry["headers"] = dict(self.decoder.decode(entry.pop("block")))
                elif ftype == 0:
                    entry = requests[sid]
                    entry["data"] += payload
                    await send(self.frame(8, 0, 0, struct.pack(">I", len(payload))) + self.frame(8, 0, sid, struct.pack(">I", len(payload))))
                    if flags & 1:
                        await send(self.respond(self, sid, entry))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_grpc_client_speaks_http2_with_a_strict_peer():
    """Huffman-coded and table-indexed headers, CONTINUATION, padding, small windows and frames,
    PING, responses in 7-byte pieces; then an error status, a reset stream and a GOAWAY."""
    reply = service_pb2.ModelInferResponse(model_name="m", id="x").SerializeToString()
    big = InputTensor("INPUT0", "FP32", (1, 10000), bytes(40000))  # > the 1000-byte window, > a frame

    def respond(server, sid, request):
        model = service_pb2.ModelInferRequest.FromString(request["data"][5:]).model_name
        ok = [(":status", "200"), ("content-type", "application/grpc")]
        if model == "reset":
            return server.frame(3, 0, sid, struct.pack(">I", 7))  # REFUSED_STREAM
        if model == "error":
            return server.headers(sid, ok + [("grpc-status", "5"), ("grpc-message", "no model %27x%27%0Ahere")], end_stream=True)
        if model == "http503":
            return server.headers(sid, [(":status", "503"), ("content-type", "text/plain")], end_stream=True)
        if model == "goaway":
            return server.frame(7, 0, 0, struct.pack(">II", max(sid - 2, 0), 0) + b"bye")
        return server.headers(sid, ok) + server.message(sid, reply) + server.headers(sid, [("grpc-status", "0")], end_stream=True)

    async def go():
        async with ScriptedH2Server(respond) as server:
            async with GrpcTransport(server.url, {"Authorization": "Bearer abc"}) as transport:
                ok = await asyncio.gather(*(transport.infer(transport.prepare("m", "", [big if i % 2 else FP32_INPUT], [])) for i in range(4)))
                again = await transport.infer(transport.prepare("m", "", [FP32_INPUT], []))  # the same header blocks: cached
                errors = [await transport.infer(transport.prepare(m, "", [FP32_INPUT], [])) for m in ("error", "http503", "reset")]
                first_conn = transport._conn
                goaway = await transport.infer(transport.prepare("goaway", "", [FP32_INPUT], []))
                after = await transport.infer(transport.prepare("m", "", [FP32_INPUT], []))
                assert transport._conn is not first_conn  # a new connection after GOAWAY
            return ok + [again], errors, goaway, after, server

    ok, errors, goaway, after, server = run(go())
    assert [o.error for o in ok] == [None] * 5 and all(o.recv_ns > 0 for o in ok)
    assert [str(o.error) for o in errors] == [
        "gRPC NOT_FOUND: no model 'x' here",
        "gRPC UNAVAILABLE: the server answered HTTP 503",
        "gRPC UNAVAILABLE: the server reset the stream (REFUSED_STREAM)",
    ]
    assert goaway.error.kind is FailureKind.CONNECTION and goaway.error.code == "UNAVAILABLE"
    assert str(goaway.error).startswith("connection error: the server closed the connection (GOAWAY NO_ERROR: bye)")
    assert after.error is None
    assert server.ping_acks and server.ping_acks[0] == b"pingpong"
    assert len(server.connections) == 3  # "goaway" is retried once on a fresh connection (refused again), then "m" on a third
    first = server.connections[0][1]["headers"]
    assert first[":method"] == "POST" and first[":path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert first["content-type"] == "application/grpc" and first["te"] == "trailers" and first["authorization"] == "Bearer abc"
    sizes = sorted(len(r["data"]) for r in server.connections[0].values())
    assert sizes[-1] > 40000  # the large request arrived whole through the 1000-byte windows


# -- the lean HTTP client against misbehaving peers -------------------------------------------


def serve_and_infer(behaviour, count=1, concurrency=1, headers=None):
    async def go():
        async with RecordingHttpServer(behaviour) as server:
            async with HttpTransport(server.url, headers or {}) as transport:
                prepared = transport.prepare("m", "", [FP32_INPUT], [])

                async def worker(n):
                    return [await transport.infer(prepared) for _ in range(n)]

                results = await asyncio.gather(*(worker(count) for _ in range(concurrency)))
                pooled = len(transport._all)
            return [o for r in results for o in r], server, pooled

    return run(go())


def test_http_closed_loop_keeps_one_connection_per_concurrent_request():
    outcomes, server, pooled = serve_and_infer(None, count=20, concurrency=3)
    assert all(o.error is None for o in outcomes) and len(outcomes) == 60
    assert server.connections == 3 and pooled == 3


def test_http_response_split_into_many_pieces_and_chunked():
    body = OK_BODY
    split = ok_response()
    pieces = [split[i : i + 3] for i in range(0, len(split), 3)]
    outcomes, _, _ = serve_and_infer(lambda s, n, w: pieces, count=2)
    assert [o.error for o in outcomes] == [None, None]
    assert all(o.recv_ns > 0 for o in outcomes)

    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (10, body[:10])
        + b"%x;ext=1\r\n%s\r\n" % (len(body) - 10, body[10:])
        + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    outcomes, _, _ = serve_and_infer(lambda s, n, w: [chunked[:7], chunked[7:40], chunked[40:]], count=3)
    assert [o.error for o in outcomes] == [None] * 3
    error = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n{\"error\":\"nope!\"}\r\n0\r\n\r\n"
    outcomes, _, _ = serve_and_infer(lambda s, n, w: error)
    assert str(outcomes[0].error) == "HTTP 400: nope!" and outcomes[0].error.code == 400


def test_http_error_status_and_connection_close():
    outcomes, server, _ = serve_and_infer(
        lambda s, n, w: error_response(500, "model failed\nbadly") if n % 2 else ok_response(extra=b"Connection: close\r\n"),
        count=4,
    )
    assert [o.error and str(o.error) for o in outcomes] == ["HTTP 500: model failed badly", None] * 2
    assert server.connections == 2  # a new one after each "Connection: close"


def test_http_idle_connection_closed_by_the_server_is_retried_once():
    # The 2nd request arrives on a kept-alive connection that the server drops without a byte:
    # the client retries it on a fresh connection and the caller sees a success.
    outcomes, server, _ = serve_and_infer(lambda s, n, w: None if n == 2 else ok_response(), count=3)
    assert [o.error for o in outcomes] == [None, None, None]
    assert len(server.requests) == 4 and server.connections == 2


def test_http_connection_broken_mid_response_is_an_error_without_retry():
    partial = ok_response()[:30]

    def behaviour(server, n, writer):
        if n == 2:
            writer.write(partial)
            return None
        return ok_response()

    outcomes, server, _ = serve_and_infer(behaviour, count=3)
    assert outcomes[0].error is None and outcomes[2].error is None
    assert outcomes[1].error.kind is FailureKind.CONNECTION
    assert len(server.requests) == 3


def test_http_garbage_response_is_an_error():
    outcomes, _, _ = serve_and_infer(lambda s, n, w: b"SSH-2.0-OpenSSH\r\n\r\n" if n == 1 else ok_response(), count=2)
    assert outcomes[0].error.kind is FailureKind.PROTOCOL and "bad response" in outcomes[0].error.message
    assert outcomes[1].error is None


def test_http_bad_header_is_a_usage_error():
    with pytest.raises(UsageError):
        HttpTransport("127.0.0.1:1", {"X-Bad": "a\r\nInjected: 1"})
    with pytest.raises(UsageError):
        HttpTransport("no-port", {})


def test_http_large_request_is_timed_until_its_last_byte_left():
    big = InputTensor("INPUT0", "FP32", (1, 2 << 20), bytes(8 << 20))

    async def go():
        async with RecordingHttpServer() as server:
            async with HttpTransport(server.url, {}) as transport:
                small = await transport.infer(transport.prepare("m", "", [FP32_INPUT], []))
                large = await transport.infer(transport.prepare("m", "", [big], []))
                again = await transport.infer(transport.prepare("m", "", [FP32_INPUT], []))
            return small, large, again, server

    small, large, again, server = run(go())
    assert small.error is None and large.error is None and again.error is None
    assert len(server.requests[1]) > 8 << 20
    assert large.send_ns > small.send_ns  # waited for the write buffer to drain


@pytest.mark.parametrize("url,expected", [
    ("localhost:8000", ("localhost", 8000)),
    ("http://127.0.0.1:8000/", ("127.0.0.1", 8000)),
    ("[::1]:8001", ("::1", 8001)),
])
def test_urls_both_transports_accept(url, expected):
    assert split_host_port(url, 8000) == expected


@pytest.mark.parametrize("url", ["localhost", "localhost:http", ":8000", "::1:8000", "host/path:8000", "unix:/tmp/t.sock"])
def test_urls_both_transports_reject(url):
    for transport in (HttpTransport, GrpcTransport):
        with pytest.raises(UsageError, match="host:port"):
            transport(url, {})


# -- request deadlines and connect timeouts ----------------------------------------------------


@pytest.mark.parametrize(("ms", "value"), [(60_000, b"60000000u"), (100, b"100000u"), (0.5, b"500000n"),
                                           (100.5, b"100500u"), (10**9, b"1000000S"), (10**13, b"2777778H")])  # fmt: skip
def test_grpc_timeout_is_the_finest_unit_within_eight_digits(ms, value):
    from loadgen.transport.grpc import grpc_timeout

    assert grpc_timeout(ms) == value


def test_the_deadline_travels_in_every_grpc_request_header_block():
    from hpack import Decoder

    from loadgen.transport.grpc import _request_header_block

    def headers(**kwargs):
        return dict(Decoder().decode(_request_header_block("h:1", "/p", (), False, **kwargs)))

    assert headers(timeout_ms=60_000)["grpc-timeout"] == "60000000u"
    assert "grpc-timeout" not in headers() and "grpc-timeout" not in headers(timeout_ms=0)


def test_the_server_ends_a_grpc_call_at_the_deadline_sent(faults_triton):
    """No client-side timer here: only Triton's gRPC server, told by grpc-timeout, can end the call."""

    async def until_it_hangs():
        async with GrpcTransport(faults_triton.grpc, {}, request_timeout_ms=500) as transport:
            prepared = transport.prepare("stops-answering", "", [InputTensor("IN", "FP32", (1,), struct.pack("<f", 1.0))], ["OUT"])
            for _ in range(200):  # each of its instances answers 39, then hangs
                started = time.monotonic()
                outcome = await asyncio.wait_for(transport.infer(prepared), 30)
                if outcome.error is not None:
                    return outcome, time.monotonic() - started
            raise AssertionError("the model kept answering")

    outcome, took_s = run(until_it_hangs())
    assert outcome.error == timeout(500)
    assert 0.45 < took_s < 5


def test_connecting_gives_up_at_the_connect_timeout():
    """A listener whose backlog is full never completes a handshake: the connect must not wait for ever."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (and the SYN queue behind it) so the next SYN goes unanswered
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)

        async def infer(protocol):
            transport = open_transport(protocol, f"127.0.0.1:{port}", {}, connect_timeout_s=0.5)
            async with transport:
                prepared = transport.prepare("m", "", [FP32_INPUT], [])
                started = time.monotonic()
                outcome = await asyncio.wait_for(transport.infer(prepared), 10)
                return outcome, time.monotonic() - started

        for protocol in PROTOCOLS:
            outcome, took_s = run(infer(protocol))
            assert outcome.error is not None and "within 0.5 s" in outcome.error.message, outcome.error
            assert took_s < 3
    finally:
        for sock in fillers:
            sock.close()
        listener.close()
