"""TLS and credentials end to end: `loadgen run` over HTTPS and gRPC with TLS (a TLS proxy in front
of the real embedded server), mutual TLS, -H headers reaching the model, and no credential in any
output or report file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tls_proxy import TlsProxy, make_pki

from loadgen.cli import main
from loadgen.config import prepare
from loadgen.options import build_config, load_config_file
from loadgen.errors import UsageError
from loadgen.server import EmbeddedServer
from loadgen.transport import InputTensor, TlsOptions
from loadgen.transport.grpc import GrpcTransport
from loadgen.transport.http import HttpTransport

HEADERS_REPOSITORY = Path(__file__).resolve().parent / "model_repos" / "headers"
MODEL = "header-check"
# The header the model requires, and Triton's options that forward it to the model as a request parameter.
CHECK = "X-Loadgen-Check: let-me-in"
FORWARD = ("--http-header-forward-pattern=(?i)x-loadgen-.*", "--grpc-header-forward-pattern=(?i)x-loadgen-.*")
SHORT = ["-p", "500", "-r", "3", "-s", "50"]


@pytest.fixture(scope="module")
def headers_triton(tmp_path_factory):
    server = EmbeddedServer(HEADERS_REPOSITORY, tmp_path_factory.mktemp("headers") / "server.log", extra_args=FORWARD)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def proxies(headers_triton, pki):
    """TLS proxies in front of the server: per protocol plain TLS and mutual TLS, and HTTPS with a
    certificate for another host name."""
    cert = (pki.server_cert, pki.server_key)
    started = {
        "http": TlsProxy(headers_triton.http, *cert),
        "grpc": TlsProxy(headers_triton.grpc, *cert, alpn=("h2",)),
        "http-mtls": TlsProxy(headers_triton.http, *cert, client_ca=pki.ca),
        "grpc-mtls": TlsProxy(headers_triton.grpc, *cert, alpn=("h2",), client_ca=pki.ca),
        "http-other-name": TlsProxy(headers_triton.http, pki.other_name_cert, pki.other_name_key),
        "metrics": TlsProxy(headers_triton.metrics, *cert),
    }
    try:
        yield {name: proxy.start() for name, proxy in started.items()}
    finally:
        for proxy in started.values():
            if proxy.port:
                proxy.stop()


def loadgen_run(*args: str, report: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "loadgen", "run", "-m", MODEL, *SHORT, "--report-dir", str(report), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def server_args(proxies, pki, protocol: str, proxy: str | None = None) -> list[str]:
    """-u and the CA flag for the TLS proxy of `protocol`."""
    address = proxies[proxy or protocol].address
    if protocol == "http":
        return ["-u", f"https://{address}", "--ssl-https-ca-certificates-file", str(pki.ca)]
    return ["-i", "grpc", "-u", address, "--ssl-grpc-use-ssl", "--ssl-grpc-root-certifications-file", str(pki.ca)]


def client_cert_args(pki, protocol: str) -> list[str]:
    if protocol == "http":
        return ["--ssl-https-client-certificate-file", str(pki.client_cert), "--ssl-https-private-key-file", str(pki.client_key)]
    return ["--ssl-grpc-certificate-chain-file", str(pki.client_cert), "--ssl-grpc-private-key-file", str(pki.client_key)]


def only_level(report: Path) -> dict:
    (level,) = json.loads((report / "summary.json").read_text())["levels"]
    return level


def assert_ran_clean(process: subprocess.CompletedProcess, report: Path) -> None:
    assert process.returncode == 0, process.stderr
    level = only_level(report)
    assert level["client"]["request_count"] > 0 and level["client"]["error_count"] == 0


def assert_one_line_server_error(process: subprocess.CompletedProcess, *fragments: str) -> None:
    assert process.returncode == 3, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: error: "), process.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# -- TLS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_run_over_tls_with_the_ca(proxies, pki, protocol, tmp_path):
    process = loadgen_run(*server_args(proxies, pki, protocol), "-H", CHECK, report=tmp_path)
    assert_ran_clean(process, tmp_path)


@pytest.mark.parametrize(
    ("protocol", "flag"), [("http", "--ssl-https-ca-certificates-file"), ("grpc", "--ssl-grpc-root-certifications-file")]
)
def test_an_unknown_ca_is_one_line_naming_the_flag(proxies, pki, protocol, flag, tmp_path):
    args = server_args(proxies, pki, protocol)
    args = args[: args.index(flag)]  # verification on, with the system's CAs only
    process = loadgen_run(*args, "-H", CHECK, report=tmp_path)
    assert_one_line_server_error(process, "CERTIFICATE_VERIFY_FAILED", flag)


def test_https_verify_peer_0_accepts_any_certificate(proxies, tmp_path):
    process = loadgen_run("-u", f"https://{proxies['http'].address}", "--ssl-https-verify-peer", "0", "-H", CHECK, report=tmp_path)
    assert_ran_clean(process, tmp_path)


def test_https_verify_host(proxies, pki, tmp_path):
    args = server_args(proxies, pki, "http", "http-other-name")
    process = loadgen_run(*args, "-H", CHECK, report=tmp_path / "checked")
    assert_one_line_server_error(process, "IP address mismatch", "--ssl-https-verify-host 0")
    process = loadgen_run(*args, "--ssl-https-verify-host", "0", "-H", CHECK, report=tmp_path / "unchecked")
    assert_ran_clean(process, tmp_path / "unchecked")


@pytest.mark.parametrize(("protocol", "flag"), [("http", "--ssl-https-client-certificate-file"), ("grpc", "--ssl-grpc-certificate-chain-file")])
def test_mutual_tls(proxies, pki, protocol, flag, tmp_path):
    args = server_args(proxies, pki, protocol, f"{protocol}-mtls")
    process = loadgen_run(*args, *client_cert_args(pki, protocol), "-H", CHECK, report=tmp_path / "with")
    assert_ran_clean(process, tmp_path / "with")
    process = loadgen_run(*args, "-H", CHECK, report=tmp_path / "without")
    assert_one_line_server_error(process, "client certificate", flag)


def test_https_to_a_plain_port_names_the_fix(headers_triton, pki, tmp_path):
    process = loadgen_run("-u", f"https://{headers_triton.http}", "--ssl-https-ca-certificates-file", str(pki.ca), report=tmp_path)
    assert_one_line_server_error(process, "is it a TLS port")


def test_lean_grpc_client_insists_on_alpn_h2(proxies, pki):
    """The infer path's own HTTP/2 client over TLS: a server that does not agree to h2 is an outcome, not a hang."""

    async def infer():
        async with GrpcTransport(proxies["http"].address, {}, TlsOptions(ca_file=pki.ca)) as transport:
            prepared = transport.prepare(MODEL, "", [InputTensor("INPUT0", "FP32", (1, 4), bytes(16))], ["OUTPUT0"])
            return (await transport.infer(prepared)).error

    error = asyncio.run(infer())
    assert error is not None and "ALPN h2" in error.message


