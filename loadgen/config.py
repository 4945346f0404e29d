"""A run's configuration, in sections: where requests go (Target), the load's shape (LoadShape),
the windows (loadgen.windows.WindowPolicy), bounds and gates (Gates), what requests carry (Inputs)
and what the run writes (Outputs). Each part of loadgen receives only its own section.

Building a configuration (loadgen.options.build_config) reads no file and opens nothing; `prepare`
does, once, before anything starts: it reads --request-intervals and --schedule-file and checks and
loads the TLS files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError
from loadgen.sequences import DEFAULT_LENGTH, DEFAULT_OPEN_SEQUENCES, DEFAULT_VARIATION_PCT, SequencePlan, parse_id_range
from loadgen.prompts import MAX_PROMPT_TOKENS
from loadgen.redact import redact_headers, redact_url
from loadgen.replay import ReplayPlan, check_duration, check_models, read_schedule, replay_batch_size
from loadgen.schedule.open_loop import read_intervals
from loadgen.sla import Sla
from loadgen.transport.base import split_host_port
from loadgen.transport.tls import TlsOptions
from loadgen.windows import WindowPolicy

DEFAULT_MODEL = "centernet-ensemble"
MAX_LEVELS = 10_000  # a range with more is a typo, and a sweep that would never end
TRACE_LEVELS = ("OFF", "TIMESTAMPS")
DEFAULT_TRACE_RATE = 100  # one request in 100 traced (perf_analyzer's is 1000: too few traces for a tail)
COLLECTOR_HOST = "0.0.0.0"  # --trace-collector-port PORT: every interface, for a Triton on another machine


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


def parse_model_flops(text: str) -> tuple[str, float]:
    """--model-flops `NAME=GFLOPS` → (name, GFLOPs per inference)."""
    name, sep, value = str(text).rpartition("=")
    try:
        gflops = float(value)
    except ValueError:
        gflops = math.nan
    if not sep or not name.strip() or not (math.isfinite(gflops) and gflops > 0):
        raise UsageError(f"--model-flops {text!r} is not NAME=GFLOPS with GFLOPs per inference above 0, e.g. centernet=0.9")
    return name.strip(), gflops


def check_peaks(peak_tflops: float | None, peak_bandwidth_gbs: float | None) -> None:
    """--peak-tflops and --peak-bandwidth-gbs, when given, are above 0."""
    for flag, peak in (("--peak-tflops", peak_tflops), ("--peak-bandwidth-gbs", peak_bandwidth_gbs)):
        if peak is not None and not peak > 0:
            raise UsageError(f"{flag} must be above 0, got {peak:g}: give the device's peak, e.g. {flag} 1.5")


def parse_collector_address(text: Any) -> tuple[str, int]:
    """--trace-collector-port's PORT or HOST:PORT as (host, port)."""
    text = str(text).strip()
    try:
        return split_host_port(text, 4318) if ":" in text else split_host_port(f"{COLLECTOR_HOST}:{text}", 4318)
    except UsageError:
        raise UsageError(f"--trace-collector-port {text!r} is not PORT or HOST:PORT (port 1-65535), e.g. 4318") from None


