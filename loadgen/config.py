"""A run's configuration: perf_analyzer's options, from flags and an optional YAML file."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadgen.errors import UsageError
from loadgen.redact import redact_headers, redact_url
from loadgen.schedule.open_loop import read_intervals
from loadgen.sla import parse_sla
from loadgen.transport.base import CONNECT_TIMEOUT_S, split_host_port
from loadgen.transport.tls import TlsOptions
from loadgen.windows import WindowPolicy

DEFAULT_MODEL = "centernet-ensemble"
MAX_LEVELS = 10_000  # a range with more is a typo, and a sweep that would never end


@dataclass(frozen=True)
class Range:
    """perf_analyzer's start:end:step. end == 0 means: keep stepping until the latency threshold.

    Concurrency ranges are whole numbers; request rates may have decimals.
    """

    start: float
    end: float
    step: float

    def values(self) -> list[float] | None:
        """The levels, or None for an open-ended range."""
        if self.end == 0:
            return None
        count = int((self.end - self.start) / self.step + 1e-9) + 1
        # min: a decimal step (0.1:0.3:0.1) must not overshoot the end by a rounding error
        return [min(self.start + i * self.step, self.end) for i in range(count)]

    def __str__(self) -> str:
        return ":".join(_number(v) for v in (self.start, self.end, self.step))


def _number(value: float) -> str:
    """The shortest text that parses back to the same number (`:g` would round 1234567 to 1.23457e+06)."""
    return str(int(value)) if isinstance(value, int) or value.is_integer() else repr(value)


def parse_range(text: str, flag: str, whole: bool = True) -> Range:
    parts = str(text).split(":")
    kind = int if whole else float
    try:
        numbers = [kind(p) for p in parts]
    except ValueError:
        numbers = []
    if not numbers or not all(whole or math.isfinite(n) for n in numbers):  # float() takes nan and inf
        example = "1:8:1" if whole else "100:400:100"
        raise UsageError(f"{flag} {text!r} is not start[:end[:step]] of {'whole ' if whole else ''}numbers, e.g. {example}")
    if not 1 <= len(numbers) <= 3:
        raise UsageError(f"{flag} {text!r} has {len(numbers)} parts: use start[:end[:step]], e.g. 1:8:1")
    start = numbers[0]
    end = numbers[1] if len(numbers) > 1 else start
    step = numbers[2] if len(numbers) > 2 else kind(1)
    if start < 1 if whole else start <= 0:
        raise UsageError(f"{flag} {text!r} starts below {'1' if whole else 'or at 0'}: the smallest level is {'1' if whole else 'above 0'}")
    if step < 1 if whole else step <= 0:
        raise UsageError(f"{flag} {text!r} has step {step}: the step must be {'at least 1' if whole else 'above 0'}")
    if end != 0 and end < start:
        raise UsageError(f"{flag} {text!r} ends before it starts: write start:end with end >= start")
    if end != 0 and (end - start) // step >= MAX_LEVELS:
        raise UsageError(f"{flag} {text!r} has more than {MAX_LEVELS} levels: take a larger step")
    return Range(start, end, step)


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME:d1,d2` → (name, dims). The name may itself contain colons; the dims follow the last one."""
    name, sep, dims = str(text).rpartition(":")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d < 1 for d in shape):
        raise UsageError(f"--shape {text!r} is not NAME:d1,d2,... with positive dimensions, e.g. INPUT0:3,224,224")
    return name, shape


