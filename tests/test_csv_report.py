"""perf_analyzer's CSV columns, as recorded from perf_analyzer 2.51 (no server)."""

from __future__ import annotations

from loadgen.options import build_config
from loadgen.report.csv_report import header

BASE = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv")  # fmt: skip


def columns(**options) -> str:
    return ",".join(header("Concurrency", build_config(options)))


def test_plain_and_verbose_headers():
    assert columns() == BASE + ",p50 latency,p90 latency,p95 latency,p99 latency"
    assert columns(**{"verbose-csv": True}) == BASE + ",p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait"


def test_metrics_columns_come_with_verbose_csv_only():
    verbose = columns(**{"verbose-csv": True, "collect-metrics": True})
    assert verbose.endswith(",response wait,Avg GPU Utilization,Avg GPU Power Usage,Max GPU Memory Usage,Total GPU Memory")
    assert "GPU" not in columns(**{"collect-metrics": True})


def test_a_percentile_joins_the_others_and_the_average_leaves():
    assert columns(**{"verbose-csv": True, "percentile": 85}) == (
        BASE + ",p50 latency,p85 latency,p90 latency,p95 latency,p99 latency,request/response,response wait")
