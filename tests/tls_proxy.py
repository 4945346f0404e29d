"""A TLS-terminating TCP proxy on loopback, and the certificates for it, made at test time.

Triton's own TLS options need a build with them; this proxy puts TLS in front of the embedded
server's plain ports instead, the way a load balancer or an ingress does in production. It
relays bytes both ways and knows nothing of HTTP or gRPC; for gRPC it offers ALPN h2.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate it signed (SAN 127.0.0.1 and localhost), a client
    certificate it signed (mutual TLS), a server certificate for another name, and a CA that signed
    nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_name_cert: Path  # signed by `ca`, for "elsewhere.example" only
    other_name_key: Path
    stranger_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, sans=(), usage=None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage_bits = dict(digital_signature=True, key_cert_sign=True, crl_sign=True)
    else:
        usage_bits = dict(digital_signature=True, key_cert_sign=False, crl_sign=False)
    builder = builder.add_extension(
        x509.KeyUsage(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                      encipher_only=False, decipher_only=False, **usage_bits),
        critical=True,
    )  # fmt: skip
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if ca:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Generates every certificate and key into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    (directory / "ca.pem").write_bytes(_certificate("loadgen test CA", ca_key, "loadgen test CA", ca_key, ca=True).public_bytes(pem))
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate("a stranger CA", stranger_key, "a stranger CA", stranger_key, ca=True)
    (directory / "stranger-ca.pem").write_bytes(stranger.public_bytes(pem))
    loopback = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
    for stem, subject, sans, usage in (
        ("server", "localhost", loopback, ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", "loadgen test client", (), ExtendedKeyUsageOID.CLIENT_AUTH),
        ("other-name", "elsewhere.example", [x509.DNSName("elsewhere.example")], ExtendedKeyUsageOID.SERVER_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(subject, key, "loadgen test CA", ca_key, sans=sans, usage=usage)
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(pem))
        _write_key(key, directory / f"{stem}-key.pem")
    return Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_name_cert=directory / "other-name.pem",
        other_name_key=directory / "other-name-key.pem",
        stranger_ca=directory / "stranger-ca.pem",
    )


class TlsProxy:
    """Accepts TLS on a free loopback port and relays each connection to `upstream` (host:port) in plain.

    `alpn`: the protocols offered ("h2" for gRPC). `client_ca`: require a client certificate
    signed by it (mutual TLS). Runs its own event loop in a daemon thread.
    """

    def __init__(self, upstream: str, cert: Path, key: Path, alpn: tuple[str, ...] = ("http/1.1",), client_ca: Path | None = None) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._context.set_alpn_protocols(list(alpn))
        if client_ca is not None:
            self._context.verify_mode = ssl.CERT_REQUIRED
            self._context.load_verify_locations(client_ca)
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # failed handshakes are what some tests are about
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> TlsProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, LOOPBACK, 0, ssl=self._context), self._loop
        ).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer), return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
