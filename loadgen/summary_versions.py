"""Older summary.json files brought up to the current schema (docs/summary.md, "Reading older versions").

`loadgen report` and `loadgen compare` read every earlier version: one step per version fills what
the next version added from what the older file recorded, or with null where it recorded nothing
to fill it from (never a made-up 0). Steps are chained from the file's version to the current one.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

from loadgen.errors import UsageError
from loadgen.measurement import CountCheck, latency_breakdown_us
from loadgen.result import SCHEMA_VERSION, failures_dict
from loadgen.windows import STABLE_WINDOW_COUNT
from loadgen.stats import REPORTED_PERCENTILES, group_errors

Summary = dict[str, Any]

# Versions 1 and 2 kept a level's 5 most frequent error messages only; the errors beyond them are
# counted under this message, whose kind is "other".
UNRECORDED_MESSAGES = "other: messages beyond the 5 most frequent were not recorded (summary.json before version 3)"

BREAKDOWN_CLIENT = ("avg_latency_us", "avg_send_us", "avg_recv_us")
BREAKDOWN_SERVER = ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us")


def _model_tree(server: dict[str, Any]) -> dict[str, Any]:
    return {"name": server["name"], "version": server["version"], "composing": [_model_tree(c) for c in server["composing"]]}


# The options that came with version 2's metrics, as a run that does not give them records them.
METRICS_OPTIONS: dict[str, Any] = {"collect_metrics": False, "metrics_url": None, "metrics_interval_ms": 1000,
                                   "export_metrics_port": None}  # fmt: skip


def v1_to_v2(old: Summary) -> Summary:
    """Version 2 added the run's warnings, environment, model tree, every model's configuration and
    metrics; each level's times, latency curve, breakdown and metrics."""
    data = copy.deepcopy(old)
    data["schema_version"] = 2
    model_config = data.pop("model_config")
    levels = data["levels"]
    data["warnings"] = []  # version 2's warnings are all about --collect-metrics, which version 1 did not have
    data["environment"] = None
    # The tree from the measured server figures (versions resolved); without a level, the model alone.
    config = data["config"]
    data["model"] = (_model_tree(levels[0]["server"]) if levels else
                     {"name": config["model_name"], "version": config["model_version"], "composing": []})  # fmt: skip
    data["model_configs"] = {model_config["name"]: model_config} if model_config else {}  # composing models' were not kept
    for option, default in METRICS_OPTIONS.items():  # version 1 had no metrics: as a run without --collect-metrics
        config.setdefault(option, default)
    for level in levels:
        level["start_s"] = level["end_s"] = None  # windows were timed on the monotonic clock, not kept
        for window in level["windows"]:
            window["start_s"] = window["end_s"] = None
        level["latency_curve_us"] = None
        client, server = level["client"], level["server"]
        level["breakdown_us"] = latency_breakdown_us(**{k: client[k] for k in BREAKDOWN_CLIENT},
                                                     **{k: server[k] for k in BREAKDOWN_SERVER})  # fmt: skip
        level["metrics"] = None
    data["metrics_series"] = None
    return data


def _status(stop_reason: str | None) -> str:
    """Before version 3 a summary was written once, when the run ended: its stop reason tells how."""
    if stop_reason and stop_reason.startswith("interrupted"):
        return "interrupted"
    if stop_reason and stop_reason.startswith("failed"):
        return "failed"
    return "complete"


def _legacy_kind(message: str) -> tuple[str, int | str | None]:
    """The kind (label, code) of an error known only by its text, as loadgen before version 6 wrote
    it ("HTTP 503: ...", "gRPC UNAVAILABLE: ...", "timeout: ...", "connection error: ..."): older
    files kept no other record of it."""
    head = message.split(":", 1)[0]
    if head in ("timeout", "unanswered", "connection error"):
        return head, None
    words = head.split()
    if len(words) >= 2 and words[0] == "HTTP" and words[1].isdigit():
        return f"HTTP {words[1]}", int(words[1])
    if len(words) >= 2 and words[0] == "gRPC":
        return f"gRPC {words[1]}", words[1]
    return "other", None


