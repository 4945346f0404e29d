"""Every `run` option, declared once: its flag, type, default, help and section. The command line's
flags, the scenario file's keys and the typed configuration (loadgen.config) all come from here.

Adding an option is one `Option(...)` in OPTIONS and the field it sets in its section's dataclass.
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loadgen.config import (
    DEFAULT_MODEL,
    DEFAULT_TRACE_RATE,
    TRACE_LEVELS,
    Gates,
    Inputs,
    LoadShape,
    Outputs,
    RunConfig,
    Target,
    parse_header,
    parse_collector_address,
    parse_model_flops,
    parse_percent,
    parse_range,
    parse_shape,
)
from loadgen.errors import UsageError
from loadgen.sla import Sla, parse_sla
from loadgen.transport.base import CONNECT_TIMEOUT_S
from loadgen.windows import COUNT_WINDOWS, STREAMING_REQUEST_COUNT, STREAMING_STALL_MS, TIME_WINDOWS, WindowPolicy

# The sections of RunConfig, by the name an Option gives.
SECTIONS: dict[str, type] = {
    "target": Target, "load": LoadShape, "windows": WindowPolicy, "gates": Gates, "inputs": Inputs, "outputs": Outputs,
}  # fmt: skip


@dataclass(frozen=True)
class Option:
    """One `run` option. `kind` is how a flag or a YAML value is read (str, int, float; bool for a
    switch; list for a repeatable flag); `parse` turns that into the field's value, after `default`
    stands in for an option not given (a default of None: the field's value is None)."""

    name: str  # the long flag without its dashes; also the scenario file's key
    section: str  # a key of SECTIONS
    field: str  # the section's field it sets
    kind: type
    help: str
    default: Any = None
    short: str | None = None
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    parse: Callable[[Any], Any] | None = None
    shown_default: str | None = None  # how --help shows the default, when not the value itself

    @property
    def flags(self) -> list[str]:
        return [flag for flag in (self.short, f"--{self.name}") if flag]

    @property
    def help_text(self) -> str:
        shown = self.shown_default if self.shown_default is not None else self.default
        if shown is None or self.kind is bool:
            return self.help.replace("%", "%%")
        return f"{self.help} (default {shown})".replace("%", "%%")


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _headers(values: list[str] | None) -> dict[str, str]:
    return dict(parse_header(text) for text in values or [])


def _shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    return dict(parse_shape(text) for text in values or [])


def _model_flops(values: list[str] | None) -> dict[str, float]:
    return dict(parse_model_flops(text) for text in values or [])


def _slas(values: list[str] | None) -> tuple:
    return tuple(parse_sla(str(text)) for text in values or [])


def _concurrency(text: Any) -> Any:
    return parse_range(text, "--concurrency-range")


def _rates(text: Any) -> Any:
    return None if text is None else parse_range(text, "--request-rate-range", whole=False)


def _collector(text: Any) -> tuple[str, int] | None:
    return None if text is None else parse_collector_address(text)


def _headroom(text: Any) -> float:
    return parse_percent(text, "--headroom")


def _tls_kind(flag: str) -> Option:
    return Option(flag, "target", flag.replace("-", "_"), str, "HTTPS: the format of the file; PEM only", "PEM",
                  choices=("PEM", "DER"))  # fmt: skip


OPTIONS: tuple[Option, ...] = (
    # Where the requests go, and how they travel.
    Option("model-name", "target", "model_name", str, "model to measure", DEFAULT_MODEL, short="-m",
           shown_default=f"{DEFAULT_MODEL} on the embedded server; required with -u"),
    Option("model-version", "target", "model_version", str, "model version", "", short="-x", shown_default="latest"),
    Option("url", "target", "url", str, "host:port (https://host:port for HTTPS) of a running server; without it "
           "loadgen starts the embedded server", short="-u"),
    Option("protocol", "target", "protocol", str, "protocol", "http", short="-i", choices=("http", "grpc")),
    Option("streaming", "target", "streaming", bool, "stream each request and time every response, as a decoupled "
           "model needs (gRPC ModelStreamInfer; with -i http Triton's generate_stream): time to first response, "
           "inter-response latency, responses per request, tokens/s", False),
    Option("token-output", "target", "token_output", str, "with --streaming: the output whose element count in a "
           "response is its tokens, for tokens/s", metavar="NAME", shown_default="the model's only integer output"),
    Option("shared-memory", "target", "shared_memory", str, "pass tensors through shared memory registered with a "
           "server on this host (system; cuda needs an NVIDIA GPU) instead of in the requests", "none",
           choices=("none", "system", "cuda")),
    Option("output-shared-memory-size", "target", "output_shared_memory_size", int, "with --shared-memory: the region "
           "bytes of each output whose size its shape does not fix (strings, variable dims)", 102400, metavar="BYTES"),
    Option("header", "target", "headers", list, "HTTP header / gRPC metadata on every request (repeatable)", short="-H",
           metavar="Header:Value", parse=_headers),
    Option("request-timeout", "target", "request_timeout_ms", float, "cancel a request unanswered after MS milliseconds "
           "and count it as a timeout error; 0: no deadline", 60_000.0, metavar="MS", shown_default="60000"),
    Option("connect-timeout", "target", "connect_timeout_ms", float, "give up opening a connection to the server after "
           "MS milliseconds", CONNECT_TIMEOUT_S * 1e3, metavar="MS", shown_default=f"{CONNECT_TIMEOUT_S * 1e3:g}"),
    Option("model-repository", "target", "model_repository", str, "repository for the embedded server", metavar="DIR",
           parse=_path, shown_default="./model_repository"),
    # TLS, as perf_analyzer takes it: HTTPS by -u https://host:port, gRPC over TLS by --ssl-grpc-use-ssl.
    Option("ssl-grpc-use-ssl", "target", "ssl_grpc_use_ssl", bool, "gRPC over TLS", False),
    Option("ssl-grpc-root-certifications-file", "target", "ssl_grpc_root_certifications_file", str,
           "gRPC: CA certificates to verify the server with", metavar="FILE.pem", parse=_path, shown_default="the system's"),
    Option("ssl-grpc-private-key-file", "target", "ssl_grpc_private_key_file", str,
           "gRPC: the client's private key (mutual TLS)", metavar="FILE.pem", parse=_path),
    Option("ssl-grpc-certificate-chain-file", "target", "ssl_grpc_certificate_chain_file", str,
           "gRPC: the client's certificate chain (mutual TLS)", metavar="FILE.pem", parse=_path),
    Option("ssl-https-verify-peer", "target", "ssl_https_verify_peer", int,
           "HTTPS: 1 verifies the server's certificate, 0 accepts any", 1, choices=(0, 1)),
    Option("ssl-https-verify-host", "target", "ssl_https_verify_host", int,
           "HTTPS: 1 or 2 checks the certificate names the host, 0 does not", 2, choices=(0, 1, 2)),
    Option("ssl-https-ca-certificates-file", "target", "ssl_https_ca_certificates_file", str,
           "HTTPS: CA bundle to verify the server with", metavar="FILE.pem", parse=_path, shown_default="the system's"),
    Option("ssl-https-client-certificate-file", "target", "ssl_https_client_certificate_file", str,
           "HTTPS: the client certificate (mutual TLS)", metavar="FILE.pem", parse=_path),
    _tls_kind("ssl-https-client-certificate-type"),
    Option("ssl-https-private-key-file", "target", "ssl_https_private_key_file", str,
           "HTTPS: the client certificate's private key", metavar="FILE.pem", parse=_path),
    _tls_kind("ssl-https-private-key-type"),
    # The shape of the load.
    Option("concurrency-range", "load", "concurrency_range", str, "concurrency levels; END 0 = until -l is exceeded",
           "1", metavar="START:END:STEP", parse=_concurrency),
    Option("request-rate-range", "load", "request_rate_range", str,
           "open loop: request rates per second, instead of concurrency", metavar="START:END:STEP", parse=_rates),
    Option("request-distribution", "load", "request_distribution", str, "open-loop arrivals", "constant",
           choices=("constant", "poisson")),
    Option("request-intervals", "load", "request_intervals", str, "open loop: gaps in microseconds, one per line, looped",
           metavar="FILE", parse=_path),
    Option("schedule-file", "load", "schedule_file", str, "open loop: replay a recording, JSON lines of "
           "{\"offset_ms\": .., \"model\": .., \"input\": .., \"batch_size\": ..} (one level)", metavar="FILE", parse=_path),
    Option("replay-speed", "load", "replay_speed", float, "with --schedule-file: play the recording X times as fast",
           1.0, metavar="X", shown_default="1"),
    Option("replay-loop", "load", "replay_loop", bool, "with --schedule-file: repeat the recording until the level "
           "ends, instead of ending the level with it", False),
    Option("max-inflight", "load", "max_inflight", int, "open loop: at most N requests out; later ones wait and are "
           "counted", metavar="N"),
    Option("seed", "load", "seed", int, "seed of the Poisson arrivals", metavar="N", shown_default="a fresh one each run"),
    Option("workers", "load", "workers", int, "send the load from N worker processes on Ray (pip install "
           "'loadgen[ray]'); each level is split among them", metavar="N", shown_default="this process"),
    Option("ray-address", "load", "ray_address", str, "with --workers: an existing Ray cluster (auto, ray://host:10001)",
           metavar="ADDRESS", shown_default="start Ray here"),
    # Sequence models (sequence_batching), driven as perf_analyzer drives them.
    Option("sequence-length", "load", "sequence_length", int, "sequence model: requests per sequence, varied by "
           "--sequence-length-variation (ignored with --input-data streams: a stream's steps)", metavar="N", shown_default="20"),
    Option("sequence-length-variation", "load", "sequence_length_variation", float, "sequence model: each sequence's "
           "length within PCT % of --sequence-length either way (seeded by --seed)", metavar="PCT", shown_default="20"),
    Option("sequence-id-range", "load", "sequence_id_range", str, "sequence model: correlation ids from START to END "
           "(excluded)", metavar="START[:END]", shown_default="1, unbounded"),
    Option("num-of-sequences", "load", "num_of_sequences", int, "sequence model, open loop: sequences at once, each "
           "request given to one of them", metavar="N", shown_default="4"),
    Option("serial-sequences", "load", "serial_sequences", bool, "sequence model, open loop: one request of a "
           "sequence in flight at a time (a request due while all have one waits for a free one)", False),
    # Measurement windows and stability.
    Option("measurement-interval", "windows", "interval_ms", int, "time window length in ms; in count windows, how "
           f"long one waits without a completed request ({STREAMING_STALL_MS} in --streaming's)", WindowPolicy.interval_ms,
           short="-p", metavar="MS"),
    Option("measurement-mode", "windows", "mode", str, "window kind", WindowPolicy.mode,
           choices=("time_windows", "count_windows"),
           shown_default=f"{WindowPolicy.mode}; {COUNT_WINDOWS} with --streaming, unless -p is given"),
    Option("measurement-request-count", "windows", "request_count", int, "requests per count window",
           WindowPolicy.request_count, metavar="N",
           shown_default=f"{WindowPolicy.request_count}; {STREAMING_REQUEST_COUNT} with --streaming"),
    Option("stability-percentage", "windows", "stability_pct", float, "allowed spread of the last 3 windows",
           WindowPolicy.stability_pct, short="-s", metavar="PCT", shown_default=f"{WindowPolicy.stability_pct:g}"),
    Option("max-trials", "windows", "max_trials", int, "most windows per level", WindowPolicy.max_trials, short="-r",
           metavar="N"),
    Option("percentile", "windows", "percentile", int,
           "stabilize and threshold on this latency percentile, not the average", metavar="P"),
    # Bounds, gates and what the run concludes.
    Option("latency-threshold", "gates", "latency_threshold_ms", float, "stop the sweep when latency exceeds this",
           short="-l", metavar="MS"),
    Option("goodput-latency-ms", "gates", "goodput_latency_ms", float, "each level also reports goodput: infer/sec of "
           "the successful requests whose latency is within MS (the SLA metric goodput)", metavar="MS"),
    Option("goodput-ttft-ms", "gates", "goodput_ttft_ms", float, "with --streaming: goodput counts only the requests "
           "whose first response came within MS", metavar="MS"),
    Option("goodput-itl-ms", "gates", "goodput_itl_ms", float, "with --streaming: goodput counts only the requests "
           "whose every gap between consecutive responses is within MS", metavar="MS"),
    Option("sla", "gates", "slas", list, "a bound every level must meet, e.g. p99_ms<50 (repeatable; exit 1 if "
           "breached)", metavar="EXPR", parse=_slas),
    Option("require-stable", "gates", "require_stable", bool,
           "fail the run (exit 1, as a breached SLA) when a level never stabilizes", False),
    Option("binary-search", "gates", "binary_search", bool, "bisect the range for the highest level within -l and --sla",
           False),
    Option("target-throughput", "gates", "target_throughput", float, "capacity plan: servers needed for R infer/sec",
           metavar="R"),
    Option("headroom", "gates", "headroom_pct", str, "capacity plan: spare capacity to keep on each server", "0%",
           metavar="PCT", parse=_headroom),
    # What each request carries.
    Option("batch-size", "inputs", "batch_size", int, "batch size of each request", 1, short="-b",
           shown_default="1, or --schedule-file's batch_size"),
    Option("shape", "inputs", "shapes", list, "shape of a variable-shape input (repeatable)", metavar="NAME:D1,D2",
           parse=_shapes),
    Option("input-data", "inputs", "input_data", str, "request data: perf_analyzer's forms, or a text model's prompts "
           "(.txt one a line, .jsonl {\"text\": ...} a line)", metavar="zero|random|FILE.json|DIR|PROMPTS.txt|PROMPTS.jsonl",
           shown_default="random, photographs for image models"),
    Option("prompt-tokens", "inputs", "prompt_tokens", int, "a text model's prompts made up of N tokens each (of the "
           "shipped tokenizer), the same every run", metavar="N"),
    Option("max-tokens", "inputs", "max_tokens", int, "tokens to generate: N in the model's input named max_tokens, "
           "max_new_tokens or request_output_len", metavar="N", shown_default="the model's"),
    Option("string-length", "inputs", "string_length", int, "length of generated BYTES elements", 128),
    Option("validation-rtol", "inputs", "validation_rtol", float, "validation_data: relative tolerance of floating-point "
           "outputs (|got - expected| <= atol + rtol * |expected|)", 1e-5, metavar="R"),
    Option("validation-atol", "inputs", "validation_atol", float, "validation_data: absolute tolerance of "
           "floating-point outputs", 1e-6, metavar="A"),
    # What the run writes and serves.
    Option("report-dir", "outputs", "report_dir", str, "report folder", metavar="DIR", parse=_path,
           shown_default="reports/<timestamp>-<model>/"),
    Option("filename", "outputs", "csv_file", str, "also write perf_analyzer's CSV here", short="-f",
           metavar="FILE.csv", parse=_path),
    Option("verbose-csv", "outputs", "verbose_csv", bool, "add perf_analyzer's verbose CSV columns", False),
    Option("junit", "outputs", "junit_file", str, "write the SLA verdicts as JUnit XML for CI", metavar="FILE.xml",
           parse=_path),
    Option("profile-export-file", "outputs", "profile_export_file", str, "write every request's timestamps here in "
           "perf_analyzer's profile export JSON, streamed as the run goes", metavar="FILE.json", parse=_path),
    Option("collect-metrics", "outputs", "collect_metrics", bool,
           "scrape the server's Prometheus metrics (GPU, CPU, per model) during each level", False),
    Option("metrics-url", "outputs", "metrics_url", str, "metrics page", metavar="URL",
           shown_default="the server's metrics port, host:8002/metrics"),
    Option("metrics-interval", "outputs", "metrics_interval_ms", int, "time between scrapes", 1000, metavar="MS"),
    Option("export-metrics-port", "outputs", "export_metrics_port", int,
           "serve loadgen's own live metrics for Prometheus on this port", metavar="N"),
    Option("trace-level", "outputs", "trace_level", str, "Triton's tracing: TIMESTAMPS gives each level per-stage "
           "latency percentiles and the tail's attribution (embedded server)", choices=TRACE_LEVELS,
           shown_default="OFF, TIMESTAMPS with --trace-rate"),
    Option("trace-rate", "outputs", "trace_rate", int, "trace one request in N (turns tracing on)", metavar="N",
           shown_default=f"{DEFAULT_TRACE_RATE} with --trace-level TIMESTAMPS"),
    Option("trace-collector-port", "outputs", "trace_collector", str, "a server given with -u in OpenTelemetry mode: "
           "receive its traces (OTLP/HTTP, POST /v1/traces) on this port, on every interface or HOST's, and give the "
           "levels their per-stage figures; turns tracing on. It takes any POST: no credentials",
           metavar="[HOST:]PORT", parse=_collector, shown_default="off; HOST 0.0.0.0"),
    Option("model-flops", "outputs", "model_flops", list, "the roofline: a composing model's GFLOPs per inference "
           "(repeatable), over what its ONNX file counts", metavar="NAME=GFLOPS", parse=_model_flops),
    Option("peak-tflops", "outputs", "peak_tflops", float, "the roofline: the server device's peak TFLOP/s, over "
           "the measured (CPU here) or datasheet (GPU) one; needed for a CPU server on another machine", metavar="TFLOPS",
           shown_default="measured on this machine, or the GPU's datasheet"),
    Option("peak-bandwidth-gbs", "outputs", "peak_bandwidth_gbs", float, "the roofline: the server device's memory "
           "bandwidth in GB/s, as --peak-tflops", metavar="GBS", shown_default="measured, or the GPU's datasheet"),
    Option("no-roofline", "outputs", "no_roofline", bool, "skip the roofline (no direct timing or roof after the sweep)",
           False),
)  # fmt: skip
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option as a flag. A flag's own default is None ("not given"), so that a scenario file
    can supply the value; the declared default applies in build_config."""
    for option in OPTIONS:
        add_argument(parser, option)


def add_argument(parser: argparse.ArgumentParser, option: Option) -> None:
    """`option` as a flag (another command that takes a run option, such as profile-model's roof, adds it so)."""
    if option.kind is bool:
        parser.add_argument(*option.flags, dest=option.name, action="store_const", const=True, help=option.help_text)
    elif option.kind is list:
        parser.add_argument(*option.flags, dest=option.name, action="append", metavar=option.metavar, help=option.help_text)
    else:
        parser.add_argument(*option.flags, dest=option.name, type=option.kind, metavar=option.metavar,
                            choices=option.choices, help=option.help_text)  # fmt: skip


class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 reads an unquoted 1:4 as the base-60 number 64: here, as in a flag, it is a range."""

    def resolve(self, kind, value, implicit):
        tag = super().resolve(kind, value, implicit)
        if kind is yaml.ScalarNode and ":" in value and tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            return "tag:yaml.org,2002:str"
        return tag


MODELS_KEY = "models"  # a scenario's list of models driven at once (loadgen.mix)


@dataclass(frozen=True)
class Scenario:
    """A YAML scenario: its top-level options and, for several models at once, each model's own."""

    options: dict[str, Any]
    models: tuple[dict[str, Any], ...] | None  # None: one model, the top-level options'


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML scenario of one model; keys are the long flag names (dashes or underscores)."""
    scenario = read_scenario(path)
    if scenario.models is not None:
        raise UsageError(f"config file {path} lists {MODELS_KEY}: several models at once are for loadgen run; "
                         "tune one model's scenario")
    return scenario.options


def read_scenario(path: Path) -> Scenario:
    """Read a YAML scenario: options by their long flag names (dashes or underscores), and perhaps
    a `models:` list of mappings of the same keys, one per model driven at once."""
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
        return Scenario({}, None)
    if not isinstance(data, Mapping):
        raise UsageError(f"config file {path} must be a mapping of option: value, e.g. 'concurrency-range: 1:4'")
    data = dict(data)
    items = data.pop(MODELS_KEY, None)
    if items is None:
        return Scenario(_file_options(path, data), None)
    if not isinstance(items, list) or not items or not all(isinstance(item, Mapping) for item in items):
        raise UsageError(f"config file {path}: {MODELS_KEY} must be a list of mappings, one per model, "
                         "e.g. models: [{model-name: a}, {model-name: b}]")
    models = tuple(_file_options(path, item, f"{MODELS_KEY}[{index}]") for index, item in enumerate(items))
    return Scenario(_file_options(path, data), models)


def _file_options(path: Path, data: Mapping, where: str = "") -> dict[str, Any]:
    """A scenario mapping's options by long flag name, each key known and each value of its kind's shape."""
    at = f" {where}" if where else ""
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        if name not in BY_NAME:
            close = difflib.get_close_matches(name, BY_NAME, n=1)
            fix = f"did you mean {close[0]}?" if close else "keys are the long flag names of loadgen run --help"
            raise UsageError(f"config file {path}{at} has unknown key {key!r}: {fix}")
        kind = BY_NAME[name].kind
        if kind is list and not isinstance(value, list):
            value = [value]
        if kind is list and not all(_is_scalar(item) for item in value):
            raise UsageError(f"config file {path}{at}: {key} must be a value or a list of values, e.g. {key}: [A, B]")
        if kind is bool and not isinstance(value, bool):
            raise UsageError(f"config file {path}{at}: {key} must be true or false, got {value!r}")
        options[name] = value
    return options


def _is_scalar(value: Any) -> bool:
    """Text or a number: what a flag can give (YAML's true/false/yes/no/on/off are bools, not text)."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _as(option: Option, value: Any) -> Any:
    """A flag's value, or a config file's, as the option's kind; a YAML value may be of any type."""
    kind, name = option.kind, option.name
    if kind in (list, bool) or value is None:
        return value
    try:
        if not _is_scalar(value):
            raise ValueError
        if kind is str:
            text = str(value)
        elif kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            text = int(value)
        else:
            text = float(value)
            if not math.isfinite(text):
                raise ValueError
    except (ValueError, OverflowError):
        what = {str: "text", int: "a whole number", float: "a finite number"}[kind]
        hint = " (quote it: YAML reads yes, no, on and off as true or false)" if isinstance(value, bool) and kind is str else ""
        raise UsageError(f"--{name} must be {what}, got {value!r}{hint}") from None
    if option.choices is not None and text not in option.choices:
        allowed = " or ".join(str(choice) for choice in option.choices)
        raise UsageError(f"--{name} must be {allowed}, got {text!r}")
    return text


def build_config(given: Mapping[str, Any]) -> RunConfig:
    """Merged options (long flag name → value, from flags and a scenario file) as a validated RunConfig.

    No file is read here: `loadgen.config.prepare` does that, once, before anything starts.
    """
    values = {name: _as(BY_NAME[name], value) for name, value in given.items() if value is not None}
    for name in ("metrics-url", "metrics-interval"):
        if name in values and not values.get("collect-metrics"):
            raise UsageError(f"--{name} only applies with --collect-metrics: add it, or drop --{name}")
    for name in ("replay-speed", "replay-loop"):
        if name in values and "schedule-file" not in values:
            raise UsageError(f"--{name} only applies with --schedule-file: add it, or drop --{name}")
    loads = [name for name in ("concurrency-range", "request-rate-range", "request-intervals", "schedule-file") if name in values]
    if len(loads) > 1:
        raise UsageError(f"{' and '.join('--' + name for name in loads)} are different loads: give only one (flags and --config file together)")
    if "url" in values and "model-name" not in values:
        raise UsageError("-m/--model-name is required with -u: name the model to load test")
    defaults = _defaults(values)
    fields: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for option in OPTIONS:
        value = values.get(option.name, defaults[option.name])
        fields[option.section][option.field] = option.parse(value) if option.parse is not None else value
    return RunConfig(**{section: SECTIONS[section](**kwargs) for section, kwargs in fields.items()})


def _defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """Each option's default. With --streaming, the windows' are count windows (loadgen.windows,
    STREAMING_*); every windows option given still wins, and a -p alone keeps time windows of that length.
    With --schedule-file, the batch size is left to `loadgen.config.prepare`: the file's, else 1."""
    defaults = {option.name: option.default for option in OPTIONS}
    if "schedule-file" in values:
        defaults["batch-size"] = None
    if values.get("streaming"):
        mode = values.get("measurement-mode", TIME_WINDOWS if "measurement-interval" in values else COUNT_WINDOWS)
        defaults["measurement-mode"] = mode
        defaults["measurement-request-count"] = STREAMING_REQUEST_COUNT
        if mode == COUNT_WINDOWS:
            defaults["measurement-interval"] = STREAMING_STALL_MS
    return defaults


def config_from_record(data: Mapping[str, Any]) -> RunConfig:
    """The RunConfig a summary.json recorded (RunConfig.to_dict(), or an upgraded older one).

    Each field is its recorded value, typed back (ranges, paths, SLA expressions, shapes), and None
    where the record has none (an older version did not have the option). Not checked again as a
    run's options are: the run was, its files need not exist where the summary is read, and its
    credentials are masked."""
    windows = data.get("windows") or {}
    fields: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for option in OPTIONS:
        recorded = windows.get(option.field) if option.section == "windows" else data.get(option.field)
        fields[option.section][option.field] = None if recorded is None else _from_record(option, recorded)
    fields["load"].update(intervals_us=None, replay=None)  # the files' contents are not recorded
    return _unchecked(RunConfig, **{section: _unchecked(SECTIONS[section], **kwargs) for section, kwargs in fields.items()})


def _from_record(option: Option, recorded: Any) -> Any:
    if option.field == "headers":  # recorded as a mapping, values masked
        return dict(recorded)
    if option.field == "shapes":
        return {name: tuple(dims) for name, dims in recorded.items()}
    if option.field == "model_flops":  # recorded as a mapping
        return dict(recorded)
    if option.field == "slas":
        return tuple(_recorded_sla(str(text)) for text in recorded)
    if option.field == "headroom_pct":
        return float(recorded)
    if option.parse is not None:
        return option.parse(recorded)
    return recorded


def _recorded_sla(text: str) -> Sla:
    """An SLA as a run recorded it; one an older loadgen took that this one does not keeps its text."""
    try:
        return parse_sla(text)
    except UsageError:
        return Sla(expression=text, metric=text, op="", threshold=math.nan)


def _unchecked(cls: type, **values: Any) -> Any:
    """A frozen dataclass with these values, past its __post_init__ checks (a record, not a request)."""
    made = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(made, name, value)
    return made
