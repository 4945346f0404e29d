"""The embedded server: the Triton binary bundled in nvidia-pytriton, run on a model repository."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loadgen import leftovers
from loadgen.errors import ServerError, UsageError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Endpoints:
    """Where a running server answers, as host:port (the form perf_analyzer's -u takes)."""

    http: str
    grpc: str
    metrics: str

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics}/metrics"


def _triton_dist() -> tuple[Path, Path]:
    """The bundled server's directory and its shared libraries' directory."""
    try:
        import pytriton
    except ImportError as exc:
        raise ServerError("nvidia-pytriton is not installed: install loadgen with pip to get the embedded server") from exc
    root = Path(pytriton.__file__).resolve().parent
    return root / "tritonserver", root.parent / "nvidia_pytriton.libs"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: the sockets stay bound until all are chosen, or the kernel
    may hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM if loadgen dies, even by SIGKILL, so a
    crashed or killed loadgen never leaves a Triton server behind (Linux's PR_SET_PDEATHSIG)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _backend_directory(dist: Path, workspace: Path) -> Path:
    """A backend directory whose python/ holds the stub built for this interpreter's version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version}: use Python 3.8 to 3.13")
    backends = workspace / "backends"
    shutil.copytree(dist / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def _server_environment(libs: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    # The stub embeds an isolated interpreter that finds its prefix from the first python3 on
    # PATH: putting ours first makes every model's stub run in loadgen's environment (numpy<2).
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


# How many sets of free ports a start tries when another process takes one first.
PORT_ATTEMPTS = 3


# A stop waits for the stubs' exits in steps of UNLOAD_POLL_S (to see Triton's own exit), then
# for the regions, polled every REGION_POLL_S, for REGION_GRACE_S at most.
UNLOAD_POLL_S = 0.1
REGION_POLL_S = 0.02
REGION_GRACE_S = 0.5


class _PortTaken(ServerError):
    """Triton could not bind a port that was free a moment before."""


class EmbeddedServer:
    """Starts tritonserver on a model repository; stops it, and its backend stubs, by process id.

    Its Python backend's shared-memory regions are named loadgen_<workspace id>_<uuid>, and its
    workspace records who started it (loadgen.leftovers), so that what a crash leaves can be
    removed: by stop(), or by the next embedded server's start once this loadgen is gone too.
    """

    def __init__(
        self,
        model_repository: Path,
        log_path: Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        startup_timeout_s: float = 180.0,
        extra_args: tuple[str, ...] = (),
        trace_file: Path | None = None,
        explicit_models: tuple[str, ...] | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        # Where Triton writes its traces (level, rate and log_frequency are set over its trace API;
        # the file can be set only here).
        self.trace_file = Path(trace_file).resolve() if trace_file is not None else None
        self.log_path = Path(log_path)
        self._ports = (http_port, grpc_port, metrics_port)
        self.extra_args = tuple(extra_args)  # more tritonserver options, e.g. --http-header-forward-pattern=...
        # Explicit model control (`loadgen tune` loads configurations through the repository API):
        # only these models load at start, an ensemble with its composing models. None: every model.
        self.explicit_models = tuple(explicit_models) if explicit_models is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.endpoints: Endpoints | None = None
        self._process: subprocess.Popen | None = None
        self._workspace: Path | None = None
        self._record: leftovers.Record | None = None
        self.swept = leftovers.Cleanup()  # what start() removed of earlier servers' leftovers

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def exit_status(self) -> str | None:
        """None while the server runs, else how its process ended ("was killed by SIGKILL")."""
        code = self._process.poll() if self._process else None
        if code is None:
            return None
        return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"

    def start(self) -> Endpoints:
        if not self.model_repository.is_dir():
            raise UsageError(f"model repository {self.model_repository} is not a directory: pass --model-repository DIR")
        given = [port for port in self._ports if port is not None]
        for port in given:
            if not 0 < port < 65536:
                raise UsageError(f"port {port} is not a port number: give one from 1 to 65535, or leave the port flag out")
            if given.count(port) > 1:
                raise UsageError(f"port {port} is given twice: the HTTP, gRPC and metrics ports must differ")
            if _port_in_use(port):
                raise UsageError(f"port {port} is in use: choose another one or leave the port flag out")
        dist, libs = _triton_dist()
        self.swept = leftovers.sweep()
        # A port chosen free may be taken by another process before Triton binds it: choose again.
        attempt = 1
        while True:
            spare = iter(free_ports(3))
            ports = tuple(port if port is not None else next(spare) for port in self._ports)
            try:
                return self._launch(dist, libs, ports)
            except _PortTaken:
                if attempt == PORT_ATTEMPTS or len(given) == 3:
                    raise
                attempt += 1

    def _launch(self, dist: Path, libs: Path, ports: tuple[int, int, int]) -> Endpoints:
        http, grpc, metrics = ports
        self._workspace = Path(tempfile.mkdtemp(prefix=leftovers.WORKSPACE_PREFIX))
        self._record = leftovers.Record(leftovers.this_process(), leftovers.workspace_region_prefix(self._workspace))
        try:
            leftovers.write_record(self._workspace, self._record)
            backends = _backend_directory(dist, self._workspace)
            command = [
                str(dist / "bin" / "tritonserver"),
                f"--model-repository={self.model_repository}",
                f"--backend-directory={backends}",
                f"--backend-config=python,shm-region-prefix-name={self._record.region_prefix}",
                f"--http-address={LOOPBACK}",
                f"--http-port={http}",
                f"--grpc-address={LOOPBACK}",
                f"--grpc-port={grpc}",
                f"--metrics-address={LOOPBACK}",
                f"--metrics-port={metrics}",
                "--allow-metrics=true",
                "--exit-timeout-secs=10",
                *((f"--trace-config=triton,file={self.trace_file}",) if self.trace_file is not None else ()),
                *(("--model-control-mode=explicit", *(f"--load-model={name}" for name in self.explicit_models))
                  if self.explicit_models is not None else ()),
                *self.extra_args,
            ]
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                log_start = log.tell()
                self._process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_server_environment(libs),
                    start_new_session=True,  # its own process group: a signal to loadgen's group is not one to Triton
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            self.endpoints = Endpoints(f"{LOOPBACK}:{http}", f"{LOOPBACK}:{grpc}", f"{LOOPBACK}:{metrics}")
            self._wait_ready(log_start)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _wait_ready(self, log_start: int) -> None:
        url = f"http://{self.endpoints.http}/v2/health/ready"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                failure = f"tritonserver exited with code {code} during startup: see {self.log_path}"
                with open(self.log_path, "rb") as log:
                    log.seek(log_start)
                    # Triton's own words when a port it was given is taken (its log is the only record of why).
                    raise _PortTaken(failure) if b"already in use" in log.read() else ServerError(failure)
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready after {self.startup_timeout_s:.0f} s: see {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> leftovers.Cleanup:
        """SIGTERM lets Triton unload its models and end its stubs; SIGKILL once they are unloaded
        (see `_unloaded`), or if it hangs. Then the stubs a crash left (a busy model's stub outlives
        a killed Triton, ignoring SIGTERM), the regions no process maps any more, and the workspace
        are removed: what was, is returned."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                deadline = time.monotonic() + timeout_s
                # A server that traces writes its trace file, or flushes its spans, as it exits: it exits by itself.
                stubs = leftovers.stubs_of(self._workspace) if self._workspace is not None and not self._traces() else []
                process.send_signal(signal.SIGTERM)
                if stubs and self._unloaded(process, stubs, deadline):
                    process.kill()
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait()
        workspace, self._workspace = self._workspace, None
        if workspace is None:
            return leftovers.Cleanup()
        return leftovers.clean_up(workspace, self._record)

    def _traces(self) -> bool:
        return self.trace_file is not None or any(arg.startswith("--trace-config") for arg in self.extra_args)

    def _unloaded(self, process: subprocess.Popen, stubs: list[leftovers.ProcessId], deadline: float) -> bool:
        """Whether Triton has unloaded its models before `deadline`: their stubs have exited and
        their regions are gone (Triton removes a model's region as it unloads it; one a model that
        failed to load left stays, so the regions get REGION_GRACE_S at most). Once they are,
        Triton only idles until its next once-a-second poll of its models (its log's "Timeout N:
        Found 0 live models") before it exits: 1 to 2 s of every stop. False when Triton exits first."""
        while process.poll() is None and (left_s := deadline - time.monotonic()) > 0:
            if leftovers.wait_exits(stubs, min(UNLOAD_POLL_S, left_s)):
                break
        else:
            return False
        regions_until = min(deadline, time.monotonic() + REGION_GRACE_S)
        while leftovers.regions_of(self._record.region_prefix) and time.monotonic() < regions_until:
            time.sleep(REGION_POLL_S)
        return process.poll() is None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
