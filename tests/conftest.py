"""Real Triton servers, started once per test session by loadgen's own embedded-server module."""

import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = ROOT / "model_repository"
NESTED_REPOSITORY = ROOT / "tests" / "model_repos" / "nested"


def _serve(repository: Path, log: Path):
    server = EmbeddedServer(repository, log)
    endpoints = server.start()
    try:
        yield endpoints
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """The embedded server on the shipped model repository (the centernet ensemble)."""
    yield from _serve(MODEL_REPOSITORY, tmp_path_factory.mktemp("triton") / "server.log")


@pytest.fixture(scope="session")
def nested_triton(tmp_path_factory):
    """The embedded server on the nested-ensemble test repository."""
    yield from _serve(NESTED_REPOSITORY, tmp_path_factory.mktemp("nested") / "server.log")


@pytest.fixture(scope="session")
def metrics_run(triton, tmp_path_factory):
    """One sweep of the ensemble with --collect-metrics and --verbose-csv: its report folder and console output.

    Shared by the tests that read the folder (metrics, CSVs, plots, report.html, report, compare).
    """
    report = tmp_path_factory.mktemp("metrics_run") / "report"
    args = ["run", "-u", triton.http, "-m", "centernet-ensemble", "--concurrency-range", "1:2", "-p", "1000",
            "-r", "5", "-s", "50", "--collect-metrics", "--metrics-url", triton.metrics_url, "--metrics-interval", "250",
            "--verbose-csv", "--report-dir", str(report)]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    return report, process.stdout


QUEUEING_REPOSITORY = ROOT / "tests" / "model_repos" / "queueing"
FAULTS_REPOSITORY = ROOT / "tests" / "model_repos" / "faults"


def triton_pids(repository: Path) -> set[int]:
    """Triton and stub processes serving `repository` (other agents' servers on the machine are not ours)."""
    found = subprocess.run(["pgrep", "-f", f"(tritonserver|triton_python_backend_stub).*{repository}"],
                           capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


@pytest.fixture(scope="session")
def queueing_triton(tmp_path_factory):
    """The embedded server on the queueing test repository (fixed-service, stalling)."""
    yield from _serve(QUEUEING_REPOSITORY, tmp_path_factory.mktemp("queueing") / "server.log")


STALLING_REPOSITORY = ROOT / "tests" / "model_repos" / "stalling"


@pytest.fixture(scope="session")
def stalling_triton(tmp_path_factory):
    """The embedded server on the stalling-ensemble repository, started without a trace file."""
    yield from _serve(STALLING_REPOSITORY, tmp_path_factory.mktemp("stalling") / "server.log")


DECOUPLED_REPOSITORY = ROOT / "tests" / "model_repos" / "decoupled"


@pytest.fixture(scope="session")
def decoupled_triton(tmp_path_factory):
    """The embedded server on the decoupled test repository (stream16, stream-fail, stream-echo)."""
    yield from _serve(DECOUPLED_REPOSITORY, tmp_path_factory.mktemp("decoupled") / "server.log")


@pytest.fixture(scope="session")
def faults_triton(tmp_path_factory):
    """The embedded server on the faults test repository (flaky, slow)."""
    yield from _serve(FAULTS_REPOSITORY, tmp_path_factory.mktemp("faults") / "server.log")
