"""One traced request laid out in time, for a waterfall: when the server's frontend, each model of
its trace tree and each of a model's stages started and ended.

Spans (loadgen.traces defines the timestamps), in this order: the frontend's receive to its send
end (part `frontend`, model None), when the request came through HTTP or gRPC; then every model of
the tree, depth first with its depth (the top-level model 0), its whole time REQUEST_START to
REQUEST_END (part `total`) followed by each of STAGES it has. Times are µs from the request's
origin: the frontend's receive when there is one, else the tree's earliest timestamp. A part whose
timestamps are missing, or whose end precedes its start, is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from loadgen.traces import RECEIVE_STAMPS, SEND_END_STAMPS, STAGES, ModelTrace, RequestTrace

FRONTEND = "frontend"
TOTAL = "total"


@dataclass(frozen=True)
class TimelineSpan:
    """One part of one request, in µs from the request's origin."""

    model: str | None  # None for the frontend
    part: str  # FRONTEND, TOTAL or one of STAGES
    depth: int  # the model's depth in the trace tree: 0 for the top-level model and the frontend
    start_us: float
    end_us: float


@dataclass(frozen=True)
class RequestTimeline:
    """A request as the client and the server saw it."""

    request_id: str
    latency_us: float  # the client's
    server_us: float | None  # RequestTrace.server_ns: frontend receive to send end, else the top-level model's total
    spans: tuple[TimelineSpan, ...]


def _with_depth(node: ModelTrace, depth: int = 0) -> Iterator[tuple[ModelTrace, int]]:
    yield node, depth
    for child in node.children:
        yield from _with_depth(child, depth + 1)


def request_timeline(trace: RequestTrace, latency_us: float) -> RequestTimeline:
    """The spans of one request's trace tree (module docstring), with the client's latency."""
    nodes = list(_with_depth(trace.root))
    stamps = trace.root.timestamps_ns
    receive = next((stamps[name] for name in RECEIVE_STAMPS if name in stamps), None)
    send_end = next((stamps[name] for name in SEND_END_STAMPS if name in stamps), None)
    earliest = min((ns for node, _ in nodes for ns in node.timestamps_ns.values()), default=0)
    origin = receive if receive is not None else earliest

    def span(model: str | None, part: str, depth: int, start_ns: int, length_ns: int | None) -> list[TimelineSpan]:
        if length_ns is None:
            return []
        return [TimelineSpan(model, part, depth, (start_ns - origin) / 1e3, (start_ns + length_ns - origin) / 1e3)]

    spans = []
    if receive is not None and send_end is not None and send_end >= receive:
        spans += span(None, FRONTEND, 0, receive, send_end - receive)
    for node, depth in nodes:
        times = node.timestamps_ns
        if "REQUEST_START" in times:
            spans += span(node.model, TOTAL, depth, times["REQUEST_START"], node.total_ns)
        for part, (start, _) in STAGES.items():
            if start in times:
                spans += span(node.model, part, depth, times[start], node.stage_ns(part))
    server_ns = trace.server_ns
    return RequestTimeline(trace.request_id, latency_us, None if server_ns is None else server_ns / 1e3, tuple(spans))
