"""Where the time goes, from sampled request traces: per-stage distributions and tail attribution.

Parts of a request (loadgen.traces defines each time): for every model in its trace tree,
`queue`, `compute_input`, `compute_infer`, `compute_output` (and `total`, its whole time, for
distributions only); for every ensemble, `scheduling` (model: the ensemble's name); and
`client_network` (model: None): the client's latency minus the server time of the request
(frontend receive to send end), i.e. the network, the client's own work and, when the latency
is counted from the intended send time (open loop), the send lag. A model that appears twice in
one request (the same model in two steps) adds up its two times.

Tail attribution: the sampled requests whose client latency is at or above the level's client
percentile (p99, or the one given) are the tail; those between the level's p40 and p60 are the
middle. For each part, the extra time is the tail's mean minus the middle's mean (a part a
request does not have counts as 0 for it); negative extras count as 0; each part's share is its
extra over the sum of extras, so the shares sum to 1. Parts with no extra are left out, the rest
sorted by share, biggest first. No tail or no middle request, or no extra anywhere: no shares.
Time inside a model outside its four stages (REQUEST_START to QUEUE_START, COMPUTE_END to
REQUEST_END) and the frontend's own time are in no part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from loadgen.stats import AtPercentile, percentile_of_sorted
from loadgen.timeline import RequestTimeline, request_timeline
from loadgen.traces import STAGES, RequestTrace

# The parts whose distributions are reported, per model, in this order.
DISTRIBUTION_PARTS = (*STAGES, "total", "scheduling")
# The parts tail attribution shares the extra time among.
TAIL_PARTS = (*STAGES, "scheduling", "client_network")
MIDDLE_PERCENTILES = (40.0, 60.0)

Part = tuple[str | None, str]  # (model, part); model None for client_network


@dataclass(frozen=True)
class TracedRequest:
    """One sampled request: the client's latency and the server's trace of it."""

    latency_us: float
    trace: RequestTrace


def join(latency_us_by_id: Mapping[str, float], traces: Iterable[RequestTrace]) -> list[TracedRequest]:
    """The traces whose request id the client recorded, with the client's latency; a trace
    without an id, or with one the client does not know, is left out."""
    return [TracedRequest(latency_us_by_id[trace.request_id], trace) for trace in traces
            if trace.request_id and trace.request_id in latency_us_by_id]


def _model_parts_ns(trace: RequestTrace, parts: Sequence[str]) -> Iterable[tuple[Part, int]]:
    for model in trace.root.walk():
        for part in parts:
            if part in STAGES:
                value = model.stage_ns(part)
            elif part == "total":
                value = model.total_ns
            elif part == "scheduling":
                value = model.scheduling_ns
            else:
                continue
            if value is not None:
                yield (model.model, part), value


@dataclass(frozen=True)
class StageDistribution:
    """One part of one model over the sampled requests, in µs."""

    model: str
    part: str
    traces: int  # how many sampled requests the figures rest on
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float


def stage_samples_us(traces: Iterable[RequestTrace]) -> dict[Part, np.ndarray]:
    """Every (model, part) of DISTRIBUTION_PARTS -> its times in µs over the traces, sorted (for
    any percentile: stats.percentile_of_sorted). Models in the order they first appear, depth first."""
    samples: dict[Part, list[float]] = {}
    for trace in traces:
        for key, value in _model_parts_ns(trace, DISTRIBUTION_PARTS):
            samples.setdefault(key, []).append(value / 1e3)
    by_model: dict[str, dict[str, list[float]]] = {}
    for (model, part), values in samples.items():
        by_model.setdefault(model, {})[part] = values
    return {(model, part): np.sort(np.asarray(parts[part], dtype=np.float64))
            for model, parts in by_model.items() for part in DISTRIBUTION_PARTS if part in parts}


def stage_distributions(samples_us: Mapping[Part, np.ndarray]) -> list[StageDistribution]:
    """p50/p90/p99/max of each (model, part) of `stage_samples_us`, in its order."""
    figures = (50, 90, 99, 100)
    return [StageDistribution(model, part, int(values.size), *(percentile_of_sorted(values, p) for p in figures))
            for (model, part), values in samples_us.items() if values.size]


@dataclass(frozen=True)
class TailBands:
    """The client latencies that split a level's requests into the tail and the middle."""

    percentile: float
    tail_from_us: float  # the level's client latency at `percentile`
    middle_from_us: float  # at p40
    middle_to_us: float  # at p60


def tail_bands(at_us: AtPercentile, percentile: float = 99.0) -> TailBands:
    """From the level's client latency at a percentile (as stats.summary_us takes it)."""
    return TailBands(percentile, at_us(percentile), *(at_us(p) for p in MIDDLE_PERCENTILES))


