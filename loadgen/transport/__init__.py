"""Transports: how requests and control calls reach the server (HTTP, gRPC)."""

from loadgen.transport.base import InferOutcome, InputTensor, Transport


def open_transport(protocol: str, url: str, headers: dict[str, str] | None = None) -> Transport:
    """The transport for `protocol` ("http" or "grpc") talking to `url` (host:port)."""
    if protocol == "http":
        from loadgen.transport.http import HttpTransport

        return HttpTransport(url, headers or {})
    if protocol == "grpc":
        from loadgen.transport.grpc import GrpcTransport

        return GrpcTransport(url, headers or {})
    from loadgen.errors import UsageError

    raise UsageError(f"unknown protocol {protocol!r}: use -i http or -i grpc")


__all__ = ["InferOutcome", "InputTensor", "Transport", "open_transport"]