# Options added during version 2 (request-rate sweeps, SLAs, capacity plans) and with version 3 (TLS),
# as a run that does not give them records them.
OPTIONS_BEFORE_V3: dict[str, Any] = {
    "request_rate_range": None, "request_distribution": "constant", "request_intervals": None, "max_inflight": None,
    "seed": None, "binary_search": False, "slas": [], "junit_file": None, "target_throughput": None, "headroom_pct": 0.0,
    "ssl_grpc_use_ssl": False, "ssl_grpc_root_certifications_file": None, "ssl_grpc_private_key_file": None,
    "ssl_grpc_certificate_chain_file": None, "ssl_https_verify_peer": 1, "ssl_https_verify_host": 2,
    "ssl_https_ca_certificates_file": None, "ssl_https_client_certificate_file": None,
    "ssl_https_client_certificate_type": "PEM", "ssl_https_private_key_file": None, "ssl_https_private_key_type": "PEM",
}  # fmt: skip


def v2_to_v3(old: Summary) -> Summary:
    """Version 3 added `status`, each level's `error_rate` and `errors` (from `client.error_messages`),
    `count_check.client_errors`, header values in `config.headers`, and the TLS options."""
    data = copy.deepcopy(old)
    data["schema_version"] = 3
    # Version 2 files written before request-rate sweeps and SLAs (closed loop, no --sla) lack these.
    data.setdefault("sla", [])
    data.setdefault("sla_passed", True)
    data.setdefault("capacity", None)
    data["status"] = _status(data["stop_reason"])
    for option, default in OPTIONS_BEFORE_V3.items():  # the options version 2 did not have yet: as without them
        data["config"].setdefault(option, copy.copy(default))
    data["config"]["headers"] = {name: None for name in data["config"]["headers"]}  # values were left out
    for level in data["levels"]:
        level.setdefault("open_loop", None)
        level.setdefault("sla", [])
        client = level["client"]
        messages = Counter(client.pop("error_messages"))
        unrecorded = client["error_count"] - sum(messages.values())
        if unrecorded > 0:
            messages[UNRECORDED_MESSAGES] = unrecorded
        level["error_rate"] = client["error_rate"]
        kinds = group_errors((*_legacy_kind(message), message, count) for message, count in messages.items())
        level["errors"] = failures_dict(client["request_count"], client["error_count"], client["duration_s"], None, kinds)
        check = level["count_check"]
        check["client_errors"] = client["error_count"]
        # Judged again by version 3's rule: the Python backend counts a response carrying an error as a success.
        check["mismatch"] = CountCheck(check["client_success"], check["server_success"], check["tolerance"],
                                       check["client_errors"]).mismatch  # fmt: skip
    return data


def v3_to_v4(old: Summary) -> Summary:
    """Version 4 added --workers: runs before it were measured in one process, none incomplete."""
    data = copy.deepcopy(old)
    data["schema_version"] = 4
    data["config"]["workers"] = None
    data["config"]["ray_address"] = None
    for level in data["levels"]:
        level["incomplete"] = None
        level["workers"] = []
    return data


def v4_to_v5(old: Summary) -> Summary:
    """Version 5 added each level's `latency_histogram` and `drain`; each window's latencies, errors and
    requests outstanding; each SLA verdict's `level_stable`; `config.connect_timeout_ms` and
    `config.require_stable`; and 0, not null, as "no request deadline"."""
    data = copy.deepcopy(old)
    data["schema_version"] = 5
    config = data["config"]
    config["request_timeout_ms"] = config.get("request_timeout_ms") or 0  # absent before version 3: no deadline
    config["connect_timeout_ms"] = None
    config["require_stable"] = False  # the option did not exist
    judged = config["windows"]["percentile"]  # a window's latency_us was --percentile's, or the average without it
    for level in data["levels"]:
        level["latency_histogram"] = None
        level["drain"] = None
        for verdict in level.get("sla") or []:
            verdict["level_stable"] = level["stable"]
        for window in level["windows"]:
            succeeded = window["request_count"] > 0  # without a success, version 5 has null latencies
            window["avg_latency_us"] = window["latency_us"] if succeeded and judged is None else None
            percentiles = {f"p{p}": None for p in REPORTED_PERCENTILES}
            if judged is not None:
                percentiles[f"p{judged}"] = window["latency_us"]
            window["percentile_latency_us"] = percentiles if succeeded else None
            window["error_count"] = window["outstanding"] = window["oldest_outstanding_s"] = None
            window["stalled"] = False if succeeded else None  # a window with a success did not stall
    return data


