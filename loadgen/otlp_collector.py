"""The OTLP/HTTP collector loadgen runs for a run (--trace-collector-port): a Triton in
OpenTelemetry mode posts its spans to `POST /v1/traces`, and the bodies are kept as they came
until the run takes them at a level's end (loadgen.otlp parses them then: parsing is client CPU,
not spent while a level is measured).

It answers 200 with an empty ExportTraceServiceResponse in the request's content type
(application/x-protobuf or application/json; 415 for any other), takes bodies up to
MAX_BODY_BYTES (413 beyond) and holds at most MAX_HELD_BYTES of them (503 beyond, counted). It
asks for no credentials: anyone who reaches the port can post spans, and they join the run's
traces if they carry the run's request ids.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from aiohttp import web

from loadgen.errors import UsageError
from loadgen.otlp import empty_response, media_type

PATH = "/v1/traces"  # OTLP/HTTP's path for traces
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_HELD_BYTES = 512 * 1024 * 1024
MAX_HELD_BODIES = 100_000
SHUTDOWN_S = 1.0  # at close, the most a post in progress is waited for


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, bound before any load starts; a UsageError when it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UsageError(f"--trace-collector-port: cannot listen on {host!r} ({exc.strerror}): "
                         "give PORT or HOST:PORT of this machine") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; one listened on is not
        sock.bind(address)
        sock.listen(128)  # Triton's posts wait in the backlog until the collector serves
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} is in use: choose another --trace-collector-port") from None
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}): give --trace-collector-port a free port, "
                         "and a HOST that is this machine's") from None
    return sock


class OtlpCollector:
    """Serves PATH on a listening socket (`listen`) from `start` to `close`; `take` hands over the
    bodies received since the last call, each with its media type."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.last_body_s: float | None = None  # the loop's time of the last body kept
        self.dropped = 0  # bodies answered 413 or 503: too large, or too many held
        self.refused = 0  # bodies answered 415: not OTLP's content types
        self._bodies: list[tuple[bytes, str]] = []
        self._held_bytes = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self._export)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def take(self) -> list[tuple[bytes, str]]:
        bodies, self._bodies, self._held_bytes = self._bodies, [], 0
        return bodies

    async def _export(self, request: web.Request) -> web.Response:
        media = media_type(request.headers.get("Content-Type"))
        if media is None:
            self.refused += 1
            raise web.HTTPUnsupportedMediaType(text="OTLP/HTTP bodies only: application/x-protobuf or application/json")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.dropped += 1
            raise
        if len(self._bodies) >= MAX_HELD_BODIES or self._held_bytes + len(body) > MAX_HELD_BYTES:
            self.dropped += 1
            raise web.HTTPServiceUnavailable(text="loadgen's collector holds as many spans as it takes until its run reads them")
        self._bodies.append((body, media))
        self._held_bytes += len(body)
        self.last_body_s = asyncio.get_running_loop().time()
        return web.Response(body=empty_response(media), content_type=media)
