"""TLS for both transports: the options perf_analyzer's --ssl-* flags give, as an ssl.SSLContext,
and a handshake failure's one-line fix."""

from __future__ import annotations

import functools
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from loadgen.errors import UsageError

# The flags that fix each kind of failure, per protocol.
_FLAGS = {
    "http": {
        "ca": "pass the server's CA with --ssl-https-ca-certificates-file (or --ssl-https-verify-peer 0 to skip the check)",
        "host": "connect by a name the certificate holds, or pass --ssl-https-verify-host 0",
        "client": "pass --ssl-https-client-certificate-file and --ssl-https-private-key-file",
        "plain": "the server does not speak TLS there: use -u http://host:port",
        "closed": "is it a TLS port (else use -u http://host:port), and does it want a client certificate (--ssl-https-client-certificate-file)?",
    },
    "grpc": {
        "ca": "pass the server's CA with --ssl-grpc-root-certifications-file",
        "host": "connect by a name the certificate holds",
        "client": "pass --ssl-grpc-certificate-chain-file and --ssl-grpc-private-key-file",
        "plain": "the server does not speak TLS there: drop --ssl-grpc-use-ssl",
        "alpn": "the server did not agree to HTTP/2 (ALPN h2): is it a gRPC port?",
        "closed": "is it a TLS port (else drop --ssl-grpc-use-ssl), and does it want a client certificate (--ssl-grpc-certificate-chain-file)?",
    },
}
# Failure texts (OpenSSL through Python, and grpc's) and the kind of fix each needs, first match wins.
_KINDS = (
    ("host", ("hostname mismatch", "ip address mismatch", "not in peer certificate", "hostname verification")),
    ("ca", ("certificate_verify_failed", "certificate verify failed")),
    ("client", ("certificate required", "certificate_required", "bad certificate", "bad_certificate", "unknown ca", "unknown_ca")),
    ("plain", ("wrong_version_number", "wrong version number", "record layer failure", "packet length too long", "http_request", "http request")),
    ("alpn", ("alpn",)),
    ("closed", ("closed", "reset by peer")),  # during or right after the handshake: the server said no more
)
_OPENSSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")


@dataclass(frozen=True)
class TlsOptions:
    """How to set up TLS with the server. Files are PEM; `cert_file` may hold the key too."""

    verify_peer: bool = True  # check the certificate chain against `ca_file` (else the system's CAs)
    verify_host: bool = True  # check that the certificate names the host connected to
    ca_file: Path | None = None
    cert_file: Path | None = None  # the client certificate, for servers that require one (mutual TLS)
    key_file: Path | None = None

    def context(self, alpn: str) -> ssl.SSLContext:
        """A client context offering `alpn` ("http/1.1", "h2"), built once per process for these
        options (loadgen.config.prepare builds it before the run; transports reuse it), not per connection."""
        return _context(self, alpn)


@functools.cache
def _context(options: TlsOptions, alpn: str) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"cannot use CA file {options.ca_file} ({_reason(exc)}): give a PEM file of CA certificates") from None
    context.check_hostname = options.verify_peer and options.verify_host
    if not options.verify_peer:
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file is not None:
        try:
            context.load_cert_chain(options.cert_file, options.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"cannot use client certificate {options.cert_file}"
                f"{' with key ' + str(options.key_file) if options.key_file else ''} ({_reason(exc)}): give PEM files that belong together"
            ) from None
    context.set_alpn_protocols([alpn])
    return context


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return " ".join(_OPENSSL_SOURCE.sub("", str(text)).split())


def tls_failure(reason: str, protocol: str) -> str | None:
    """`reason` with its fix when it is a TLS failure, else None. `protocol` is "http" or "grpc"."""
    lowered = reason.lower()
    for kind, needles in _KINDS:
        if kind in _FLAGS[protocol] and any(needle in lowered for needle in needles):
            return f"TLS failed ({' '.join(_OPENSSL_SOURCE.sub('', reason).split())}): {_FLAGS[protocol][kind]}"
    return None
