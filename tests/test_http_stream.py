"""Streaming over HTTP (HttpTransport.prepare_stream and stream: Triton's generate extension,
server-sent events) against the real embedded server on the decoupled test models; the failures a
real server does not give on demand (a connection cut mid-stream, an event that is not JSON, the
first response failing) from a local peer that replays bytes Triton sent; the mapping of inputs
to the extension's JSON, and what it cannot carry, without a server."""

from __future__ import annotations

import asyncio
import json
import statistics
import struct
import time

import pytest

from loadgen.errors import UsageError
from loadgen.outcome import FailureKind
from loadgen.transport.base import InputTensor
from loadgen.transport.http import HttpTransport

IN = InputTensor("IN", "INT32", (3,), struct.pack("<3i", 1, 2, 3))


def run(coroutine):
    return asyncio.run(coroutine)


async def timed_stream(transport: HttpTransport, prepared, number: int | None = None):
    """(the outcome, its responses' times in ms after the request started)."""
    start_ns = time.monotonic_ns()
    outcome = await transport.stream(prepared, number)
    return outcome, [(t - start_ns) / 1e6 for t in outcome.response_ns]


# -- the real server ----------------------------------------------------------------------------


def test_sixteen_responses_forty_ms_then_every_five(decoupled_triton):
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            prepared = transport.prepare_stream("stream16", "", [IN], ["OUT"], "OUT")
            await transport.stream(prepared)  # the model's first request starts its Python threads
            return [await timed_stream(transport, prepared) for _ in range(8)], len(transport._all)

    results, connections = run(go())
    for outcome, times_ms in results:
        assert outcome.error is None
        assert len(times_ms) == 16 and outcome.tokens == (3,) * 16  # OUT has IN's 3 elements
        assert outcome.send_ns > 0 and outcome.recv_ns > 0
    ttft_ms = statistics.median(times[0] for _, times in results)
    gaps_ms = [b - a for _, times in results for a, b in zip(times, times[1:])]
    assert 38 <= ttft_ms <= 80, ttft_ms
    assert 3 <= statistics.median(gaps_ms) <= 10, gaps_ms
    assert connections == 1  # each stream ended cleanly: its connection carried the next


def test_an_error_mid_stream_keeps_the_responses_before_it_and_the_connection(decoupled_triton):
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            failing = await transport.stream(transport.prepare_stream("stream-fail", "", [IN], [], "OUT"))
            after = await transport.stream(transport.prepare_stream("stream16", "", [IN], [], "OUT"))
            return failing, after, len(transport._all)

    failing, after, connections = run(go())
    assert failing.error.kind is FailureKind.HTTP_STATUS
    assert str(failing.error) == "HTTP 400: failed at response 3"
    assert len(failing.response_ns) == 3 and failing.tokens == (3, 3, 3)
    assert after.error is None and len(after.response_ns) == 16 and connections == 1


def test_an_empty_final_response_is_not_a_response(decoupled_triton):
    # stream-echo sends 4 responses, then the final flag alone: Triton sends no event for it.
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            one = InputTensor("IN", "INT32", (1,), struct.pack("<i", 7))
            return await transport.stream(transport.prepare_stream("stream-echo", "", [one], [], "OUT"))

    outcome = run(go())
    assert outcome.error is None and len(outcome.response_ns) == 4 and outcome.tokens == (1,) * 4


def test_concurrent_streams_each_on_its_own_connection(decoupled_triton):
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            prepared = transport.prepare_stream("stream16", "", [IN], [], "OUT")
            await transport.stream(prepared)
            results = await asyncio.gather(*(transport.stream(prepared) for _ in range(4)))
            return results, len(transport._all)

    results, connections = run(go())
    assert all(o.error is None and len(o.response_ns) == 16 and o.tokens == (3,) * 16 for o in results), results
    assert connections == 4, connections  # a connection is opened only while every other one is out


