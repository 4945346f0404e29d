"""What a crashed embedded server leaves: backend stubs and shared-memory regions.

Seen on the bundled Triton: killed by SIGKILL while a model is busy, Triton leaves that model's
stub running, ignoring SIGTERM, with its region in /dev/shm. The end-to-end tests kill the real
server under load; the parsing and the decision of what is abandoned get unit tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import FAULTS_REPOSITORY, triton_pids

from loadgen.leftovers import (
    Cleanup,
    ProcessId,
    Record,
    Snapshot,
    Stub,
    abandoned,
    is_region_of,
    mapped_shm_names,
    parse_stat,
    parse_stub_cmdline,
    parse_triton_cmdline,
    workspace_region_prefix,
)
from loadgen.server import EmbeddedServer

SHM = Path("/dev/shm")
UUID = "3ad17a6e-bb73-4b3f-bba2-556d777a0c6f"
WORKSPACE = Path("/tmp/loadgen-triton-8lulgg_k")


# Parsing /proc text


def _cmdline(*argv: str) -> bytes:
    return "\0".join(argv).encode() + b"\0"  # as /proc/PID/cmdline holds it, NUL-terminated


def _stub_cmdline(workspace: Path = WORKSPACE, region: str = f"loadgen_8lulgg_k_{UUID}", stub: str | None = None) -> bytes:
    """A stub's command line as Triton 2.51 starts it (copied from one on this machine)."""
    python = workspace / "backends" / "python"
    return _cmdline(stub or str(python / "triton_python_backend_stub"), "/models/slow/1/model.py", region, "1048576",
                    "1048576", "6379", str(python), "336", "slow_0_0", "DEFAULT")  # fmt: skip


def test_a_stub_command_line_names_its_workspace_triton_and_region():
    assert parse_stub_cmdline(_stub_cmdline()) == Stub(WORKSPACE, 6379, f"loadgen_8lulgg_k_{UUID}")
    default_name = f"triton_python_backend_shm_region_{UUID}"  # an older loadgen's server
    assert parse_stub_cmdline(_stub_cmdline(region=default_name)) == Stub(WORKSPACE, 6379, default_name)


@pytest.mark.parametrize("cmdline", [
    _stub_cmdline(workspace=Path("/root/.cache/pytriton/workspace")),  # not a loadgen server's
    _stub_cmdline(stub="/tmp/loadgen-triton-8lulgg_k/backends/python/other_program"),
    _stub_cmdline(region="../../etc/passwd"),  # never a path out of /dev/shm
    _cmdline(str(WORKSPACE / "backends" / "python" / "triton_python_backend_stub"), "model.py"),
    _cmdline("/usr/bin/python3", "-c", "pass"),
], ids=["foreign-workspace", "other-program", "region-not-a-name", "short", "unrelated"])  # fmt: skip
def test_what_is_not_an_embedded_servers_stub(cmdline):
    assert parse_stub_cmdline(cmdline) is None


def test_a_triton_command_line_names_its_workspace():
    triton = "/venv/lib/python3.11/site-packages/pytriton/tritonserver/bin/tritonserver"
    ours = _cmdline(triton, "--model-repository=/models", f"--backend-directory={WORKSPACE}/backends", "--http-port=8000")
    assert parse_triton_cmdline(ours) == WORKSPACE
    assert parse_triton_cmdline(_cmdline(triton, "--model-repository=/models", "--backend-directory=/opt/tritonserver/backends")) is None
    assert parse_triton_cmdline(_cmdline("/usr/bin/grep", f"--backend-directory={WORKSPACE}/backends")) is None


def test_stat_fields_after_a_command_name_with_spaces_and_parentheses():
    rest = " ".join(str(n) for n in range(4, 22))  # fields 4..21, then 22 (start time) and more
    assert parse_stat(f"8087 (triton_python_b) S {rest} 45862 9 10") == ("S", 45862)
    assert parse_stat(f"42 (a) b) (c) Z {rest} 7 9 10") == ("Z", 7)