@dataclass(frozen=True)
class Target:
    """Where requests go and how they travel: the server, the model, the protocol, headers, TLS and
    timeouts. Field names follow perf_analyzer's long flags."""

    model_name: str
    model_version: str
    url: str | None  # None: the embedded server, on model_repository
    protocol: str
    headers: dict[str, str]
    request_timeout_ms: float  # a request without an answer by then is cancelled and counted as a timeout; 0: none
    connect_timeout_ms: float
    model_repository: Path | None  # the embedded server's; None: ./model_repository or the shipped one
    # TLS, with perf_analyzer's --ssl-* flags: HTTPS is -u https://host:port, gRPC over TLS is
    # --ssl-grpc-use-ssl. Files are PEM.
    ssl_grpc_use_ssl: bool
    ssl_grpc_root_certifications_file: Path | None
    ssl_grpc_private_key_file: Path | None
    ssl_grpc_certificate_chain_file: Path | None
    ssl_https_verify_peer: int  # 0: accept any certificate
    ssl_https_verify_host: int  # 0: accept a certificate for another name; 1 is 2, as in curl
    ssl_https_ca_certificates_file: Path | None
    ssl_https_client_certificate_file: Path | None
    ssl_https_client_certificate_type: str
    ssl_https_private_key_file: Path | None
    ssl_https_private_key_type: str
    # --streaming: each request goes over a stream and every response is timed (a decoupled model's;
    # gRPC's ModelStreamInfer, HTTP's generate_stream). token_output: the output whose element count
    # in a response is its tokens; None: tokens not counted (the sweep settles the default, the
    # model's only integer output, once it has read the model).
    streaming: bool = False
    token_output: str | None = None
    # --shared-memory: "none" (tensors travel in the requests), "system" (loadgen.shared_memory) or
    # "cuda" (refused: no GPU support); each output's region size when its shape does not fix it.
    shared_memory: str = "none"
    output_shared_memory_size: int = 102400

    def __post_init__(self) -> None:
        if self.protocol not in ("http", "grpc"):
            raise UsageError(f"unknown protocol {self.protocol!r}: use -i http or -i grpc")
        if self.url is not None:
            split_host_port(self.url, 8000 if self.protocol == "http" else 8001)  # a bad -u fails before a server starts
        if not self.model_name.strip():
            raise UsageError("-m/--model-name is empty: name the model to load test")
        if self.model_version and not (self.model_version.isascii() and self.model_version.isdigit() and int(self.model_version) > 0):
            raise UsageError(f"-x {self.model_version!r} is not a model version: give a whole number from 1 up, or leave -x out for the latest")
        if not self.request_timeout_ms >= 0:
            raise UsageError(f"--request-timeout must be 0 (no deadline) or more ms, got {self.request_timeout_ms:g}")
        if not self.connect_timeout_ms > 0:
            raise UsageError(f"--connect-timeout must be above 0 ms, got {self.connect_timeout_ms:g}")
        if self.token_output is not None and not self.streaming:
            raise UsageError("--token-output names the output that holds a streamed response's tokens: add --streaming, or drop --token-output")
        if self.token_output is not None and not self.token_output.strip():
            raise UsageError("--token-output is empty: name the model's output that holds the tokens, e.g. --token-output output_ids")
        if self.shared_memory not in ("none", "system", "cuda"):
            raise UsageError(f"--shared-memory must be none, system or cuda, got {self.shared_memory!r}")
        if self.output_shared_memory_size < 1:
            raise UsageError(f"--output-shared-memory-size must be at least 1 byte, got {self.output_shared_memory_size}")
        if self.shared_memory != "none" and self.streaming:
            raise UsageError("--shared-memory places a request's one response in a region: it does not apply to --streaming; "
                             "drop one of them")
        self._check_tls()

    def _check_tls(self) -> None:
        """The TLS flags' consistency; their files are read by `prepare`."""
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
        given = [flag for flag, _ in self.tls_files]
        if self.protocol == "grpc" and _is_https(self.url):
            raise UsageError("-u https://... is HTTPS: for gRPC over TLS give -u host:port and --ssl-grpc-use-ssl")
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

    @property
    def tls_files(self) -> list[tuple[str, Path]]:
        """The TLS files given, by their flag."""
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
    def https_options_given(self) -> bool:
        """Whether any --ssl-https-* flag was given (they need an https URL somewhere)."""
        given = any(flag.startswith("--ssl-https") for flag, _ in self.tls_files)
        return given or (self.ssl_https_verify_peer, self.ssl_https_verify_host) != (1, 2)

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
    def connect_timeout_s(self) -> float:
        return self.connect_timeout_ms / 1e3


