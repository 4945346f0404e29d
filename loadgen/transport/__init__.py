"""Transports: how requests and control calls reach the server (HTTP, gRPC)."""

from loadgen.outcome import InferOutcome
from loadgen.transport.base import CONNECT_TIMEOUT_S, InputTensor, Transport
from loadgen.transport.tls import TlsOptions


def open_transport(
    protocol: str,
    url: str,
    headers: dict[str, str] | None = None,
    tls: TlsOptions | None = None,
    request_timeout_ms: float | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> Transport:
    """The transport for `protocol` ("http" or "grpc") talking to `url` (host:port), over TLS
    with `tls` (for HTTP an https:// URL alone means TLS with the default options). gRPC sends
    `request_timeout_ms` to the server as each call's deadline; both enforce it on a streamed
    request themselves (the engine's own deadline would lose its responses); connecting gives up
    after `connect_timeout_s`."""
    if protocol == "http":
        from loadgen.transport.http import HttpTransport

        # HTTP/1.1 carries no deadline: an infer's is the engine's alone, a stream's the transport's timer.
        return HttpTransport(url, headers or {}, tls, connect_timeout_s, request_timeout_ms)
    if protocol == "grpc":
        from loadgen.transport.grpc import GrpcTransport

        return GrpcTransport(url, headers or {}, tls, request_timeout_ms, connect_timeout_s)
    from loadgen.errors import UsageError

    raise UsageError(f"unknown protocol {protocol!r}: use -i http or -i grpc")


__all__ = ["InferOutcome", "InputTensor", "TlsOptions", "Transport", "open_transport"]
