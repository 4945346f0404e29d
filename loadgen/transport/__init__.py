"""Transports: how requests and control calls reach the server (HTTP, gRPC)."""

from loadgen.transport.base import InferOutcome, InputTensor, Transport
from loadgen.transport.tls import TlsOptions


def open_transport(protocol: str, url: str, headers: dict[str, str] | None = None, tls: TlsOptions | None = None) -> Transport:
    """The transport for `protocol` ("http" or "grpc") talking to `url` (host:port), over TLS
    with `tls` (for HTTP an https:// URL alone means TLS with the default options)."""
    if protocol == "http":
        from loadgen.transport.http import HttpTransport

        return HttpTransport(url, headers or {}, tls)
    if protocol == "grpc":
        from loadgen.transport.grpc import GrpcTransport

        return GrpcTransport(url, headers or {}, tls)
    from loadgen.errors import UsageError

    raise UsageError(f"unknown protocol {protocol!r}: use -i http or -i grpc")


__all__ = ["InferOutcome", "InputTensor", "TlsOptions", "Transport", "open_transport"]