@dataclass(frozen=True)
class LoadShape:
    """How requests are sent: closed loop over concurrency levels, or open loop at request rates,
    given intervals or a recording's times; from this process or from Ray workers."""

    concurrency_range: Range
    request_rate_range: Range | None  # open loop at these rates, instead of the concurrency range
    request_distribution: str
    request_intervals: Path | None  # open loop with these gaps (µs, one per line, looped)
    max_inflight: int | None
    seed: int | None  # of the Poisson arrivals
    workers: int | None  # the load comes from this many worker processes on Ray; None: this process
    ray_address: str | None  # an existing Ray cluster ("auto", "ray://host:10001"); None: Ray starts locally
    schedule_file: Path | None = None  # open loop replaying this recording (loadgen.replay), one level
    replay_speed: float = 1.0  # the recording's times divided by this
    replay_loop: bool = False  # the recording repeats until the level ends; else the level ends with it
    intervals_us: tuple[int, ...] | None = None  # request_intervals' gaps, once `prepare` has read them
    replay: ReplayPlan | None = None  # schedule_file's requests, once `prepare` has read them
    # A sequence model's load (loadgen.sequences); None: perf_analyzer's default.
    sequence_length: int | None = None
    sequence_length_variation: float | None = None  # percent either way
    sequence_id_range: str | None = None  # START[:END], END excluded
    num_of_sequences: int | None = None  # open loop: sequences at once
    serial_sequences: bool = False  # open loop: one request of a sequence in flight at a time

    def __post_init__(self) -> None:
        self.sequence_plan()  # the sequence options' own checks, before anything starts
        if self.num_of_sequences is not None and self.num_of_sequences < 1:
            raise UsageError(f"--num-of-sequences must be at least 1, got {self.num_of_sequences}")
        if self.request_distribution not in ("constant", "poisson"):
            raise UsageError(f"unknown --request-distribution {self.request_distribution!r}: use constant or poisson")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise UsageError(f"--max-inflight must be at least 1, got {self.max_inflight}")
        if self.seed is not None and self.seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {self.seed}")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if not self.replay_speed > 0:  # finite: loadgen.options reads it so
            raise UsageError(f"--replay-speed must be above 0, got {self.replay_speed:g}: 2 replays the recording twice as fast")
        if self.ray_address is not None and self.workers is None:
            raise UsageError("--ray-address runs the load on Ray workers: add --workers N")
        if self.ray_address not in (None, "auto"):
            try:
                split_host_port(self.ray_address, 10001)
            except UsageError:
                shown = redact_url(self.ray_address)
                raise UsageError(f"--ray-address {shown!r} is not a Ray address: give auto, ray://host:10001 or host:6379") from None

    @property
    def open_loop(self) -> bool:
        return self.request_rate_range is not None or self.single_level

    @property
    def single_level(self) -> bool:
        """Whether the load is one level: given intervals, or a recording."""
        return self.request_intervals is not None or self.schedule_file is not None

    @property
    def sequence_options(self) -> list[str]:
        """The sequence options given, as flags."""
        given = {"sequence-length": self.sequence_length, "sequence-length-variation": self.sequence_length_variation,
                 "sequence-id-range": self.sequence_id_range, "num-of-sequences": self.num_of_sequences,
                 "serial-sequences": self.serial_sequences or None}  # fmt: skip
        return [f"--{name}" for name, value in given.items() if value is not None]

    @property
    def open_sequences(self) -> int:
        """A sequence model's sequences open at once in open loop: --num-of-sequences, else perf_analyzer's 4."""
        return DEFAULT_OPEN_SEQUENCES if self.num_of_sequences is None else self.num_of_sequences

    def sequence_plan(self) -> SequencePlan:
        """The sequence options as a plan, perf_analyzer's defaults for those not given."""
        start, end = parse_id_range(self.sequence_id_range) if self.sequence_id_range is not None else (1, None)
        return SequencePlan(
            DEFAULT_LENGTH if self.sequence_length is None else self.sequence_length,
            DEFAULT_VARIATION_PCT if self.sequence_length_variation is None else self.sequence_length_variation,
            start, end,
        )

    @property
    def load_range(self) -> Range:
        """The range the levels come from: request rates for open loop, else concurrency."""
        return self.request_rate_range or self.concurrency_range

    @property
    def range_flag(self) -> str:
        return "--request-rate-range" if self.request_rate_range is not None else "--concurrency-range"