def test_host_header_and_sni_over_https(proxies, pki):
    """Connected by name, the Host header carries the name, and the certificate is checked against it."""

    async def metadata() -> dict:
        url = f"https://localhost:{proxies['http'].port}"
        async with HttpTransport(url, {}, TlsOptions(ca_file=pki.ca)) as transport:
            assert b"Host: localhost:" in transport._headers
            return await transport.server_metadata()

    assert asyncio.run(metadata())["name"] == "triton"


# -- flags and configuration --------------------------------------------------------------------


def test_tls_flags_are_checked_before_any_connection(pki, tmp_path):
    def usage_error(**options) -> str:
        with pytest.raises(UsageError) as caught:
            prepare(build_config({"model-name": "m", **options}))  # the files are read by prepare, before any server starts
        return str(caught.value)

    https = {"url": "https://triton:8443"}
    assert "--ssl-https-ca-certificates-file" in usage_error(**https, **{"ssl-https-ca-certificates-file": str(tmp_path / "none.pem")})
    assert "convert the file to PEM" in usage_error(**https, **{"ssl-https-client-certificate-type": "DER"})
    assert "0 or 1" in usage_error(**https, **{"ssl-https-verify-peer": 2})
    assert "-u https://" in usage_error(url="triton:8000", **{"ssl-https-verify-peer": 0})
    assert "add --ssl-grpc-use-ssl" in usage_error(url="triton:8001", protocol="grpc", **{"ssl-grpc-root-certifications-file": str(pki.ca)})
    assert "applies to -i grpc" in usage_error(url="triton:8000", **{"ssl-grpc-use-ssl": True})
    assert "go together" in usage_error(url="triton:8001", protocol="grpc", **{"ssl-grpc-use-ssl": True, "ssl-grpc-private-key-file": str(pki.client_key)})
    assert "needs --ssl-https-client-certificate-file" in usage_error(**https, **{"ssl-https-private-key-file": str(pki.client_key)})
    # A file that is no certificate, and a key that belongs to another certificate, fail now too.
    assert "CA file" in usage_error(**https, **{"ssl-https-ca-certificates-file": str(pki.client_key)})
    mismatched = {"ssl-https-client-certificate-file": str(pki.client_cert), "ssl-https-private-key-file": str(pki.server_key)}
    assert "belong together" in usage_error(**https, **mismatched)