def test_shared_memory_names_in_a_maps_file():
    maps = "\n".join([
        f"7ffbec620000-7ffbec720000 rw-s 00000000 00:1b 29                         /dev/shm/loadgen_x_{UUID}",
        "7ffbec720000-7ffbec820000 rw-s 00000000 00:1b 30                         /dev/shm/old region (deleted)",
        "7ffbec820000-7ffbec920000 r-xp 00000000 08:01 77                         /usr/lib/libc.so.6",
        "7ffbec920000-7ffbeca20000 rw-p 00000000 00:00 0 ",
        "7ffbeca20000-7ffbecb20000 rw-s 00000000 00:01 12                         /SYSV00000000 (deleted)",
    ])  # fmt: skip
    assert mapped_shm_names(maps) == {f"loadgen_x_{UUID}", "old region"}


def test_a_region_belongs_to_the_prefix_it_starts_with_and_a_uuid():
    prefix = workspace_region_prefix(WORKSPACE)
    assert prefix == "loadgen_8lulgg_k_"
    assert is_region_of(f"{prefix}{UUID}", prefix)
    assert not is_region_of(f"{prefix}2_{UUID}", prefix)  # another server's longer prefix
    assert not is_region_of(f"triton_python_backend_shm_region_{UUID}", prefix)
    assert not is_region_of(f"{prefix}{UUID}.bak", prefix)


def test_a_record_round_trips_and_a_foreign_one_is_none():
    record = Record(ProcessId(4242, 123456), "loadgen_8lulgg_k_")
    assert Record.from_json(record.to_json()) == record
    for text in ("", "{", "[]", json.dumps({"owner_pid": 1}), json.dumps({"owner_pid": 1, "owner_start_ticks": 2, "region_prefix": ""})):
        assert Record.from_json(text) is None, text


# Deciding what is abandoned

OWNER = ProcessId(100, 5000)
RECORD = Record(OWNER, workspace_region_prefix(WORKSPACE))
STUB = ProcessId(300, 7000)


def _seen(running=(), stubs=False, triton=False) -> Snapshot:
    stub_map = {STUB: Stub(WORKSPACE, 200, f"{RECORD.region_prefix}{UUID}")} if stubs else {}
    return Snapshot(frozenset(running) | frozenset(stub_map), stub_map, frozenset({WORKSPACE} if triton else ()))


@pytest.mark.parametrize(("record", "seen", "expected"), [
    (RECORD, _seen(stubs=True), True),  # Triton and its loadgen gone, a stub left
    (RECORD, _seen(), True),  # nothing running: the regions and the workspace remain
    (RECORD, _seen(running=[ProcessId(OWNER.pid, OWNER.start_ticks + 1)], stubs=True), True),  # the pid reused
    (RECORD, _seen(running=[OWNER], stubs=True), False),  # its loadgen lives: it cleans up itself
    (RECORD, _seen(stubs=True, triton=True), False),  # its Triton runs (loadgen killed, Triton stopping)
    (None, _seen(stubs=True), True),  # an older loadgen's server: a stub proves there was one
    (None, _seen(), False),  # a workspace being set up, or unknown
    (None, _seen(stubs=True, triton=True), False),
], ids=["orphan-stub", "nothing-running", "owner-pid-reused", "owner-alive", "triton-alive",
        "no-record-orphan-stub", "no-record-nothing", "no-record-triton-alive"])  # fmt: skip
def test_abandoned(record, seen, expected):
    assert abandoned(WORKSPACE, record, seen) is expected


def test_cleanup_summary():
    assert Cleanup(1, 2, 2, 0).summary() == "2 backend stubs ended, 2 shared-memory regions removed"
    assert Cleanup(1, 1, 0, 1).summary() == "1 backend stub ended, 1 region still mapped by another process kept"
    assert Cleanup(1).summary() == "no backend stub or shared-memory region was left"
    assert Cleanup(1, 1, 1, 0) + Cleanup(1, 2, 0, 1) == Cleanup(2, 3, 1, 1)


