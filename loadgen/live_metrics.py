"""loadgen's own live metrics (--export-metrics-port), for watching a long run in Prometheus and Grafana."""

from __future__ import annotations

import errno

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from loadgen.errors import UsageError
from loadgen.listener import RunListener
from loadgen.outcome import RequestError
from loadgen.load import Load
from loadgen.schedule.base import Schedule

# From sub-millisecond model calls to multi-second overload.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LiveMetrics(RunListener):
    """A registry of its own, served on its own port while the run lasts (`serve` to `close`)."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        requests = Counter(
            "loadgen_requests", "Requests completed, by outcome", ["model", "outcome"], registry=self.registry
        )
        self._success = requests.labels(model, "success")
        self._error = requests.labels(model, "error")
        self._latency = Histogram(
            "loadgen_request_latency_seconds",
            "Latency of successful requests, from when they were due",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        ).labels(model)
        self._in_flight = Gauge("loadgen_in_flight_requests", "Requests sent and not yet answered", ["model"], registry=self.registry).labels(model)
        self._level = Gauge(
            "loadgen_level", "The load level being measured (concurrency or request rate)", ["model", "schedule"], registry=self.registry
        )
        self._model = model
        self._server = None

    def serve(self, port: int) -> None:
        """Serve /metrics on every interface at `port` (Prometheus usually scrapes from another host)."""
        try:
            self._server, _ = start_http_server(port, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} is in use: choose another --export-metrics-port") from None
            raise UsageError(f"cannot serve metrics on port {port} ({exc.strerror}): choose another --export-metrics-port") from None

    def level_started(self, schedule: Schedule, load: Load) -> None:
        self._level.clear()
        self._level.labels(self._model, schedule.label.lower()).set(schedule.value)
        self._in_flight.set_function(lambda: load.in_flight)

    def request_completed(self, latency_ns: int, error: RequestError | None) -> None:
        """One completed request; called on the engine's hot path, so it does no more than count."""
        if error is None:
            self._success.inc()
            self._latency.observe(latency_ns / 1e9)
        else:
            self._error.inc()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