@dataclass(frozen=True)
class TailShare:
    """One part's share of a tail's extra time."""

    model: str | None  # None for client_network; the ensemble for scheduling
    part: str
    share: float  # of the tail's extra time, 0..1
    extra_us: float  # the tail's mean minus the middle's


@dataclass(frozen=True)
class TailAttribution:
    """A level's tail attribution, with how many sampled requests it rests on."""

    bands: TailBands
    tail_requests: int
    middle_requests: int
    shares: tuple[TailShare, ...]  # biggest first; empty when nothing can be said


def request_parts_us(request: TracedRequest) -> dict[Part, float]:
    """Each TAIL_PARTS part of one request, in µs."""
    parts: dict[Part, float] = {}
    for key, value in _model_parts_ns(request.trace, TAIL_PARTS):
        parts[key] = parts.get(key, 0.0) + value / 1e3
    server_ns = request.trace.server_ns
    if server_ns is not None:
        parts[(None, "client_network")] = request.latency_us - server_ns / 1e3
    return parts


def _mean_parts_us(requests: Sequence[TracedRequest]) -> dict[Part, float]:
    sums: dict[Part, float] = {}
    for request in requests:
        for key, value in request_parts_us(request).items():
            sums[key] = sums.get(key, 0.0) + value
    return {key: total / len(requests) for key, total in sums.items()}


def attribute_tail(requests: Sequence[TracedRequest], bands: TailBands) -> TailAttribution:
    """How the tail's extra time over the middle splits among the parts (module docstring)."""
    tail = [request for request in requests if request.latency_us >= bands.tail_from_us]
    middle = [request for request in requests if bands.middle_from_us <= request.latency_us <= bands.middle_to_us]
    if not tail or not middle:
        return TailAttribution(bands, len(tail), len(middle), ())
    tail_means, middle_means = _mean_parts_us(tail), _mean_parts_us(middle)
    parts = {**tail_means, **middle_means}  # every part either group has
    extras = {key: max(0.0, tail_means.get(key, 0.0) - middle_means.get(key, 0.0)) for key in parts}
    total = sum(extras.values())
    shares = [TailShare(model, part, extra / total, extra) for (model, part), extra in extras.items() if extra > 0]
    shares.sort(key=lambda share: (-share.share, share.model or "", share.part))
    return TailAttribution(bands, len(tail), len(middle), tuple(shares))


def tail_line(attribution: TailAttribution) -> str:
    """The console's line: "p99 12.4 ms: 71% of the tail is queue in centernet"."""
    bands = attribution.bands
    head = f"p{bands.percentile:g} {bands.tail_from_us / 1e3:.1f} ms"
    if not attribution.shares:
        return (f"{head}: no tail attribution ({attribution.tail_requests} traced requests in the tail, "
                f"{attribution.middle_requests} around the median)")
    top = attribution.shares[0]
    where = f"{top.part} in {top.model}" if top.model is not None else top.part
    return f"{head}: {top.share:.0%} of the tail is {where}"


# A level whose figures rest on fewer traced requests is flagged (a warning): its p99 of a stage is
# then its largest sample or close to it, and its tail maybe one request.
MIN_TRACES = 20


@dataclass(frozen=True)
class LevelTracing:
    """A level's figures from its sampled traces (summary.json's `tracing` and `tail_attribution`).

    They rest on `traces`: the traced requests joined to the client's record of a request that
    succeeded within the level's reported windows, the requests its latency percentiles count.
    """

    read: int  # request trees read at the level's end, joined or not
    traces: int
    stages: tuple[StageDistribution, ...]  # stage_distributions of those traces
    tail: TailAttribution | None  # None when no request of the level succeeded: no percentile to split at
    slowest: RequestTimeline | None  # the traced request with the highest client latency; None without one
    # Each (model, part)'s sorted samples (stage_samples_us), for a percentile of any rank in an SLA;
    # only while the run lasts: summary.json keeps the distributions.
    samples_us: Mapping[Part, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def few(self) -> bool:
        return self.traces < MIN_TRACES


def level_tracing(requests: Sequence[TracedRequest], read: int, at_us: AtPercentile | None, percentile: float) -> LevelTracing:
    """A level's figures from its joined requests; `at_us` is its client latency at a percentile
    (None without a successful request), `percentile` the one that starts its tail."""
    samples = stage_samples_us(request.trace for request in requests)
    tail = attribute_tail(requests, tail_bands(at_us, percentile)) if at_us is not None else None
    slowest = max(requests, key=lambda request: request.latency_us, default=None)
    timeline = request_timeline(slowest.trace, slowest.latency_us) if slowest is not None else None
    return LevelTracing(read, len(requests), tuple(stage_distributions(samples)), tail, timeline, samples)