# The real server killed under load


def _repository(tmp_path: Path, name: str, models: list[str]) -> Path:
    """A repository of some faults models under this test's own path, so its processes can be told apart."""
    repository = tmp_path / name
    repository.mkdir()
    for model in models:
        shutil.copytree(FAULTS_REPOSITORY / model, repository / model)  # slow's model.py is a link: copied as a file
    return repository


def _serve(repository: Path, tmp_path: Path) -> tuple[subprocess.Popen, str, int]:
    """`loadgen serve` up: the process, its HTTP address and its Triton's pid."""
    process = subprocess.Popen([sys.executable, "-m", "loadgen", "serve", "--model-repository", str(repository),
                                "--log-file", str(tmp_path / f"{repository.name}.log")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = [process.stdout.readline() for _ in range(4)]
    if not lines[3].startswith("Triton is up (pid "):
        process.kill()
        raise AssertionError(f"serve did not start: {lines} {process.communicate(timeout=30)[1]}")
    return process, lines[0].split("http://")[1].strip(), int(lines[3].split("pid ")[1].split(")")[0])


def _server_of(triton_pid: int) -> tuple[Path, str]:
    """The workspace and region prefix of a running Triton, from its command line."""
    args = Path(f"/proc/{triton_pid}/cmdline").read_bytes().decode().split("\0")
    (backends,) = [arg.partition("=")[2] for arg in args if arg.startswith("--backend-directory=")]
    (prefix,) = [arg.rpartition("=")[2] for arg in args if arg.startswith("--backend-config=python,shm-region-prefix-name=")]
    return Path(backends).parent, prefix


def _regions(prefix: str) -> set[str]:
    return {path.name for path in SHM.iterdir() if path.name.startswith(prefix)}


@contextmanager
def _busy(http: str, model: str = "slow", clients: int = 8, limit_s: float = 60) -> Iterator[None]:
    """Requests from `clients` threads until the block ends (or `limit_s`), so every instance of `model` is busy."""
    body = json.dumps({"inputs": [{"name": "IN", "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode()
    done = threading.Event()
    deadline = time.monotonic() + limit_s

    def client() -> None:
        while not done.is_set() and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(urllib.request.Request(f"http://{http}/v2/models/{model}/infer", data=body), timeout=5).read()
            except OSError:
                done.wait(0.1)  # the server is gone

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # every request takes the model 250 ms: all its instances are at work by now
        yield
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=10)


def _kill_leftovers(pids: set[int], prefix: str | None) -> None:
    """After a failed test: what the code under test should have removed."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if prefix is not None:
        time.sleep(0.5)
        for name in _regions(prefix):
            (SHM / name).unlink(missing_ok=True)


def test_serve_removes_what_its_triton_killed_under_load_left(tmp_path):
    repository = _repository(tmp_path, "repository", ["slow"])
    process, http, triton = _serve(repository, tmp_path)
    prefix = None
    try:
        workspace, prefix = _server_of(triton)
        assert prefix.startswith("loadgen_") and workspace.name.startswith("loadgen-triton-")
        stubs = triton_pids(repository) - {triton}
        assert len(stubs) > 1 and len(_regions(prefix)) == len(stubs), "each stub has a region named with this server's prefix"
        with _busy(http):
            os.kill(triton, signal.SIGKILL)
            killed = time.monotonic()
            out, err = process.communicate(timeout=30)
        ended_s = time.monotonic() - killed
    finally:
        process.kill()
        _kill_leftovers(triton_pids(repository), prefix)
    assert process.returncode == 3, err
    assert err.splitlines() == [err.strip()] and err.startswith("loadgen: error: the embedded Triton server was killed by SIGKILL: "), err
    assert "shared-memory region" in err  # the busy stubs' regions, at least
    assert ended_s < 15, f"serve took {ended_s:.1f} s to notice and clean up"
    assert not triton_pids(repository), "a stub of the killed server is still running"
    assert not _regions(prefix), "the killed server's shared memory is still in /dev/shm"
    assert not workspace.exists()


def test_the_next_start_removes_what_a_killed_serve_and_its_triton_left(tmp_path):
    repository = _repository(tmp_path, "killed", ["slow"])
    other_repository = _repository(tmp_path, "other", ["flaky"])
    other = EmbeddedServer(other_repository, tmp_path / "other.log")  # another loadgen's live server
    other.start()
    process = later = prefix = None
    try:
        other_pids = triton_pids(other_repository)
        other_workspace, other_prefix = _server_of(other.pid)
        other_regions = _regions(other_prefix)
        assert other_regions, "the other server's stub has its region"
        process, http, triton = _serve(repository, tmp_path)
        workspace, prefix = _server_of(triton)
        with _busy(http):
            os.kill(triton, signal.SIGKILL)  # as the OOM killer does, to both
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        time.sleep(1.0)  # an idle stub exits by itself within this
        left = triton_pids(repository)
        assert left, "a busy model's stub outlives its killed Triton"
        assert _regions(prefix), "and keeps its shared memory"
        for pid in left:
            os.kill(pid, signal.SIGTERM)
        time.sleep(1.0)
        assert triton_pids(repository) == left, "the stubs ignore SIGTERM"

        (tmp_path / "empty").mkdir()  # no models: the quickest start
        later = subprocess.Popen([sys.executable, "-m", "loadgen", "serve", "--model-repository", str(tmp_path / "empty"),
                                  "--log-file", str(tmp_path / "later.log")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert later.stdout.readline().startswith("HTTP:"), later.stderr.read() if later.poll() is not None else ""
        assert not triton_pids(repository), "the next start left the killed server's stubs running"
        assert not _regions(prefix), "the next start left the killed server's shared memory"
        assert not workspace.exists()
        # Another server, alive, is left alone.
        assert triton_pids(other_repository) == other_pids
        assert _regions(other_prefix) == other_regions
        assert other_workspace.is_dir()
        later.send_signal(signal.SIGTERM)
        out, err = later.communicate(timeout=60)
        assert later.returncode == 0, err
        assert "Cleaned up after " in err and " earlier embedded server(s) that died: " in err, err
    finally:
        for started in (process, later):
            if started is not None:
                started.kill()
                started.wait()
        other.stop()
        _kill_leftovers(triton_pids(repository), prefix)
    assert not triton_pids(other_repository) and not _regions(other_prefix) and not other_workspace.exists()


def test_stopping_an_idle_server_is_quick_and_leaves_nothing(tmp_path):
    # Once its models are unloaded Triton would idle up to 2 s more polling for them; a stop ends it then.
    repository = _repository(tmp_path, "idle", ["flaky"])  # one instance: its unload takes Triton ~1.1 s
    server = EmbeddedServer(repository, tmp_path / "idle.log")
    server.start()
    try:
        workspace, prefix = _server_of(server.pid)
        stubs = triton_pids(repository) - {server.pid}
        assert len(stubs) == 1 and len(_regions(prefix)) == 1
        started = time.monotonic()
        removed = server.stop()
        stop_s = time.monotonic() - started
    finally:
        server.stop()
        _kill_leftovers(triton_pids(repository), prefix)
    assert stop_s < 2.0, f"the stop took {stop_s:.1f} s"
    assert removed == Cleanup(1), "Triton unloaded its models itself: no stub or region was left for the clean-up"
    assert not triton_pids(repository) and not _regions(prefix) and not workspace.exists()
    assert "Signal (15) received." in (tmp_path / "idle.log").read_text()  # asked to stop, not killed outright