def test_request_ids_travel_and_are_patched_per_send(decoupled_triton):
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            prepared = transport.prepare_stream("stream16", "", [IN], [], None, id_prefix="feed0001-")
            return prepared, [await transport.stream(prepared, n) for n in (1, 42)]

    prepared, outcomes = run(go())
    assert b'{"id":"feed0001-000000000042","IN":[1,2,3]}' in prepared.ids.wire(42)
    assert all(o.error is None and len(o.response_ns) == 16 and o.tokens == () for o in outcomes)


def test_error_statuses_carry_tritons_text(decoupled_triton):
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            unknown = await transport.stream(transport.prepare_stream("no-such-model", "", [IN], [], None))
            wrong = InputTensor("NOPE", "INT32", (1,), struct.pack("<i", 1))
            missing = await transport.stream(transport.prepare_stream("stream16", "", [wrong], [], None))
            return unknown, missing

    unknown, missing = run(go())
    assert unknown.error.label == "HTTP 404" and "unknown model" in unknown.error.message
    assert missing.error.label == "HTTP 400" and "missing required input(s) ['IN']" in missing.error.message
    assert unknown.response_ns == missing.response_ns == ()


def test_a_cancelled_stream_drops_its_connection(decoupled_triton):
    async def go():
        async with HttpTransport(decoupled_triton.http, {}) as transport:
            prepared = transport.prepare_stream("stream16", "", [IN], [], None)
            await transport.stream(prepared)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.06):  # after the first responses, before the last
                    await transport.stream(prepared)
            await asyncio.sleep(0)  # the aborted connection leaves the pool once it is lost
            dropped = len(transport._all)
            return dropped, await transport.stream(prepared)

    dropped, after = run(go())
    assert dropped == 0
    assert after.error is None and len(after.response_ns) == 16


# -- bytes Triton sent, replayed by a local peer --------------------------------------------------

# Triton 2.51's answer to stream-fail, as captured: 3 responses, then the error event.
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENTS = [b'40\r\ndata: {"OUT":%d,"model_name":"stream-fail","model_version":"1"}\n\n\r\n' % n for n in (7, 8, 9)]
ERROR_EVENT = b'28\r\ndata: {"error":"failed at response 3"}\n\n\r\n'
END = b"0\r\n\r\n"
# The same model failing at its first response: the status is 400 and the error an event.
FIRST_FAILS = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
               b'28\r\ndata: {"error":"failed at response 0"}\n\n\r\n0\r\n\r\n')  # fmt: skip


async def replayed(pieces: list[bytes]):
    """One stream against a peer that reads the request, writes `pieces` a few ms apart and closes."""

    answered = asyncio.Event()

    async def answer(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.003)
        except ConnectionError:
            pass  # the client gave up on a broken answer
        finally:
            writer.close()
            answered.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        async with HttpTransport(f"127.0.0.1:{server.sockets[0].getsockname()[1]}", {}) as transport:
            outcome = await transport.stream(transport.prepare_stream("stream-fail", "", [IN], [], "OUT"))
        await answered.wait()
        return outcome
    finally:
        server.close()
        await server.wait_closed()


def test_the_captured_answer_split_anywhere_reads_the_same():
    wire = HEAD + b"".join(EVENTS) + ERROR_EVENT + END
    for size in (1, 7, 64, len(wire)):
        outcome = run(replayed([wire[i : i + size] for i in range(0, len(wire), size)]))
        assert str(outcome.error) == "HTTP 400: failed at response 3", size
        assert len(outcome.response_ns) == 3 and outcome.tokens == (1, 1, 1), size


def test_events_without_outputs_or_after_an_error_are_not_responses():
    no_outputs = b'data: {"model_name":"stream-fail","model_version":"1"}\n\n'
    outcome = run(replayed([HEAD, EVENTS[0], b"%x\r\n%s\r\n" % (len(no_outputs), no_outputs), ERROR_EVENT, EVENTS[1], END]))
    assert str(outcome.error) == "HTTP 400: failed at response 3"
    assert len(outcome.response_ns) == 1 and outcome.tokens == (1,)


