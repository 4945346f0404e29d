"""Interim (1xx) responses and HTTP/1.1 protocol errors through the real HTTP transport.

End to end: `loadgen run` through a proxy that adds `100 Continue` and `103 Early Hints` before
every response of the real Triton; Triton's own `100 Continue` (it answers `Expect:
100-continue` with one). Against scripted local servers: each protocol rule the parser enforces
reaches the request's outcome as a `protocol` error, and the connection after it is a fresh one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

from test_transport import FP32_INPUT, LoopbackServer, ok_response, serve_and_infer

from loadgen.cli import main
from loadgen.outcome import FailureKind
from loadgen.transport.base import split_host_port
from loadgen.transport.http import HttpTransport

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </model.css>; rel=preload; as=style\r\n\r\n"


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class InterimProxy:
    """A TCP proxy in front of Triton, on its own thread and event loop (loadgen runs its own):
    `100 Continue` as soon as a request has arrived, `103 Early Hints` just before each response
    it relays, the two written with the response's first bytes in varying splits."""

    def __init__(self, upstream: str) -> None:
        self.upstream = split_host_port(upstream, 8000)
        self.relayed = 0
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def __enter__(self) -> InterimProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request = head + await reader.readexactly(content_length(head))
                writer.write(CONTINUE)
                up_writer.write(request)
                response = await up_reader.readuntil(b"\r\n\r\n")
                response += await up_reader.readexactly(content_length(response))
                cut = self.relayed % 40  # the hints and the response's head cut at varying places
                writer.write(EARLY_HINTS + response[:cut])
                await writer.drain()
                writer.write(response[cut:])
                await writer.drain()
                self.relayed += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            up_writer.close()


def test_a_run_through_a_proxy_that_adds_interim_responses(triton, tmp_path, capsys):
    with InterimProxy(triton.http) as proxy:
        code = main(["run", "-u", proxy.url, "-m", "centernet-ensemble", "--concurrency-range", "2",
                     "-p", "1000", "-r", "5", "-s", "50", "--report-dir", str(tmp_path)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    (level,) = json.loads((tmp_path / "summary.json").read_text())["levels"]
    assert level["error_rate"] == 0 and level["client"]["request_count"] > 0
    assert not level["count_check"]["mismatch"], level["count_check"]  # the server counted what the client did
    assert proxy.relayed > level["client"]["request_count"]  # every request, control calls included, went through it


def test_triton_s_own_100_continue_is_skipped(triton):
    host, port = split_host_port(triton.http, 8000)
    with socket.create_connection((host, port), timeout=10) as raw:  # the premise: Triton does send one
        raw.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
        assert raw.recv(len(CONTINUE)) == CONTINUE

    async def go():
        async with HttpTransport(triton.http, {"Expect": "100-continue"}) as transport:
            return [await transport.server_metadata(), await transport.model_config("centernet-ensemble")]

    metadata, config = asyncio.run(go())
    assert metadata["name"] == "triton" and config["name"] == "centernet-ensemble"


# -- scripted servers: protocol errors reach the outcome --------------------------------------


def test_interim_responses_from_a_scripted_server():
    pieces = [CONTINUE + EARLY_HINTS[:20], EARLY_HINTS[20:] + b"HTTP/1.1 102 Processing\r\n\r\n", ok_response()]
    outcomes, server, _ = serve_and_infer(lambda s, n, w: pieces, count=3)
    assert [o.error for o in outcomes] == [None] * 3 and server.connections == 1


def test_each_protocol_error_is_a_protocol_outcome_and_the_next_request_reconnects():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    cases = {
        "chunk data longer than its size": chunked + b"2\r\nabc\r\n0\r\n\r\n",
        "0x chunk size": chunked + b"0x3\r\nabc\r\n0\r\n\r\n",
        "signed chunk size": chunked + b"+3\r\nabc\r\n0\r\n\r\n",
        "conflicting Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "Content-Length list": b"HTTP/1.1 200 OK\r\nContent-Length: 3, 2\r\n\r\nabc",
        "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
        "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        "more than Content-Length": ok_response() + b"trailing",
    }
    for name, bad in cases.items():
        outcomes, server, _ = serve_and_infer(lambda s, n, w: bad if n == 2 else ok_response(), count=3)
        assert outcomes[0].error is None and outcomes[2].error is None, name
        error = outcomes[1].error
        assert error.kind is FailureKind.PROTOCOL and error.message.startswith("bad response: "), (name, error)
        assert len(server.requests) == 3 and server.connections == 2, name  # not retried; a new connection after


def test_an_interim_response_then_a_close_is_not_retried():
    # The server saw the request (it answered 100 Continue): sending it again would count it twice.
    def behaviour(server, n, writer):
        if n == 2:
            writer.write(CONTINUE)
            return None
        return ok_response()

    outcomes, server, _ = serve_and_infer(behaviour, count=3)
    assert outcomes[1].error.kind is FailureKind.CONNECTION
    assert [o.error for o in (outcomes[0], outcomes[2])] == [None, None] and len(server.requests) == 3


class SlowAfterContinue(LoopbackServer):
    """Answers `100 Continue` at once and the response `delay_s` later."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def _handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            writer.write(CONTINUE)
            await writer.drain()
            await asyncio.sleep(self.delay_s)
            writer.write(ok_response())
            await writer.drain()
            await reader.read()  # until the client closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_receive_time_starts_at_the_final_response_not_the_interim_one():
    delay_s = 0.3

    async def go():
        async with SlowAfterContinue(delay_s) as server:
            async with HttpTransport(server.url, {}) as transport:
                start = time.perf_counter()
                outcome = await transport.infer(transport.prepare("m", "", [FP32_INPUT], []))
                return outcome, time.perf_counter() - start

    outcome, elapsed_s = asyncio.run(go())
    assert outcome.error is None and elapsed_s >= delay_s
    assert outcome.recv_ns < delay_s / 2 * 1e9  # the wait after 100 Continue is the server's, not receiving