def parse_percent(text: str, flag: str) -> float:
    """'5%' or '5' → 5.0."""
    try:
        value = float(str(text).strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"{flag} {text!r} is not a percentage, e.g. 5%")
    if value < 0:
        raise UsageError(f"{flag} {text!r} is negative: give the allowed worsening, e.g. 5%")
    return value


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = str(text).partition(":")
    if not sep or not name.strip():
        word, *rest = str(text).split(maxsplit=1) or [""]
        shown = word + " ..." if rest else word  # the rest may be a credential: not echoed
        raise UsageError(f"-H {shown!r} is not Header:Value, e.g. -H 'Authorization: Bearer TOKEN'")
    return name.strip(), value.strip()


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs. Field names follow perf_analyzer's long flags."""

    model_name: str = DEFAULT_MODEL
    model_version: str = ""
    batch_size: int = 1
    url: str | None = None
    protocol: str = "http"
    concurrency_range: Range = Range(1, 1, 1)
    request_rate_range: Range | None = None  # open loop at these rates, instead of the concurrency range
    request_distribution: str = "constant"
    request_intervals: Path | None = None  # open loop with these gaps (µs, one per line, looped)
    max_inflight: int | None = None
    # A request without an answer by then is cancelled and counted as a timeout error; 0: no deadline.
    request_timeout_ms: float = 60_000.0
    connect_timeout_ms: float = CONNECT_TIMEOUT_S * 1e3
    seed: int | None = None  # of the Poisson arrivals
    workers: int | None = None  # the load comes from this many worker processes on Ray; None: this process
    ray_address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001"); None: Ray starts locally
    binary_search: bool = False
    slas: tuple[str, ...] = ()
    require_stable: bool = False  # a level that never stabilized fails the run, as a breached SLA
    junit_file: Path | None = None
    target_throughput: float | None = None
    headroom_pct: float = 0.0
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: str | None = None
    string_length: int = 128
    windows: WindowPolicy = WindowPolicy()
    latency_threshold_ms: float | None = None
    csv_file: Path | None = None
    verbose_csv: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    report_dir: Path | None = None
    model_repository: Path | None = None
    collect_metrics: bool = False
    metrics_url: str | None = None  # None: the server's metrics port
    metrics_interval_ms: int = 1000
    export_metrics_port: int | None = None
    # TLS, with perf_analyzer's --ssl-* flags: HTTPS is -u https://host:port, gRPC over TLS is
    # --ssl-grpc-use-ssl. Files are PEM.
    ssl_grpc_use_ssl: bool = False
    ssl_grpc_root_certifications_file: Path | None = None
    ssl_grpc_private_key_file: Path | None = None
    ssl_grpc_certificate_chain_file: Path | None = None
    ssl_https_verify_peer: int = 1  # 0: accept any certificate
    ssl_https_verify_host: int = 2  # 0: accept a certificate for another name; 1 is 2, as in curl
    ssl_https_ca_certificates_file: Path | None = None
    ssl_https_client_certificate_file: Path | None = None
    ssl_https_client_certificate_type: str = "PEM"
    ssl_https_private_key_file: Path | None = None
    ssl_https_private_key_type: str = "PEM"

    def __post_init__(self) -> None:
        if self.protocol not in ("http", "grpc"):
            raise UsageError(f"unknown protocol {self.protocol!r}: use -i http or -i grpc")
        if self.url is not None:
            split_host_port(self.url, 8000 if self.protocol == "http" else 8001)  # a bad -u fails before a server starts
        if not self.model_name.strip():
            raise UsageError("-m/--model-name is empty: name the model to load test")
        if self.model_version and not (self.model_version.isascii() and self.model_version.isdigit() and int(self.model_version) > 0):
            raise UsageError(f"-x {self.model_version!r} is not a model version: give a whole number from 1 up, or leave -x out for the latest")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}: fix -b")
        if self.string_length < 1:
            raise UsageError(f"string length must be at least 1, got {self.string_length}: fix --string-length")
        if self.latency_threshold_ms is not None and self.latency_threshold_ms <= 0:
            raise UsageError(f"latency threshold must be positive, got {self.latency_threshold_ms} ms: fix -l")
        if self.metrics_interval_ms < 1:
            raise UsageError(f"metrics interval must be at least 1 ms, got {self.metrics_interval_ms}: fix --metrics-interval")
        if self.export_metrics_port is not None and not 0 < self.export_metrics_port < 65536:
            raise UsageError(f"--export-metrics-port {self.export_metrics_port} is not a port number (1-65535)")
        if self.load_range.end == 0 and self.latency_threshold_ms is None and not self.slas:
            raise UsageError(f"an open-ended {self.range_flag} (end 0) needs -l/--latency-threshold or --sla to stop it")
        # Mistakes fail now, not after the embedded server has started.
        for text in self.slas:
            parse_sla(text)
        if self.request_intervals is not None:
            read_intervals(self.request_intervals)
        if self.request_distribution not in ("constant", "poisson"):
            raise UsageError(f"unknown --request-distribution {self.request_distribution!r}: use constant or poisson")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise UsageError(f"--max-inflight must be at least 1, got {self.max_inflight}")
        if self.seed is not None and self.seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {self.seed}")
        if not self.request_timeout_ms >= 0:
            raise UsageError(f"--request-timeout must be 0 (no deadline) or more ms, got {self.request_timeout_ms:g}")
        if not self.connect_timeout_ms > 0:
            raise UsageError(f"--connect-timeout must be above 0 ms, got {self.connect_timeout_ms:g}")
        self._check_workers()
        if self.binary_search:
            if self.latency_threshold_ms is None and not self.slas:
                raise UsageError("--binary-search needs -l/--latency-threshold or --sla: the bound it searches under")
            if self.load_range.end == 0 or self.load_range.end <= self.load_range.start:
                raise UsageError(f"--binary-search needs {self.range_flag} start:end with end above start, e.g. 1:64")
            if self.request_intervals is not None:
                raise UsageError("--binary-search searches a range: it does not apply to --request-intervals")
        if self.target_throughput is not None and self.target_throughput <= 0:
            raise UsageError(f"--target-throughput must be above 0, got {self.target_throughput:g}")
        if not 0 <= self.headroom_pct < 100:
            raise UsageError(f"--headroom must be from 0% up to (not including) 100%, got {self.headroom_pct:g}%")
        self._check_tls()

    def _check_workers(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.ray_address is not None and self.workers is None:
            raise UsageError("--ray-address runs the load on Ray workers: add --workers N")
        if self.ray_address not in (None, "auto"):
            try:
                split_host_port(self.ray_address, 10001)
            except UsageError:
                shown = redact_url(self.ray_address)
                raise UsageError(f"--ray-address {shown!r} is not a Ray address: give auto, ray://host:10001 or host:6379") from None
        if self.workers is not None and self.export_metrics_port is not None:
            raise UsageError("--export-metrics-port counts requests in this process: it does not apply to --workers")

    def _check_tls(self) -> None:
        if self.ssl_https_verify_peer not in (0, 1):
            raise UsageError(f"--ssl-https-verify-peer must be 0 or 1, got {self.ssl_https_verify_peer}")
        if self.ssl_https_verify_host not in (0, 1, 2):
            raise UsageError(f"--ssl-https-verify-host must be 0, 1 or 2, got {self.ssl_https_verify_host}")
        for flag, kind, convert in (
            ("--ssl-https-client-certificate-type", self.ssl_https_client_certificate_type, "x509"),
            ("--ssl-https-private-key-type", self.ssl_https_private_key_type, "pkey"),
        ):
            if kind == "DER":
                raise UsageError(f"{flag} DER is not supported: convert the file to PEM (openssl {convert} -inform der -in FILE -out FILE.pem)")
            if kind != "PEM":
                raise UsageError(f"{flag} must be PEM or DER, got {kind!r}")
        for flag, path in self._tls_files():
            try:
                Path(path).open("rb").close()
            except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
                raise UsageError(f"{flag} {path}: {(exc.strerror or str(exc)).lower()}: give a readable PEM file") from None
        given = [flag for flag, _ in self._tls_files()]
        https_given = any(f.startswith("--ssl-https") for f in given) or (self.ssl_https_verify_peer, self.ssl_https_verify_host) != (1, 2)
        if self.protocol == "grpc" and _is_https(self.url):
            raise UsageError("-u https://... is HTTPS: for gRPC over TLS give -u host:port and --ssl-grpc-use-ssl")
        if https_given and not _is_https(self.url) and not _is_https(self.metrics_url):
            raise UsageError("--ssl-https-* flags apply to HTTPS: give -u https://host:port (with -i http) or an https --metrics-url")
        if any(f.startswith("--ssl-grpc") for f in given) and not self.ssl_grpc_use_ssl:
            raise UsageError("--ssl-grpc-* files apply to gRPC over TLS: add --ssl-grpc-use-ssl")
        if self.ssl_grpc_use_ssl and self.protocol != "grpc":
            raise UsageError("--ssl-grpc-use-ssl applies to -i grpc: for HTTPS give -u https://host:port")
        if self.ssl_grpc_use_ssl and self.url is None:
            raise UsageError("the embedded server speaks plain gRPC: --ssl-grpc-use-ssl needs -u of a server with TLS")
        if (self.ssl_grpc_private_key_file is None) != (self.ssl_grpc_certificate_chain_file is None):
            raise UsageError("--ssl-grpc-private-key-file and --ssl-grpc-certificate-chain-file go together: give both")
        if self.ssl_https_private_key_file is not None and self.ssl_https_client_certificate_file is None:
            raise UsageError("--ssl-https-private-key-file needs --ssl-https-client-certificate-file: give the certificate too")
        # A bad PEM file fails now, not at the first connection.
        for options in (self.tls, self.https_tls if https_given else None):
            if options is not None:
                options.context("h2")

    def _tls_files(self) -> list[tuple[str, Path]]:
        files = (
            ("--ssl-grpc-root-certifications-file", self.ssl_grpc_root_certifications_file),
            ("--ssl-grpc-private-key-file", self.ssl_grpc_private_key_file),
            ("--ssl-grpc-certificate-chain-file", self.ssl_grpc_certificate_chain_file),
            ("--ssl-https-ca-certificates-file", self.ssl_https_ca_certificates_file),
            ("--ssl-https-client-certificate-file", self.ssl_https_client_certificate_file),
            ("--ssl-https-private-key-file", self.ssl_https_private_key_file),
        )
        return [(flag, path) for flag, path in files if path is not None]

    @property
    def tls(self) -> TlsOptions | None:
        """TLS with the server, or None for plain HTTP / gRPC."""
        if self.protocol == "grpc":
            if not self.ssl_grpc_use_ssl:
                return None
            return TlsOptions(
                ca_file=self.ssl_grpc_root_certifications_file,
                cert_file=self.ssl_grpc_certificate_chain_file,
                key_file=self.ssl_grpc_private_key_file,
            )
        return self.https_tls if _is_https(self.url) else None

    @property
    def https_tls(self) -> TlsOptions:
        """The --ssl-https-* options: for every HTTPS connection, the server's and an https metrics page's."""
        return TlsOptions(
            verify_peer=self.ssl_https_verify_peer == 1,
            verify_host=self.ssl_https_verify_host != 0,
            ca_file=self.ssl_https_ca_certificates_file,
            cert_file=self.ssl_https_client_certificate_file,
            key_file=self.ssl_https_private_key_file,
        )

    @property
    def open_loop(self) -> bool:
        return self.request_rate_range is not None or self.request_intervals is not None

    @property
    def load_range(self) -> Range:
        """The range the levels come from: request rates for open loop, else concurrency."""
        return self.request_rate_range or self.concurrency_range

    @property
    def range_flag(self) -> str:
        return "--request-rate-range" if self.request_rate_range is not None else "--concurrency-range"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, credentials masked (header values, user:password and tokens in URLs)."""
        data = dataclasses.asdict(self)
        data["concurrency_range"] = str(self.concurrency_range)
        data["request_rate_range"] = str(self.request_rate_range) if self.request_rate_range is not None else None
        data["slas"] = list(self.slas)
        data["headers"] = redact_headers(self.headers)
        for key in ("url", "metrics_url", "ray_address"):
            data[key] = redact_url(data[key]) if data[key] is not None else None
        for key in (key for key, value in data.items() if key.startswith("ssl_") and isinstance(value, Path)):
            data[key] = str(data[key])
        for key in ("csv_file", "report_dir", "model_repository", "request_intervals", "junit_file"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        return data


# Options settable from a config file or flags, by their long flag name, and how to read each.
OPTIONS: dict[str, Any] = {
    "model-name": str,
    "model-version": str,
    "batch-size": int,
    "url": str,
    "protocol": str,
    "concurrency-range": str,
    "shape": list,
    "input-data": str,
    "string-length": int,
    "measurement-interval": int,
    "measurement-mode": str,
    "measurement-request-count": int,
    "stability-percentage": float,
    "max-trials": int,
    "percentile": int,
    "latency-threshold": float,
    "filename": str,
    "verbose-csv": bool,
    "header": list,
    "report-dir": str,
    "model-repository": str,
    "collect-metrics": bool,
    "metrics-url": str,
    "metrics-interval": int,
    "export-metrics-port": int,
    "ssl-grpc-use-ssl": bool,
    "ssl-grpc-root-certifications-file": str,
    "ssl-grpc-private-key-file": str,
    "ssl-grpc-certificate-chain-file": str,
    "ssl-https-verify-peer": int,
    "ssl-https-verify-host": int,
    "ssl-https-ca-certificates-file": str,
    "ssl-https-client-certificate-file": str,
    "ssl-https-client-certificate-type": str,
    "ssl-https-private-key-file": str,
    "ssl-https-private-key-type": str,
    "request-rate-range": str,
    "request-distribution": str,
    "request-intervals": str,
    "max-inflight": int,
    "request-timeout": float,
    "connect-timeout": float,
    "workers": int,
    "ray-address": str,
    "seed": int,
    "binary-search": bool,
    "sla": list,
    "require-stable": bool,
    "junit": str,
    "target-throughput": float,
    "headroom": str,
}


class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 reads an unquoted 1:4 as the base-60 number 64: here, as in a flag, it is a range."""

    def resolve(self, kind, value, implicit):
        tag = super().resolve(kind, value, implicit)
        if kind is yaml.ScalarNode and ":" in value and tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            return "tag:yaml.org,2002:str"
        return tag


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML scenario; keys are the long flag names (dashes or underscores)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text: give a YAML file") from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"config file {path} is not valid YAML{where}: fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UsageError(f"config file {path} must be a mapping of option: value, e.g. 'concurrency-range: 1:4'")
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            fix = f"did you mean {close[0]}?" if close else "keys are the long flag names of loadgen run --help"
            raise UsageError(f"config file {path} has unknown key {key!r}: {fix}")
        kind = OPTIONS[name]
        if kind is list and not isinstance(value, list):
            value = [value]
        if kind is list and not all(_is_scalar(item) for item in value):
            raise UsageError(f"config file {path}: {key} must be a value or a list of values, e.g. {key}: [A, B]")
        if kind is bool and not isinstance(value, bool):
            raise UsageError(f"config file {path}: {key} must be true or false, got {value!r}")
        options[name] = value
    return options


def _is_scalar(value: Any) -> bool:
    """Text or a number: what a flag can give (YAML's true/false/yes/no/on/off are bools, not text)."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _as(kind: type, name: str, value: Any) -> Any:
    """A flag's value, or a config file's, as `kind`; a YAML value may be of any type."""
    if kind in (list, bool) or value is None:
        return value
    try:
        if not _is_scalar(value):
            raise ValueError
        if kind is str:
            return str(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    except (ValueError, OverflowError):
        what = {str: "text", int: "a whole number", float: "a finite number"}[kind]
        hint = " (quote it: YAML reads yes, no, on and off as true or false)" if isinstance(value, bool) and kind is str else ""
        raise UsageError(f"--{name} must be {what}, got {value!r}{hint}") from None


def _is_https(url: str | None) -> bool:
    return url is not None and url.lower().startswith("https://")


def _path(options: Mapping[str, Any], name: str) -> Path | None:
    return Path(options[name]) if name in options else None


def build_config(options: Mapping[str, Any]) -> RunConfig:
    """Turn merged options (long flag name → value) into a validated RunConfig."""
    o = {name: _as(OPTIONS[name], name, value) for name, value in options.items() if value is not None}
    windows = WindowPolicy(
        mode=o.get("measurement-mode", WindowPolicy.mode),
        interval_ms=o.get("measurement-interval", WindowPolicy.interval_ms),
        request_count=o.get("measurement-request-count", WindowPolicy.request_count),
        stability_pct=o.get("stability-percentage", WindowPolicy.stability_pct),
        max_trials=o.get("max-trials", WindowPolicy.max_trials),
        percentile=o.get("percentile"),
    )
    for flag in ("metrics-url", "metrics-interval"):
        if flag in o and not o.get("collect-metrics"):
            raise UsageError(f"--{flag} only applies with --collect-metrics: add it, or drop --{flag}")
    loads = [flag for flag in ("concurrency-range", "request-rate-range", "request-intervals") if flag in o]
    if len(loads) > 1:
        raise UsageError(f"{' and '.join('--' + f for f in loads)} are different loads: give only one (flags and --config file together)")
    if "url" in o and "model-name" not in o:
        raise UsageError("-m/--model-name is required with -u: name the model to load test")
    return RunConfig(
        model_name=o.get("model-name", DEFAULT_MODEL),
        model_version=o.get("model-version", ""),
        batch_size=o.get("batch-size", 1),
        url=o.get("url"),
        protocol=o.get("protocol", "http"),
        concurrency_range=parse_range(o.get("concurrency-range", "1"), "--concurrency-range"),
        shapes=dict(parse_shape(s) for s in o.get("shape", [])),
        input_data=o.get("input-data"),
        string_length=o.get("string-length", 128),
        windows=windows,
        latency_threshold_ms=o.get("latency-threshold"),
        csv_file=Path(o["filename"]) if "filename" in o else None,
        verbose_csv=o.get("verbose-csv", False),
        headers=dict(parse_header(h) for h in o.get("header", [])),
        report_dir=Path(o["report-dir"]) if "report-dir" in o else None,
        model_repository=Path(o["model-repository"]) if "model-repository" in o else None,
        collect_metrics=o.get("collect-metrics", False),
        metrics_url=o.get("metrics-url"),
        metrics_interval_ms=o.get("metrics-interval", 1000),
        export_metrics_port=o.get("export-metrics-port"),
        ssl_grpc_use_ssl=o.get("ssl-grpc-use-ssl", False),
        ssl_grpc_root_certifications_file=_path(o, "ssl-grpc-root-certifications-file"),
        ssl_grpc_private_key_file=_path(o, "ssl-grpc-private-key-file"),
        ssl_grpc_certificate_chain_file=_path(o, "ssl-grpc-certificate-chain-file"),
        ssl_https_verify_peer=o.get("ssl-https-verify-peer", 1),
        ssl_https_verify_host=o.get("ssl-https-verify-host", 2),
        ssl_https_ca_certificates_file=_path(o, "ssl-https-ca-certificates-file"),
        ssl_https_client_certificate_file=_path(o, "ssl-https-client-certificate-file"),
        ssl_https_client_certificate_type=o.get("ssl-https-client-certificate-type", "PEM"),
        ssl_https_private_key_file=_path(o, "ssl-https-private-key-file"),
        ssl_https_private_key_type=o.get("ssl-https-private-key-type", "PEM"),
        request_rate_range=parse_range(o["request-rate-range"], "--request-rate-range", whole=False)
        if "request-rate-range" in o
        else None,
        request_distribution=o.get("request-distribution", "constant"),
        request_intervals=Path(o["request-intervals"]) if "request-intervals" in o else None,
        max_inflight=o.get("max-inflight"),
        request_timeout_ms=o.get("request-timeout", RunConfig.request_timeout_ms),
        connect_timeout_ms=o.get("connect-timeout", RunConfig.connect_timeout_ms),
        workers=o.get("workers"),
        ray_address=o.get("ray-address"),
        seed=o.get("seed"),
        binary_search=o.get("binary-search", False),
        slas=tuple(str(s) for s in o.get("sla", [])),
        require_stable=o.get("require-stable", False),
        junit_file=Path(o["junit"]) if "junit" in o else None,
        target_throughput=o.get("target-throughput"),
        headroom_pct=parse_percent(o["headroom"], "--headroom") if "headroom" in o else 0.0,
    )


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """The RunConfig a summary.json recorded (`RunConfig.to_dict()`'s form, credentials masked).

    Not validated again, as a run's options are: the run was, and its files (TLS, --request-intervals)
    need not exist where the summary is read. Options an upgraded summary did not record stay None.
    """
    values: dict[str, Any] = {}
    for option in dataclasses.fields(RunConfig):
        value = data[option.name]
        if value is None:
            pass
        elif option.name == "concurrency_range":
            value = parse_range(value, "--concurrency-range")
        elif option.name == "request_rate_range":
            value = parse_range(value, "--request-rate-range", whole=False)
        elif option.name == "windows":
            value = WindowPolicy(**value)
        elif option.name == "slas":
            value = tuple(value)
        elif option.name == "shapes":
            value = {name: tuple(dims) for name, dims in value.items()}
        elif "Path" in str(option.type):
            value = Path(value)
        values[option.name] = value
    config = object.__new__(RunConfig)  # past __post_init__'s checks
    for name, value in values.items():
        object.__setattr__(config, name, value)
    return config
