"""The gRPC transport against HTTP/2 peers that refuse streams, go away under in-flight streams,
send interim (1xx) responses or trailers over our header-list limit: a scripted peer on
127.0.0.1, and the real embedded Triton behind a proxy that adds an interim response to every
response stream."""

from __future__ import annotations

import asyncio
import struct
import time

import hpack
from test_h2 import OK_HEADERS, Peer, frame
from tritonclient.grpc import service_pb2

from loadgen.outcome import FailureKind
from loadgen.protocol.h2 import MAX_HEADER_LIST_SIZE, REFUSED_STREAM
from loadgen.transport.base import InputTensor
from loadgen.transport.grpc import GrpcTransport

INPUT = InputTensor("INPUT0", "FP32", (1, 4), struct.pack("<4f", 1, 2, 3, 4))
REPLY = service_pb2.ModelInferResponse(model_name="m").SerializeToString()


class PeerConnection(Peer):
    """One connection of an H2Peer: its requests by stream id, and the frames it writes."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.writer = writer
        self.requests: dict[int, dict] = {}
        self.client_frames: list[tuple[int, int, int]] = []  # (type, flags, stream id) of what the client sent

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def ok(self, sid: int) -> None:
        self.send(self.response(sid, REPLY))


class LoopbackServer:
    """A 127.0.0.1 server for the life of an `async with`; its connection tasks are cancelled at the end."""

    tasks: set[asyncio.Task]

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self.tasks:
            task.cancel()
        self.server.close()
        await self.server.wait_closed()


class H2Peer(LoopbackServer):
    """A 127.0.0.1 HTTP/2 server for the life of an `async with`. After its SETTINGS it hands
    every complete request to `await answer(peer, conn, sid, model)` in a task of its own, which
    writes frames (so it may wait, or answer other streams); it tops up the client's windows."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections: list[PeerConnection] = []
        self.tasks: set[asyncio.Task] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = PeerConnection(writer)
        self.connections.append(conn)
        decoder = hpack.Decoder()
        try:
            assert await reader.readexactly(24) == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            conn.send(frame(4, 0, 0, struct.pack(">HI", 4, 1000)))
            while True:
                length_type, flags, sid = struct.unpack(">IBI", await reader.readexactly(9))
                payload = await reader.readexactly(length_type >> 8)
                ftype = length_type & 0xFF
                conn.client_frames.append((ftype, flags, sid))
                if ftype == 4 and not flags & 1:
                    conn.send(frame(4, 1, 0))
                elif ftype in (1, 9):
                    entry = conn.requests.setdefault(sid, {"block": b"", "data": b""})
                    entry["block"] += payload
                    if flags & 0x4:
                        entry["headers"] = dict(decoder.decode(entry["block"]))
                elif ftype == 0:
                    entry = conn.requests[sid]
                    entry["data"] += payload
                    if payload:
                        conn.send(frame(8, 0, 0, struct.pack(">I", len(payload))) + frame(8, 0, sid, struct.pack(">I", len(payload))))
                    if flags & 1:
                        model = service_pb2.ModelInferRequest.FromString(entry["data"][5:]).model_name
                        task = asyncio.ensure_future(self.answer(self, conn, sid, model))
                        self.tasks.add(task)
                        task.add_done_callback(self.tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def requests(self) -> int:
        return sum(len(c.requests) for c in self.connections)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_a_refused_stream_is_retried_once_and_keeps_the_time_of_its_first_send():
    refusals = {"refuse-once": 1, "refuse-always": 2}

    async def answer(peer, conn, sid, model):
        if refusals.get(model, 0) > 0:
            refusals[model] -= 1
            await asyncio.sleep(0.3)  # the refusal takes a while: the retried request's time must show it
            conn.send(frame(3, 0, sid, struct.pack(">I", REFUSED_STREAM)))
        else:
            conn.ok(sid)

    async def go():
        async with H2Peer(answer) as peer:
            async with GrpcTransport(peer.url, {}) as transport:
                started = time.perf_counter()
                retried = await transport.infer(transport.prepare("refuse-once", "", [INPUT], []))
                took_s = time.perf_counter() - started
                refused = await transport.infer(transport.prepare("refuse-always", "", [INPUT], []))
                after = await transport.infer(transport.prepare("m", "", [INPUT], []))
            return peer, retried, took_s, refused, after

    peer, retried, took_s, refused, after = run(go())
    assert retried.error is None and after.error is None
    assert retried.send_ns >= 0.3e9 and took_s >= 0.3  # from the first send, not the retry's
    assert (refused.error.kind, refused.error.code) == (FailureKind.GRPC_STATUS, "UNAVAILABLE")
    assert refused.error.message == "the server reset the stream (REFUSED_STREAM)"
    # each refused request was sent twice, on the connection it was refused on (which stays good)
    assert len(peer.connections) == 1 and peer.requests == 5


def test_streams_above_a_goaways_last_id_are_retried_on_a_fresh_connection():
    async def answer(peer, conn, sid, model):
        if conn is not peer.connections[0]:
            conn.ok(sid)
        elif sid == 1:
            await peer.second.wait()  # answered after the GOAWAY, which spares it
            conn.ok(sid)
        else:
            conn.send(frame(7, 0, 0, struct.pack(">II", 1, 0) + b"shutting down"))
            peer.second.set()

    async def go():
        async with H2Peer(answer) as peer:
            peer.second = asyncio.Event()  # stream 3 was refused
            async with GrpcTransport(peer.url, {}) as transport:
                prepared = transport.prepare("m", "", [INPUT], [])
                first = asyncio.ensure_future(transport.infer(prepared))
                await asyncio.sleep(0.1)  # stream 1 is in flight before stream 3 starts
                outcomes = [await transport.infer(prepared), await first]
            return peer, outcomes

    peer, outcomes = run(go())
    assert [o.error for o in outcomes] == [None, None]
    assert len(peer.connections) == 2 and sorted(peer.connections[0].requests) == [1, 3]
    assert sorted(peer.connections[1].requests) == [1]  # stream 3, sent again


def test_interim_responses_before_the_response_are_skipped():
    async def answer(peer, conn, sid, model):
        interim = conn.headers(sid, [(":status", "100")]) + conn.headers(sid, [(":status", "103"), ("link", "</style.css>")])
        if model == "missing":  # a trailers-only error response after them
            conn.send(interim + conn.headers(sid, OK_HEADERS + [("grpc-status", "5"), ("grpc-message", "no model")], end_stream=True))
        else:
            conn.send(interim + conn.response(sid, REPLY))

    async def go():
        async with H2Peer(answer) as peer:
            async with GrpcTransport(peer.url, {}) as transport:
                prepared = transport.prepare("m", "", [INPUT], [])
                outcomes = await asyncio.gather(*(transport.infer(prepared) for _ in range(3)))
                missing = await transport.infer(transport.prepare("missing", "", [INPUT], []))
            return outcomes, missing

    outcomes, missing = run(go())
    assert [o.error for o in outcomes] == [None] * 3 and all(o.recv_ns > 0 for o in outcomes)
    assert str(missing.error) == "gRPC NOT_FOUND: no model"


def test_a_trailer_over_the_header_list_limit_fails_that_request_alone():
    async def answer(peer, conn, sid, model):
        if model == "chatty":
            trailers = [("grpc-status", "0"), ("grpc-message", "x" * MAX_HEADER_LIST_SIZE)]
            conn.send(conn.headers(sid, OK_HEADERS) + conn.data(sid, b"\x00" + struct.pack(">I", len(REPLY)) + REPLY))
            conn.send(conn.headers(sid, trailers, end_stream=True, huffman=False))
        else:
            conn.ok(sid)

    async def go():
        async with H2Peer(answer) as peer:
            async with GrpcTransport(peer.url, {}) as transport:
                chatty = await transport.infer(transport.prepare("chatty", "", [INPUT], []))
                after = [await transport.infer(transport.prepare("m", "", [INPUT], [])) for _ in range(3)]
            return peer, chatty, after

    peer, chatty, after = run(go())
    assert (chatty.error.kind, chatty.error.code) == (FailureKind.PROTOCOL, "RESOURCE_EXHAUSTED")
    assert "trailers are over our header-list limit" in chatty.error.message
    # the next requests succeed on the same connection: its HPACK table stayed in step
    assert [o.error for o in after] == [None] * 3
    assert len(peer.connections) == 1 and not any(ftype == 7 for ftype, _, _ in peer.connections[0].client_frames)


# -- the real server, behind a proxy that adds interim responses ----------------------------------

# `:status: 103` as a literal without indexing (RFC 7541 6.2.2; name: static index 8), so the
# server's HPACK table, which the client keeps in step with, is left as it is
INTERIM_BLOCK = b"\x08\x03103"


class InterimProxy(LoopbackServer):
    """Relays TCP between the client and `target`; on the way back, parses the server's HTTP/2
    frames and puts a 103 Early Hints HEADERS frame before the first HEADERS of every stream."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.injected = 0
        self.tasks: set[asyncio.Task] = set()

    async def _handle(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(self.host, self.port)
        for task in (self._upstream(client_reader, server_writer), self._downstream(server_reader, client_writer)):
            task = asyncio.ensure_future(task)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _upstream(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _downstream(self, reader, writer) -> None:
        answered: set[int] = set()
        try:
            while True:
                head = await reader.readexactly(9)
                length_type, _, sid = struct.unpack(">IBI", head)
                payload = await reader.readexactly(length_type >> 8)
                if length_type & 0xFF == 1 and sid not in answered:
                    answered.add(sid)
                    writer.write(frame(1, 0x4, sid, INTERIM_BLOCK))
                    self.injected += 1
                writer.write(head + payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_triton_behind_a_proxy_that_adds_interim_responses(nested_triton):
    def success_count(stats):
        return next(e for e in stats["model_stats"] if e["name"] == "add-one")["inference_stats"]["success"]["count"]

    async def go():
        async with GrpcTransport(nested_triton.grpc, {}) as direct:
            before = success_count(await direct.model_statistics("add-one"))
            async with InterimProxy(nested_triton.grpc) as proxy:
                async with GrpcTransport(proxy.url, {}) as transport:
                    prepared = transport.prepare("add-one", "", [INPUT], ["OUTPUT0"])
                    outcomes = [await transport.infer(prepared) for _ in range(3)]
                    outcomes += await asyncio.gather(*(transport.infer(prepared) for _ in range(5)))
                    unknown = await transport.infer(transport.prepare("no-such-model", "", [INPUT], []))
            after = success_count(await direct.model_statistics("add-one"))
            return outcomes, unknown, proxy.injected, after - before

    outcomes, unknown, injected, counted = run(go())
    assert [o.error for o in outcomes] == [None] * 8 and all(o.recv_ns > 0 for o in outcomes)
    assert unknown.error.kind is FailureKind.GRPC_STATUS and "no-such-model" in unknown.error.message  # a trailers-only answer
    assert injected == 9 and counted == 8