def test_tls_options_from_a_config_file_and_flags(pki, tmp_path, capsys):
    scenario = tmp_path / "tls.yaml"
    scenario.write_text(f"url: https://triton:8443\nmodel-name: m\nssl-https-verify-host: 0\nssl-https-ca-certificates-file: {pki.ca}\n")
    config = build_config(load_config_file(scenario))
    assert config.target.tls == TlsOptions(verify_peer=True, verify_host=False, ca_file=pki.ca)
    grpc = build_config({"url": "triton:8001", "model-name": "m", "protocol": "grpc", "ssl-grpc-use-ssl": True})
    assert grpc.target.tls == TlsOptions() and build_config({"url": "triton:8000", "model-name": "m"}).target.tls is None
    assert main(["run", "-u", "https://triton:8443", "-m", "m", "--ssl-https-verify-host", "3"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# -- headers and credentials --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_headers_reach_the_server(headers_triton, protocol, tmp_path):
    """Triton forwards X-Loadgen-* headers to the model, which fails any request without the right value."""
    url = headers_triton.http if protocol == "http" else headers_triton.grpc
    process = loadgen_run("-i", protocol, "-u", url, "-H", CHECK, report=tmp_path / "with")
    assert_ran_clean(process, tmp_path / "with")
    process = loadgen_run("-i", protocol, "-u", url, report=tmp_path / "without")
    assert process.returncode == 0, process.stderr
    level = only_level(tmp_path / "without")
    assert level["client"]["request_count"] == 0 and level["error_rate"] == 1.0
    assert "x-loadgen-check missing or wrong" in json.dumps(level["errors"])


SECRETS = ("S3CRET-A", "S3CRET-B", "S3CRET-C", "S3CRET-D", "S3CRET-E")


def assert_no_secret(process: subprocess.CompletedProcess, *folders: Path) -> None:
    for secret in SECRETS:
        assert secret not in process.stdout and secret not in process.stderr, secret
    for folder in folders:
        for path in (p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{secret} in {path}"


def test_credentials_appear_in_no_output(headers_triton, proxies, pki, tmp_path):
    """Also: an https metrics page is read with the --ssl-https-* options."""
    report = tmp_path / "report"
    metrics = f"https://scraper:S3CRET-C@{proxies['metrics'].address}/metrics?token=S3CRET-E"
    process = loadgen_run(
        "-u", f"http://user:S3CRET-D@{headers_triton.http}", "-H", CHECK, "--ssl-https-ca-certificates-file", str(pki.ca),
        "-H", "Authorization: Bearer S3CRET-A", "-H", "X-Api-Key: S3CRET-B", "-H", "X-Trace: visible",
        "--collect-metrics", "--metrics-url", metrics, "--metrics-interval", "250",
        "--sla", "p99_ms<10000", "--junit", str(report / "junit.xml"), "-f", str(report / "pa.csv"), "--verbose-csv",
        report=report,
    )  # fmt: skip
    assert_ran_clean(process, report)
    assert_no_secret(process, report)
    summary = json.loads((report / "summary.json").read_text())
    assert not summary["warnings"] and summary["metrics_series"]["t_s"]
    config = summary["config"]
    assert config["headers"] == {"X-Loadgen-Check": "let-me-in", "Authorization": "***", "X-Api-Key": "***", "X-Trace": "visible"}
    assert config["url"] == f"http://***@{headers_triton.http}"
    assert config["metrics_url"] == f"https://***@{proxies['metrics'].address}/metrics?token=***"
    assert {"report.html", "results.csv", "metrics.csv", "junit.xml", "pa.csv"} <= {p.name for p in report.iterdir()}
    assert "visible" in (report / "report.html").read_text()


def test_credentials_appear_in_no_error(tmp_path):
    """Nothing listens on port 1: the run fails, and its message names the server without the password."""
    report = tmp_path / "report"
    process = loadgen_run("-u", "http://user:S3CRET-D@127.0.0.1:1", "-H", "Authorization: Bearer S3CRET-A", report=report)
    assert_one_line_server_error(process, "http://***@127.0.0.1:1")
    assert_no_secret(process, *[report] if report.exists() else [])
    process = loadgen_run("-u", "user:S3CRET-D@127.0.0.1:1", "-i", "grpc", "-H", "Authorization S3CRET-A", report=report)
    assert process.returncode == 2 and "'Authorization ...' is not Header:Value" in process.stderr
    assert_no_secret(process)


def test_basic_auth_from_the_url():
    transport = HttpTransport("http://user:pa%3Ass@127.0.0.1:8000", {})
    assert b"Authorization: Basic dXNlcjpwYTpzcw==\r\n" in transport._headers  # user:pa:ss
    assert transport.url == "http://***@127.0.0.1:8000"
    with pytest.raises(UsageError, match="no user:password"):
        GrpcTransport("user:pw@127.0.0.1:8001", {})