@dataclass(frozen=True)
class Gates:
    """The bounds a run is judged by, and what it concludes from them."""

    latency_threshold_ms: float | None  # -l: the sweep stops after the first level over it
    goodput_latency_ms: float | None  # goodput counts the successes within it; None: no goodput
    slas: tuple[Sla, ...]
    require_stable: bool  # a level that never stabilized fails the run, as a breached SLA
    binary_search: bool
    target_throughput: float | None
    headroom_pct: float
    # With --streaming, goodput also counts only the requests whose first response came within
    # goodput_ttft_ms, and whose every gap between consecutive responses is within goodput_itl_ms
    # (loadgen.samples.StreamGoodput); None: no such bound.
    goodput_ttft_ms: float | None = None
    goodput_itl_ms: float | None = None

    def __post_init__(self) -> None:
        if self.latency_threshold_ms is not None and self.latency_threshold_ms <= 0:
            raise UsageError(f"latency threshold must be positive, got {self.latency_threshold_ms} ms: fix -l")
        bound = self.goodput_latency_ms
        if bound is not None and not (math.isfinite(bound) and bound > 0):
            raise UsageError(f"--goodput-latency-ms must be a finite number of ms above 0, got {bound:g}: "
                             "give the latency a request must stay within to count, e.g. --goodput-latency-ms 100")
        for flag, streamed in (("--goodput-ttft-ms", self.goodput_ttft_ms), ("--goodput-itl-ms", self.goodput_itl_ms)):
            if streamed is not None and not (math.isfinite(streamed) and streamed > 0):
                raise UsageError(f"{flag} must be a finite number of ms above 0, got {streamed:g}: e.g. {flag} 50")
        if not self.goodput_bounded and any(sla.metric == "goodput" for sla in self.slas):
            raise UsageError("--sla goodput needs --goodput-latency-ms: add the latency a request must stay within to "
                             "count as goodput, e.g. --goodput-latency-ms 100")
        if self.binary_search and self.latency_threshold_ms is None and not self.slas:
            raise UsageError("--binary-search needs -l/--latency-threshold or --sla: the bound it searches under")
        if self.target_throughput is not None and self.target_throughput <= 0:
            raise UsageError(f"--target-throughput must be above 0, got {self.target_throughput:g}")
        if not 0 <= self.headroom_pct < 100:
            raise UsageError(f"--headroom must be from 0% up to (not including) 100%, got {self.headroom_pct:g}%")

    @property
    def bounded(self) -> bool:
        """Whether anything stops an open-ended range: -l or an SLA."""
        return self.latency_threshold_ms is not None or bool(self.slas)

    @property
    def goodput_bounded(self) -> bool:
        """Whether the levels measure goodput: any --goodput-*-ms bound."""
        return any(bound is not None for bound in (self.goodput_latency_ms, self.goodput_ttft_ms, self.goodput_itl_ms))


@dataclass(frozen=True)
class Inputs:
    """What each request carries."""

    batch_size: int | None  # None only before `prepare` with --schedule-file and no -b: the file's, else 1
    shapes: dict[str, tuple[int, ...]]
    input_data: str | None  # zero, random, a perf_analyzer JSON file or a directory; None: random (photographs for image models)
    string_length: int
    # How far a floating-point output may be from its validation_data: |got - expected| <= atol + rtol * |expected|.
    validation_rtol: float
    validation_atol: float
    prompt_tokens: int | None = None  # made-up prompts of this many tokens for a text model (loadgen.prompts)
    max_tokens: int | None = None  # sent in the model's max-tokens input (loadgen.inputs.MAX_TOKENS_INPUTS)

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}: fix -b")
        if self.prompt_tokens is not None and not 1 <= self.prompt_tokens <= MAX_PROMPT_TOKENS:
            raise UsageError(f"--prompt-tokens must be from 1 to {MAX_PROMPT_TOKENS}, got {self.prompt_tokens}")
        if self.prompt_tokens is not None and self.input_data is not None:
            raise UsageError(f"--prompt-tokens makes up the prompts and --input-data {self.input_data} gives the data: give one of them")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.string_length < 1:
            raise UsageError(f"string length must be at least 1, got {self.string_length}: fix --string-length")
        for flag, value in (("--validation-rtol", self.validation_rtol), ("--validation-atol", self.validation_atol)):
            if not value >= 0:  # NaN too
                raise UsageError(f"{flag} must be a number of 0 or more, got {value:g}: fix {flag}")