def test_a_connection_broken_mid_stream_keeps_the_responses_read():
    outcome = run(replayed([HEAD, *EVENTS[:2], EVENTS[2][:30]]))
    assert outcome.error.kind is FailureKind.CONNECTION
    assert len(outcome.response_ns) == 2 and outcome.tokens == (1, 1)


def test_an_event_that_is_not_json_is_a_protocol_error():
    outcome = run(replayed([HEAD, EVENTS[0], b"d\r\ndata: {oops\n\n\r\n", *EVENTS[1:], END]))
    assert outcome.error.kind is FailureKind.PROTOCOL and "not JSON" in outcome.error.message
    assert len(outcome.response_ns) == 1


def test_the_first_response_failing_is_a_400_with_its_events_text():
    outcome = run(replayed([FIRST_FAILS]))
    assert str(outcome.error) == "HTTP 400: failed at response 0" and outcome.response_ns == ()


# -- the mapping, without a server ----------------------------------------------------------------


def body_of(*inputs: InputTensor, id_prefix: str | None = None) -> dict:
    prepared = HttpTransport("127.0.0.1:1", {}).prepare_stream("m", "2", list(inputs), ["OUT"], "OUT", id_prefix)
    head, _, body = prepared.request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v2/models/m/versions/2/generate_stream HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in head and b"\r\nContent-Length: %d" % len(body) in head
    return json.loads(body)


def test_inputs_map_to_the_extensions_json():
    text = "naïve ☃ \x00 end"
    body = body_of(
        InputTensor("ONE", "INT64", (1, 1), struct.pack("<q", -5)),
        InputTensor("ROW", "INT32", (1, 3), struct.pack("<3i", 1, 2, 3)),
        InputTensor("F", "FP32", (2,), struct.pack("<2f", 0.1, -2.5)),
        InputTensor("B", "BOOL", (2,), b"\x01\x00"),
        InputTensor("TEXT", "BYTES", (1,), struct.pack("<I", len(text.encode())) + text.encode()),
        InputTensor("EMPTY", "FP64", (0,), b""),
        id_prefix="abcd0123-",
    )
    assert list(body) == ["id", "ONE", "ROW", "F", "B", "TEXT", "EMPTY"]  # the id first, to be patched
    assert body == {"id": "abcd0123-000000000000", "ONE": -5, "ROW": [1, 2, 3], "F": [struct.unpack("<f", struct.pack("<f", 0.1))[0], -2.5],
                    "B": [True, False], "TEXT": text, "EMPTY": []}  # fmt: skip


@pytest.mark.parametrize(
    "tensor, message",
    [
        (InputTensor("IN", "INT32", (2, 3), bytes(24)), r"input 'IN' of shape \[2, 3\] .* all 1 but the last"),
        (InputTensor("IN", "INT32", (3, 1), bytes(12)), r"shape \[3, 1\]"),
        (InputTensor("IN", "FP16", (1,), bytes(2)), "'IN' is FP16"),
        (InputTensor("IN", "BF16", (1,), bytes(2)), "'IN' is BF16"),
        (InputTensor("IN", "BYTES", (1,), struct.pack("<I", 2) + b"\xff\xfe"), "not UTF-8 text"),
        (InputTensor("IN", "FP32", (2,), struct.pack("<2f", 1.0, float("nan"))), "NaN or infinity"),
        (InputTensor("IN", "FP64", (1,), struct.pack("<d", float("inf"))), "NaN or infinity"),
        (InputTensor("parameters", "INT32", (1,), bytes(4)), "'parameters' cannot go over HTTP streaming"),
        (InputTensor("id", "INT32", (1,), bytes(4)), "'id' cannot go over HTTP streaming"),
    ],
)
def test_what_the_extension_cannot_carry_is_refused_at_prepare_time(tensor, message):
    with pytest.raises(UsageError, match=message) as caught:
        HttpTransport("127.0.0.1:1", {}).prepare_stream("m", "", [tensor], [], None)
    assert "\n" not in str(caught.value) and str(caught.value).endswith("use -i grpc")
