"""What listens on a port, asked when a control call found no Triton API there: a clear error
for nothing listening, or for Triton's HTTP, gRPC or metrics port given to the wrong protocol.

The probe sends a plain HTTP/1.1 `GET /metrics` and reads the first bytes of the answer. Triton
2.51 as seen here: its gRPC port answers with HTTP/2 SETTINGS and closes; its HTTP port answers
404; its metrics port answers with the Prometheus page. (Its HTTP and metrics ports close an
HTTP/2 connection without a byte, so gRPC's own error cannot tell them apart.)
"""

from __future__ import annotations

import asyncio

from loadgen.errors import ServerError, UsageError

HTTP_PORT, GRPC_PORT = 8000, 8001  # Triton's defaults
_PROBE_TIMEOUT_S = 2.0
_ENOUGH = 4096  # the status line and the start of the body


def port_kind(answer: bytes) -> str | None:
    """"grpc" for HTTP/2 (a server's first frame is SETTINGS, on stream 0), "metrics" for a
    Prometheus page, "http" for another HTTP/1 answer; None when the bytes tell nothing."""
    if len(answer) >= 9 and answer[3] == 0x04 and answer[5:9] == b"\0\0\0\0":
        return "grpc"
    if answer.startswith(b"HTTP/1."):
        body = answer.partition(b"\r\n\r\n")[2]
        return "metrics" if body.startswith((b"# HELP", b"# TYPE")) else "http"
    return None


def wrong_port_error(kind: str | None, protocol: str, url: str) -> UsageError | None:
    """The usage error when what answered at `url` is not `protocol` ("http" or "grpc")."""
    right = f"the HTTP port ({HTTP_PORT})" if protocol == "http" else f"the gRPC port ({GRPC_PORT})"
    if kind == "metrics":
        return UsageError(f"{url} serves Prometheus metrics: is it Triton's metrics port? use {right}")
    if kind == "grpc" and protocol == "http":
        return UsageError(f"{url} answered in HTTP/2: is it the gRPC port? use -i grpc or {right}")
    if kind == "http" and protocol == "grpc":
        return UsageError(f"{url} answered in HTTP/1.1, not gRPC: is it the HTTP port? use -i http or {right}")
    return None


async def _answer(host: str, port: int) -> bytes:
    """The first bytes the server sends back; raises OSError when nothing can be reached."""
    async with asyncio.timeout(_PROBE_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(host, port)
    answer = b""
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            while len(answer) < _ENOUGH and (chunk := await reader.read(_ENOUGH)):
                answer += chunk
    except (OSError, TimeoutError):
        pass  # a reset or a silence: what came before it is the answer
    finally:
        writer.close()
    return answer


async def check_port(protocol: str, host: str, port: int, url: str) -> None:
    """Raises ServerError when nothing answers at host:port, UsageError when another protocol
    does; returns when the port may well speak `protocol` (the caller's own error stands)."""
    try:
        answer = await _answer(host, port)
    except TimeoutError:
        return
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ServerError(f"cannot reach Triton at {url} ({reason}): check -u, and that the server is running") from None
    error = wrong_port_error(port_kind(answer), protocol, url)
    if error is not None:
        raise error