@dataclass(frozen=True)
class Outputs:
    """What the run writes and serves besides its report folder's fixed files."""

    report_dir: Path | None  # None: reports/<timestamp>-<model>/
    csv_file: Path | None
    verbose_csv: bool
    junit_file: Path | None
    profile_export_file: Path | None  # every request's timestamps, in perf_analyzer's profile export JSON
    collect_metrics: bool
    metrics_url: str | None  # None: the embedded server's, or port 8002 on -u's host
    metrics_interval_ms: int
    export_metrics_port: int | None
    # Triton's tracing (perf_analyzer's --trace-level, --trace-rate): OFF or TIMESTAMPS, and one request in
    # trace_rate traced. Not given, the level is TIMESTAMPS with a rate and OFF without; the rate
    # DEFAULT_TRACE_RATE with tracing on, None with it off (both settled here).
    trace_level: str | None
    trace_rate: int | None
    # (host, port) of the OTLP/HTTP collector loadgen runs for a -u server in OpenTelemetry mode; it
    # turns tracing on, as a rate does.
    trace_collector: tuple[str, int] | None
    # The roofline (loadgen.roofline_run): composing models' GFLOPs per inference by name (--model-flops,
    # over their ONNX files), the roof's figures (--peak-tflops, --peak-bandwidth-gbs, over the measured
    # or datasheet ones), and no roofline at all (--no-roofline).
    model_flops: dict[str, float] = field(default_factory=dict)
    peak_tflops: float | None = None
    peak_bandwidth_gbs: float | None = None
    no_roofline: bool = False

    def __post_init__(self) -> None:
        check_peaks(self.peak_tflops, self.peak_bandwidth_gbs)
        if self.metrics_interval_ms < 1:
            raise UsageError(f"metrics interval must be at least 1 ms, got {self.metrics_interval_ms}: fix --metrics-interval")
        if self.export_metrics_port is not None and not 0 < self.export_metrics_port < 65536:
            raise UsageError(f"--export-metrics-port {self.export_metrics_port} is not a port number (1-65535)")
        level, rate = self.trace_level, self.trace_rate
        if rate is not None and rate < 1:
            raise UsageError(f"--trace-rate must be at least 1 (one request in N is traced), got {rate}")
        if level == "OFF" and rate is not None:
            raise UsageError("--trace-rate samples Triton's traces: drop --trace-level OFF (a rate turns tracing on)")
        if level == "OFF" and self.trace_collector is not None:
            raise UsageError("--trace-collector-port receives Triton's traces: drop --trace-level OFF (the port turns tracing on)")
        if level is None:
            level = "TIMESTAMPS" if rate is not None or self.trace_collector is not None else "OFF"
        if level == "TIMESTAMPS" and rate is None:
            rate = DEFAULT_TRACE_RATE
        object.__setattr__(self, "trace_level", level)  # frozen: the defaults settled once, here
        object.__setattr__(self, "trace_rate", rate)

    @property
    def tracing(self) -> bool:
        return self.trace_level == "TIMESTAMPS"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, by section. The checks that span sections are here."""

    target: Target
    load: LoadShape
    windows: WindowPolicy
    gates: Gates
    inputs: Inputs
    outputs: Outputs

    def __post_init__(self) -> None:
        load, gates, target = self.load, self.gates, self.target
        if load.load_range.end == 0 and not gates.bounded:
            raise UsageError(f"an open-ended {load.range_flag} (end 0) needs -l/--latency-threshold or --sla to stop it")
        if gates.binary_search:
            if load.single_level:
                flag = "--request-intervals" if load.request_intervals is not None else "--schedule-file"
                raise UsageError(f"--binary-search searches a range: it does not apply to {flag}")
            if load.load_range.end == 0 or load.load_range.end <= load.load_range.start:
                raise UsageError(f"--binary-search needs {load.range_flag} start:end with end above start, e.g. 1:64")
        if load.workers is not None and self.outputs.export_metrics_port is not None:
            raise UsageError("--export-metrics-port counts requests in this process: it does not apply to --workers")
        if load.workers is not None and self.outputs.tracing:
            raise UsageError("tracing (--trace-rate, --trace-level) joins each trace to this process's record of its request: "
                             "it does not apply to --workers")
        streamed_bounds = [flag for flag, bound in (("--goodput-ttft-ms", gates.goodput_ttft_ms), ("--goodput-itl-ms", gates.goodput_itl_ms))
                           if bound is not None]  # fmt: skip
        if streamed_bounds and not target.streaming:
            verb = "bounds" if len(streamed_bounds) == 1 else "bound"
            raise UsageError(f"{' and '.join(streamed_bounds)} {verb} the responses of streamed requests: add --streaming, "
                             "or give --goodput-latency-ms")
        if self.outputs.trace_collector is not None and target.url is None:
            raise UsageError("--trace-collector-port is for a server given with -u: the embedded server's traces are read "
                             "from its trace file, so drop --trace-collector-port")
        if target.https_options_given and not _is_https(target.url) and not _is_https(self.outputs.metrics_url):
            raise UsageError("--ssl-https-* flags apply to HTTPS: give -u https://host:port (with -i http) or an https --metrics-url")

    def to_dict(self) -> dict[str, Any]:
        """summary.json's `config`: every option's value by its field name, flat (the windows
        nested), credentials masked (header values, user:password and tokens in URLs)."""
        data: dict[str, Any] = {}
        for section in (self.target, self.load, self.gates, self.inputs, self.outputs):
            data.update({f.name: getattr(section, f.name) for f in dataclasses.fields(section)})
        del data["intervals_us"], data["replay"]  # the files' own contents
        collector = self.outputs.trace_collector
        data["trace_collector"] = f"{collector[0]}:{collector[1]}" if collector is not None else None
        data["windows"] = dataclasses.asdict(self.windows)
        data["concurrency_range"] = str(self.load.concurrency_range)
        data["request_rate_range"] = str(self.load.request_rate_range) if self.load.request_rate_range is not None else None
        data["slas"] = [sla.expression for sla in self.gates.slas]
        data["headers"] = redact_headers(self.target.headers)
        for key in ("url", "metrics_url", "ray_address"):
            data[key] = redact_url(data[key]) if data[key] is not None else None
        for key, value in list(data.items()):
            if isinstance(value, Path):
                data[key] = str(value)
        data["shapes"] = {k: list(v) for k, v in self.inputs.shapes.items()}
        return data


def _is_https(url: str | None) -> bool:
    return url is not None and url.lower().startswith("https://")


def prepare(config: RunConfig) -> RunConfig:
    """The one step that reads files: --request-intervals (its gaps carried in `load.intervals_us`),
    --schedule-file (its plan in `load.replay`, checked against the run's model, its batch size the
    run's) and the TLS files (checked, and each TLS context built, which the transports then reuse).
    Runs before the embedded server starts, so that a mistake fails at once."""
    target = config.target
    for flag, path in target.tls_files:
        try:
            Path(path).open("rb").close()
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            raise UsageError(f"{flag} {path}: {(exc.strerror or str(exc)).lower()}: give a readable PEM file") from None
    # A bad PEM file fails now, not at the first connection.
    for options, alpn in ((target.tls, "h2" if target.protocol == "grpc" else "http/1.1"),
                          (target.https_tls if target.https_options_given else None, "http/1.1")):  # fmt: skip
        if options is not None:
            options.context(alpn)
    load = config.load
    if target.shared_memory != "none":
        from loadgen.shared_memory import check_usable

        check_usable(target.shared_memory, target.url, load.workers, load.ray_address)
    if load.request_intervals is not None and load.intervals_us is None:
        config = replace(config, load=replace(load, intervals_us=tuple(read_intervals(load.request_intervals))))
    if load.schedule_file is not None and load.replay is None:
        plan = read_schedule(load.schedule_file)
        check_duration(plan, load.replay_speed)
        check_models(plan, (target.model_name,))
        batch_size = replay_batch_size(plan, plan.for_model(target.model_name, only_model=True), config.inputs.batch_size)
        config = replace(config, load=replace(load, replay=plan), inputs=replace(config.inputs, batch_size=batch_size))
    return config