def v5_to_v6(old: Summary) -> Summary:
    """Version 6 added each error kind's `code` (an HTTP status, a gRPC status name, or null), which
    the kind's label holds."""
    data = copy.deepcopy(old)
    data["schema_version"] = 6
    for level in data["levels"]:
        for kind in (level.get("errors") or {}).get("kinds", []):
            kind.setdefault("code", _legacy_kind(kind["kind"])[1])
    return data


def v6_to_v7(old: Summary) -> Summary:
    """Version 7 added --goodput-latency-ms and the goodput it gives each level and window: runs before
    it had no goodput bound, so none was measured."""
    data = copy.deepcopy(old)
    data["schema_version"] = 7
    data["config"]["goodput_latency_ms"] = None
    for level in data["levels"]:
        level["client"]["goodput_infer_per_s"] = None
        for window in level["windows"]:
            window["goodput_infer_per_s"] = None
    return data


def v7_to_v8(old: Summary) -> Summary:
    """Version 8 added --profile-export-file: runs before it wrote no per-request export."""
    data = copy.deepcopy(old)
    data["schema_version"] = 8
    data["config"]["profile_export_file"] = None
    return data


def v8_to_v9(old: Summary) -> Summary:
    """Version 9 added tracing (--trace-level, --trace-rate) and each level's `tracing` and
    `tail_attribution`: runs before it traced nothing; and output validation's tolerances
    (--validation-rtol, --validation-atol): runs before it checked no output."""
    data = copy.deepcopy(old)
    data["schema_version"] = 9
    data["config"]["trace_level"] = "OFF"
    data["config"]["trace_rate"] = None
    data["config"]["validation_rtol"] = None
    data["config"]["validation_atol"] = None
    for level in data["levels"]:
        level["tracing"] = None
        level["tail_attribution"] = None
    return data


def v9_to_v10(old: Summary) -> Summary:
    """Version 10 added the slowest traced request's timeline to each level's `tracing` (runs before
    it kept no request's timestamps) and `config.trace_collector` (no collector before it)."""
    data = copy.deepcopy(old)
    data["schema_version"] = 10
    data["config"]["trace_collector"] = None
    for level in data["levels"]:
        if level["tracing"] is not None:
            level["tracing"]["slowest"] = None
    return data


# The options that came with version 11's streaming, as a run that does not give them records them.
STREAMING_OPTIONS: dict[str, Any] = {"streaming": False, "token_output": None, "goodput_ttft_ms": None, "goodput_itl_ms": None,
                                     "prompt_tokens": None, "max_tokens": None}


def v10_to_v11(old: Summary) -> Summary:
    """Version 11 added --streaming (--token-output, --goodput-ttft-ms, --goodput-itl-ms), the text
    models' --prompt-tokens and --max-tokens, and each level's `streaming`: runs before it streamed
    nothing."""
    data = copy.deepcopy(old)
    data["schema_version"] = 11
    data["config"].update(STREAMING_OPTIONS)
    for level in data["levels"]:
        level["streaming"] = None
    return data


# The options that came with version 12's replay, as a run that does not give them records them.
REPLAY_OPTIONS: dict[str, Any] = {"schedule_file": None, "replay_speed": 1.0, "replay_loop": False}
# And sequence models: none was driven as sequences.
SEQUENCE_OPTIONS: dict[str, Any] = {"sequence_length": None, "sequence_length_variation": None, "sequence_id_range": None,
                                    "num_of_sequences": None, "serial_sequences": None}  # fmt: skip


