"""loadgen.otlp_collector over real sockets: what it answers, what it keeps, its bounds, and a port
that cannot be listened on."""

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import pytest

from loadgen import otlp_collector
from loadgen.errors import UsageError
from loadgen.otlp import JSON, PROTOBUF, OtlpReader
from loadgen.otlp_collector import OtlpCollector, listen

BODY = json.loads((Path(__file__).parent / "data" / "otlp" / "error" / "bodies.json").read_text())[0]["body"].encode()


async def posting(collector: OtlpCollector, posts: list[tuple[str, str, bytes, str | None]]) -> list[tuple[int, bytes, str]]:
    """(status, body, content type) of each (method, path, body, content type) sent to a started collector."""
    answers = []
    async with aiohttp.ClientSession() as session:
        for method, path, data, content_type in posts:
            headers = {"Content-Type": content_type} if content_type else {}
            async with session.request(method, f"http://127.0.0.1:{collector.port}{path}", data=data, headers=headers) as response:
                answers.append((response.status, await response.read(), response.content_type))
    return answers


def serve(posts, bounds: dict | None = None, monkeypatch=None) -> tuple[list, OtlpCollector]:
    for name, value in (bounds or {}).items():
        monkeypatch.setattr(otlp_collector, name, value)

    async def go():
        collector = OtlpCollector(listen("127.0.0.1", 0))
        await collector.start()
        try:
            return await posting(collector, posts), collector
        finally:
            await collector.close()

    return asyncio.run(go())


def test_it_takes_otlp_bodies_and_answers_an_empty_response_in_their_type():
    answers, collector = serve([("POST", "/v1/traces", BODY, "application/json"), ("POST", "/v1/traces", b"", PROTOBUF),
                                ("POST", "/v1/traces", BODY, "application/json; charset=utf-8")])  # fmt: skip
    assert answers == [(200, b"{}", JSON), (200, b"", PROTOBUF), (200, b"{}", JSON)]
    kept = collector.take()
    assert kept == [(BODY, JSON), (b"", PROTOBUF), (BODY, JSON)] and collector.take() == []
    assert collector.last_body_s is not None and (collector.dropped, collector.refused) == (0, 0)
    reader = OtlpReader()
    reader.add(kept)
    assert {trace.request_id for trace in reader.take_complete()} == {"", "req-0"}


def test_other_types_paths_and_methods_are_refused():
    answers, collector = serve([("POST", "/v1/traces", BODY, "text/plain"), ("POST", "/v1/traces", BODY, None),
                                ("POST", "/v1/metrics", BODY, JSON), ("GET", "/v1/traces", b"", None)])  # fmt: skip
    assert [status for status, _, _ in answers] == [415, 415, 404, 405]
    assert collector.take() == [] and collector.refused == 2


def test_a_body_too_large_is_413_and_more_than_it_holds_503(monkeypatch):
    answers, collector = serve([("POST", "/v1/traces", b"x" * 2 * len(BODY), PROTOBUF), ("POST", "/v1/traces", BODY, JSON),
                                ("POST", "/v1/traces", BODY, JSON)],
                               {"MAX_BODY_BYTES": len(BODY) + 100, "MAX_HELD_BYTES": len(BODY) + 10}, monkeypatch)  # fmt: skip
    assert [status for status, _, _ in answers] == [413, 200, 503]
    assert collector.take() == [(BODY, JSON)] and collector.dropped == 2


def test_after_close_nothing_listens():
    _, collector = serve([])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", collector.port), timeout=2):
        pass


def test_a_port_in_use_or_a_host_not_here_is_a_usage_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} is in use: choose another --trace-collector-port"):
            listen("0.0.0.0", port)
    with pytest.raises(UsageError, match="give PORT or HOST:PORT of this machine"):
        listen("no-such-host.invalid", 4318)
    with pytest.raises(UsageError, match="and a HOST that is this machine's"):
        listen("192.0.2.1", 4318)  # TEST-NET-1: bind fails, nothing is sent
