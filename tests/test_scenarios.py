"""The ready scenarios in configs/: each one is a valid run, and the SLA gate passes on the shipped ensemble."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadgen.cli import main
from loadgen.options import build_config, load_config_file

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["smoke", "capacity", "sla-check", "stress"])
def test_each_scenario_is_a_valid_run(name):
    config = build_config(load_config_file(CONFIGS / f"{name}.yaml"))
    load, gates = config.load, config.gates
    assert config.target.model_name == "centernet-ensemble"
    if name == "capacity":
        assert gates.binary_search and gates.target_throughput and gates.headroom_pct == 30
    if name == "sla-check":
        assert load.open_loop and gates.slas and config.outputs.junit_file and gates.require_stable
    if name == "stress":
        assert load.open_loop and len(load.load_range.values()) >= 5 and load.max_inflight


@pytest.mark.slow
def test_the_sla_check_gate_passes_on_the_shipped_ensemble(triton, tmp_path, capsys):
    """As shipped, windows and all: its Poisson load stabilizes, so the gate's verdict stands (--require-stable)."""
    junit = tmp_path / "gate.xml"
    code = main(["run", "--config", str(CONFIGS / "sla-check.yaml"), "-u", triton.http, "-m", "centernet-ensemble",
                 "--junit", str(junit), "--report-dir", str(tmp_path / "report")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "request rate 40: NOT stable" not in out and "SLA: met\n" in out
    (level,) = json.loads((tmp_path / "report" / "summary.json").read_text())["levels"]
    assert level["label"] == "Request Rate" and level["value"] == 40 and level["stable"]
    assert len(level["sla"]) == 5 and all(verdict["passed"] and verdict["level_stable"] for verdict in level["sla"])
    assert level["open_loop"]["target_rate_per_s"] == 40 and level["open_loop"]["sent_count"] > 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Open loop</h2>" in page and "Lag p99 (ms)" in page
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "0", "0")  # 5 SLAs, level stable