def v11_to_v12(old: Summary) -> Summary:
    """Version 12 added several models at once (`mix`), replays (--schedule-file, --replay-speed,
    --replay-loop), each level's `merged_windows` (a replay played once merges all of its) and
    sequence models (the sequence options, each level's `sequences`): runs before it drove one
    model, replayed nothing, merged their last three windows and drove no sequences."""
    data = copy.deepcopy(old)
    data["schema_version"] = 12
    data["mix"] = None
    data["config"].update(REPLAY_OPTIONS | SEQUENCE_OPTIONS)
    for level in data["levels"]:
        level["merged_windows"] = min(STABLE_WINDOW_COUNT, len(level["windows"]))
        level["sequences"] = None
    return data


# The options that came with version 13's shared memory, as a run that does not give them records them.
SHARED_MEMORY_OPTIONS: dict[str, Any] = {"shared_memory": "none", "output_shared_memory_size": 102400}


def v12_to_v13(old: Summary) -> Summary:
    """Version 13 added --shared-memory and --output-shared-memory-size: runs before it sent their
    tensors in the requests."""
    data = copy.deepcopy(old)
    data["schema_version"] = 13
    data["config"].update(SHARED_MEMORY_OPTIONS)
    return data


# The options that came with version 14's roofline, as a run that does not give them records them.
ROOFLINE_OPTIONS: dict[str, Any] = {"model_flops": {}, "peak_tflops": None, "peak_bandwidth_gbs": None, "no_roofline": False}


def _unbatched(server: dict[str, Any]) -> None:
    """A SERVER and its composing models without batch statistics (not recorded before version 14)."""
    server["batches"] = None
    for child in server["composing"]:
        _unbatched(child)


def v13_to_v14(old: Summary) -> Summary:
    """Version 14 added the roofline (`roofline`; --model-flops, --peak-tflops, --peak-bandwidth-gbs,
    --no-roofline) and each model's executions per batch size (`batches` in every SERVER): runs before
    it placed no model on a roofline and kept no batch statistics."""
    data = copy.deepcopy(old)
    data["schema_version"] = 14
    for run in [data, *(data["mix"] or ())]:  # a mix's models have their own options and levels
        run["config"].update(copy.deepcopy(ROOFLINE_OPTIONS))
        run["roofline"] = None
        for level in run["levels"]:
            _unbatched(level["server"])
    return data


# STEPS[n] turns version n into version n + 1.
STEPS: dict[int, Callable[[Summary], Summary]] = {
    1: v1_to_v2, 2: v2_to_v3, 3: v3_to_v4, 4: v4_to_v5, 5: v5_to_v6, 6: v6_to_v7, 7: v7_to_v8, 8: v8_to_v9,
    9: v9_to_v10, 10: v10_to_v11, 11: v11_to_v12, 12: v12_to_v13, 13: v13_to_v14,
}  # fmt: skip


def not_whole(source: str, version: Any, exc: Exception) -> UsageError:
    """The error for a summary that lacks a part its version has (`exc` raised reading it)."""
    missing = f"it has no {exc.args[0]!r}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
    return UsageError(f"{source} is not a whole summary of schema version {version} ({missing}): was the run's folder edited?")


def upgrade(data: Any, source: str) -> Summary:
    """`data` (a parsed summary.json, read from `source`) in the current schema.

    An upgraded summary keeps `schema_version` current and says in `upgraded_from` which version
    the file was. Anything that is not a summary of this or an earlier version is a UsageError.
    """
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(
            f"{source} is not a loadgen summary (schema_version {version!r}): pass a report folder written by loadgen run"
        )
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"{source} has schema version {version}, newer than this loadgen reads ({SCHEMA_VERSION}): upgrade loadgen"
        )
    if version == SCHEMA_VERSION:
        return data
    try:
        for step in range(version, SCHEMA_VERSION):
            data = STEPS[step](data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise not_whole(source, version, exc) from None
    return {"schema_version": SCHEMA_VERSION, "upgraded_from": version, **data}
