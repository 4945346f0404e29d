"""Real Triton servers, started once per test session by loadgen's own embedded-server module."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loadgen.server import EmbeddedServer, free_port

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = ROOT / "model_repository"
NESTED_REPOSITORY = ROOT / "tests" / "model_repos" / "nested"


@pytest.fixture(scope="session")
def _session_servers():
    """The session's servers, stopped together at its end: each stop waits a second or more for
    Triton to unload its models, and those waits overlap."""
    servers: list[EmbeddedServer] = []
    yield servers
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        for stopping in [pool.submit(server.stop) for server in servers]:
            stopping.result()


def _serve(servers: list[EmbeddedServer], repository: Path, log: Path):
    server = EmbeddedServer(repository, log)
    servers.append(server)  # stopped by _session_servers, even when its start fails half way
    return server.start()


@pytest.fixture(scope="session")
def triton(_session_servers, tmp_path_factory):
    """The embedded server on the shipped model repository (the centernet ensemble)."""
    return _serve(_session_servers, MODEL_REPOSITORY, tmp_path_factory.mktemp("triton") / "server.log")


@pytest.fixture(scope="session")
def nested_triton(_session_servers, tmp_path_factory):
    """The embedded server on the nested-ensemble test repository."""
    return _serve(_session_servers, NESTED_REPOSITORY, tmp_path_factory.mktemp("nested") / "server.log")


@pytest.fixture(scope="session")
def metrics_run(triton, tmp_path_factory):
    """One sweep of the ensemble with --collect-metrics and --verbose-csv: its report folder and console output.
    Its --model-repository (the server's, on this machine) gives it the roofline.

    Shared by the tests that read the folder (metrics, CSVs, plots, roofline, report.html, report, compare).
    """
    report = tmp_path_factory.mktemp("metrics_run") / "report"
    args = ["run", "-u", triton.http, "-m", "centernet-ensemble", "--concurrency-range", "1:2", "-p", "1000",
            "-r", "5", "-s", "50", "--collect-metrics", "--metrics-url", triton.metrics_url, "--metrics-interval", "250",
            "--verbose-csv", "--model-repository", str(MODEL_REPOSITORY), "--report-dir", str(report)]  # fmt: skip
    # Its own cache: the roof and the direct timing measured after this sweep, not read from an earlier run's.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("metrics_run_cache"))}
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300, env=env)
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
def queueing_triton(_session_servers, tmp_path_factory):
    """The embedded server on the queueing test repository (fixed-service, stalling)."""
    return _serve(_session_servers, QUEUEING_REPOSITORY, tmp_path_factory.mktemp("queueing") / "server.log")


STALLING_REPOSITORY = ROOT / "tests" / "model_repos" / "stalling"


@pytest.fixture(scope="session")
def stalling_triton(_session_servers, tmp_path_factory):
    """The embedded server on the stalling-ensemble repository, started without a trace file."""
    return _serve(_session_servers, STALLING_REPOSITORY, tmp_path_factory.mktemp("stalling") / "server.log")


DECOUPLED_REPOSITORY = ROOT / "tests" / "model_repos" / "decoupled"


@pytest.fixture(scope="session")
def decoupled_triton(_session_servers, tmp_path_factory):
    """The embedded server on the decoupled test repository (stream16, stream-fail, stream-echo)."""
    return _serve(_session_servers, DECOUPLED_REPOSITORY, tmp_path_factory.mktemp("decoupled") / "server.log")


@pytest.fixture(scope="session")
def faults_triton(_session_servers, tmp_path_factory):
    """The embedded server on the faults test repository (flaky, slow)."""
    return _serve(_session_servers, FAULTS_REPOSITORY, tmp_path_factory.mktemp("faults") / "server.log")


ECHO_REPOSITORY = ROOT / "tests" / "model_repos" / "echo"


@pytest.fixture(scope="session")
def echo_triton(_session_servers, tmp_path_factory):
    """The embedded server on the echo test repository (ident, echo_bytes)."""
    return _serve(_session_servers, ECHO_REPOSITORY, tmp_path_factory.mktemp("echo") / "server.log")


def descendants(pid: int) -> set[int]:
    """The processes under `pid`, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue  # it ended meanwhile
        if stat:
            children.setdefault(int(stat[stat.rindex(")") + 1 :].split()[1]), []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.add(child)
            stack.append(child)
    return found


RAY_START_S = 120.0


class RayCluster:
    """A Ray head on this machine for the session's --workers runs to join (--ray-address): each
    run's own local Ray takes ~8 s to start and stop. `ray start --block` keeps its processes
    under it and ends them on SIGTERM, so the cluster stops by its pid, leaving other Rays alone."""

    def __init__(self, log: Path) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        # Token authentication off: the runs join without a token (README, --ray-address).
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                 "--node-ip-address=127.0.0.1", "--num-cpus=4", "--include-dashboard=false", "--disable-usage-stats",
                 "--object-store-memory=209715200"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)  # fmt: skip
        deadline = time.monotonic() + RAY_START_S
        while b"Ray runtime started." not in log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start --head did not start: see {log}")
            time.sleep(0.2)

    def workers(self) -> set[int]:
        """The LoadWorker actors' processes in this cluster."""
        titles = subprocess.run(["pgrep", "-f", "ray::LoadWorker"], capture_output=True, text=True).stdout.split()
        return {int(pid) for pid in titles} & descendants(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            left = descendants(self.process.pid)
            self.process.kill()
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    cluster = RayCluster(tmp_path_factory.mktemp("ray") / "ray.log")
    try:
        yield cluster
    finally:
        cluster.stop()


SEQUENCE_REPOSITORY = ROOT / "tests" / "model_repos" / "sequence"


@pytest.fixture(scope="session")
def sequence_triton(_session_servers, tmp_path_factory):
    """The embedded server on the sequence test repository (running-sum)."""
    return _serve(_session_servers, SEQUENCE_REPOSITORY, tmp_path_factory.mktemp("sequence") / "server.log")
