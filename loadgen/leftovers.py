"""What embedded servers leave behind: backend stubs that outlived their Triton, the shared-memory
regions in /dev/shm, and workspaces; and the regions of --shared-memory runs that died.

Seen on the bundled Triton 2.51: when Triton dies by SIGKILL while a model is busy, that model's
Python backend stub lives on, catching SIGTERM and doing nothing, and keeps its region (an idle
stub exits by itself); a model that fails to load can leave its region behind even when Triton
shuts down cleanly. So each embedded server names its regions with a prefix of its own (the
Python backend's shm-region-prefix-name) and keeps a record in its workspace of the loadgen
process that started it; a later loadgen removes a server's leftovers once both that process
and its Triton are gone, and never a region some process still maps.

A --shared-memory run (loadgen.shared_memory) names its regions loadgen_shm_<pid>_<start ticks>_<n>
after itself (the start time tells a reused pid apart); a later loadgen removes those whose process
is gone and that no process maps (a server that still has one registered maps it).

The parsing of /proc text and the decision are pure functions; /proc, /dev/shm and signals are
touched only in the second half.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WORKSPACE_PREFIX = "loadgen-triton-"
RECORD_NAME = "server.json"
STUB_NAME = "triton_python_backend_stub"
PROC = Path("/proc")
SHM = Path("/dev/shm")
# A stub whose Triton is gone catches SIGTERM and carries on waiting for it: SIGKILL after this.
TERM_GRACE_S = 1.0
KILL_WAIT_S = 5.0
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Triton names a region <prefix><uuid>; the default prefix is triton_python_backend_shm_region_.
_REGION = re.compile(rf"[^/]*{_UUID}")
CLIENT_REGION_PREFIX = "loadgen_shm_"
_CLIENT_REGION = re.compile(rf"{CLIENT_REGION_PREFIX}(\d+)_(\d+)_(\d+)")


@dataclass(frozen=True)
class ProcessId:
    """One process across pid reuse: its pid and its start time in clock ticks after boot."""

    pid: int
    start_ticks: int


@dataclass(frozen=True)
class Record:
    """What a later loadgen needs to recognise a server's leftovers, kept in its workspace."""

    owner: ProcessId  # the loadgen process that started the server
    region_prefix: str

    def to_json(self) -> str:
        return json.dumps({"owner_pid": self.owner.pid, "owner_start_ticks": self.owner.start_ticks,
                           "region_prefix": self.region_prefix})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Record | None:
        """None for a record that is not one (half written, or foreign)."""
        try:
            data = json.loads(text)
            record = cls(ProcessId(int(data["owner_pid"]), int(data["owner_start_ticks"])), str(data["region_prefix"]))
        except (ValueError, KeyError, TypeError):
            return None
        return record if record.region_prefix.startswith("loadgen_") else None


@dataclass(frozen=True)
class Stub:
    """A Python backend stub of an embedded server, as its command line names it."""

    workspace: Path
    triton_pid: int
    region: str


@dataclass(frozen=True)
class Snapshot:
    """The process table at one moment: processes that have not exited, the embedded servers'
    stubs among them, and the workspaces a tritonserver runs on."""

    running: frozenset[ProcessId]
    stubs: dict[ProcessId, Stub]
    tritons: frozenset[Path]


@dataclass(frozen=True)
class Cleanup:
    """What was removed for one or more servers."""

    servers: int = 0
    stubs: int = 0  # stubs ended
    regions: int = 0  # regions removed
    regions_in_use: int = 0  # regions kept because some process still maps them

    def __add__(self, other: Cleanup) -> Cleanup:
        return Cleanup(self.servers + other.servers, self.stubs + other.stubs, self.regions + other.regions,
                       self.regions_in_use + other.regions_in_use)  # fmt: skip

    def summary(self) -> str:
        """E.g. "2 backend stubs ended, 2 shared-memory regions removed"."""
        parts = []
        if self.stubs:
            parts.append(f"{_count(self.stubs, 'backend stub')} ended")
        if self.regions:
            parts.append(f"{_count(self.regions, 'shared-memory region')} removed")
        if self.regions_in_use:
            parts.append(f"{_count(self.regions_in_use, 'region')} still mapped by another process kept")
        return ", ".join(parts) or "no backend stub or shared-memory region was left"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def workspace_region_prefix(workspace: Path) -> str:
    """The region prefix of the server in `workspace`: loadgen_<the workspace's random part>_."""
    return f"loadgen_{workspace.name.removeprefix(WORKSPACE_PREFIX)}_"


def is_region_of(name: str, prefix: str) -> bool:
    """Whether /dev/shm/`name` is a region Triton made with `prefix`: the prefix and a UUID, nothing
    else (so that no prefix can match another server's longer one)."""
    return name.startswith(prefix) and re.fullmatch(_UUID, name[len(prefix) :]) is not None


def parse_stat(text: str) -> tuple[str, int]:
    """The state letter and start time (clock ticks) in /proc/PID/stat. The command name, in
    parentheses, may hold spaces and parentheses: the fields after it start at the last ")"."""
    fields = text[text.rindex(")") + 1 :].split()
    return fields[0], int(fields[19])


def _argv(cmdline: bytes) -> list[str]:
    return [os.fsdecode(arg) for arg in cmdline.split(b"\0")]


def _workspace_of(backends: Path) -> Path | None:
    return backends.parent if backends.name == "backends" and backends.parent.name.startswith(WORKSPACE_PREFIX) else None


def parse_stub_cmdline(cmdline: bytes) -> Stub | None:
    """An embedded server's stub from /proc/PID/cmdline, else None. Triton 2.51 starts a stub as
    <backends>/python/triton_python_backend_stub MODEL.py REGION SHM_SIZE SHM_GROWTH TRITON_PID <backends>/python ..."""
    argv = _argv(cmdline)
    if len(argv) < 7:
        return None
    stub = Path(argv[0])
    workspace = _workspace_of(stub.parent.parent)
    if stub.name != STUB_NAME or stub.parent.name != "python" or workspace is None:
        return None
    if not argv[5].isdigit() or _REGION.fullmatch(argv[2]) is None:
        return None
    return Stub(workspace, int(argv[5]), argv[2])


def parse_triton_cmdline(cmdline: bytes) -> Path | None:
    """The workspace of an embedded server's tritonserver (its --backend-directory), else None."""
    argv = _argv(cmdline)
    if Path(argv[0]).name != "tritonserver":
        return None
    for arg in argv[1:]:
        if arg.startswith("--backend-directory="):
            return _workspace_of(Path(arg.partition("=")[2]))
    return None


def mapped_shm_names(maps: str) -> set[str]:
    """Names of the /dev/shm files mapped in a /proc/PID/maps text (removed ones too)."""
    names = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
            names.add(fields[5].removeprefix("/dev/shm/").removesuffix(" (deleted)"))
    return names


def abandoned(workspace: Path, record: Record | None, seen: Snapshot) -> bool:
    """Whether a server's leftovers may be removed: no Triton runs on its workspace and the loadgen
    that started it is gone (a live loadgen cleans up after its own server). Without a record (a
    workspace being set up, or one made by an older loadgen) only a stub proves there was a server."""
    if workspace in seen.tritons:
        return False
    if record is None:
        return any(stub.workspace == workspace for stub in seen.stubs.values())
    return record.owner not in seen.running


def client_region_name(owner: ProcessId, serial: int) -> str:
    """The name (and, with a leading /, the key) of `owner`'s `serial`th --shared-memory region."""
    return f"{CLIENT_REGION_PREFIX}{owner.pid}_{owner.start_ticks}_{serial}"


def client_region_owner(name: str) -> ProcessId | None:
    """The process that made the --shared-memory region `name` (a /dev/shm file name), else None."""
    match = _CLIENT_REGION.fullmatch(name)
    return ProcessId(int(match[1]), int(match[2])) if match is not None else None


def abandoned_client_regions(names: set[str], running: frozenset[ProcessId], mapped: set[str]) -> set[str]:
    """Of the /dev/shm files `names`, the --shared-memory regions whose process is not `running` and
    that no process maps (`mapped`)."""
    return {name for name in names
            if (owner := client_region_owner(name)) is not None and owner not in running and name not in mapped}  # fmt: skip


# What follows touches /proc, /dev/shm, signals and the workspaces.


def _process_id(pid: int) -> ProcessId | None:
    try:
        return ProcessId(pid, parse_stat((PROC / str(pid) / "stat").read_text())[1])
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> ProcessId:
    process = _process_id(os.getpid())
    # Without /proc (not Linux) there is nothing to sweep; pid 0 start 0 matches no live process.
    return process if process is not None else ProcessId(0, 0)


def _pids() -> list[int]:
    try:
        return [int(entry.name) for entry in os.scandir(PROC) if entry.name.isdigit()]
    except OSError:
        return []


def snapshot() -> Snapshot:
    running, stubs, tritons = set(), {}, set()
    for pid in _pids():
        try:
            state, start_ticks = parse_stat((PROC / str(pid) / "stat").read_text())
            cmdline = (PROC / str(pid) / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
        if state in ("Z", "X"):
            continue  # exited: it holds no memory and serves nothing
        process = ProcessId(pid, start_ticks)
        running.add(process)
        if (stub := parse_stub_cmdline(cmdline)) is not None:
            stubs[process] = stub
        elif (workspace := parse_triton_cmdline(cmdline)) is not None:
            tritons.add(workspace)
    return Snapshot(frozenset(running), stubs, frozenset(tritons))


def _mapped_regions() -> set[str]:
    names: set[str] = set()
    for pid in _pids():
        try:
            names |= mapped_shm_names((PROC / str(pid) / "maps").read_text(errors="surrogateescape"))
        except OSError:
            continue
    return names


def _end(processes: list[ProcessId]) -> None:
    """SIGTERM, then SIGKILL to those still there after TERM_GRACE_S; returns once all have exited
    or KILL_WAIT_S later. Each is signalled through a pidfd opened after checking its start time, so
    a process that took a stub's pid meanwhile is never signalled."""
    handles = _open(processes)
    try:
        for sig, wait_s in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, KILL_WAIT_S)):
            for fd in handles:
                try:
                    signal.pidfd_send_signal(fd, sig)
                except OSError:
                    pass  # exited meanwhile, or not ours to signal
            _wait_exits(handles, wait_s)
            if not handles:
                return
    finally:
        for fd in handles:
            os.close(fd)


def _open(processes: list[ProcessId]) -> dict[int, ProcessId]:
    """A pidfd for each of `processes` still running, opened after checking its start time."""
    handles: dict[int, ProcessId] = {}
    for process in processes:
        try:
            fd = os.pidfd_open(process.pid)
        except OSError:
            continue  # gone
        if _process_id(process.pid) == process:
            handles[fd] = process
        else:
            os.close(fd)
    return handles


def stubs_of(workspace: Path) -> list[ProcessId]:
    """The running stubs of the server on `workspace`."""
    return [process for process, stub in snapshot().stubs.items() if stub.workspace == workspace]


def wait_exits(processes: list[ProcessId], wait_s: float) -> bool:
    """Whether all of `processes` have exited within `wait_s` (a zombie has)."""
    handles = _open(processes)
    try:
        _wait_exits(handles, wait_s)
        return not handles
    finally:
        for fd in handles:
            os.close(fd)


def regions_of(prefix: str) -> set[str]:
    """The regions in /dev/shm that a server with region prefix `prefix` made."""
    return {entry.name for entry in os.scandir(SHM) if is_region_of(entry.name, prefix)} if SHM.is_dir() else set()


def _wait_exits(handles: dict[int, ProcessId], wait_s: float) -> None:
    """Drops from `handles` (closing them) the processes that exit within `wait_s`: a pidfd turns
    readable when its process exits."""
    deadline = time.monotonic() + wait_s
    while handles and (left_s := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(handles), [], [], left_s)
        for fd in readable:
            del handles[fd]
            os.close(fd)


def _existing_regions(names: set[str]) -> set[str]:
    return {name for name in names if (SHM / name).exists()}


def read_record(workspace: Path) -> Record | None:
    try:
        return Record.from_json((workspace / RECORD_NAME).read_text())
    except OSError:
        return None


def write_record(workspace: Path, record: Record) -> None:
    (workspace / RECORD_NAME).write_text(record.to_json())


def clean_up(workspace: Path, record: Record | None, seen: Snapshot | None = None) -> Cleanup:
    """Ends the stubs of the server in `workspace` (its Triton must be gone), removes its regions
    that no process maps, then the workspace."""
    seen = seen if seen is not None else snapshot()
    stubs = {process: stub for process, stub in seen.stubs.items() if stub.workspace == workspace}
    _end(list(stubs))
    names = {stub.region for stub in stubs.values()}
    if record is not None:
        names |= regions_of(record.region_prefix)
    names = _existing_regions(names)
    in_use = _mapped_regions() & names if names else set()
    removed = 0
    for name in sorted(names - in_use):
        try:
            (SHM / name).unlink()
            removed += 1
        except FileNotFoundError:
            pass  # another loadgen sweeping at the same moment
        except OSError:
            in_use.add(name)  # not ours to remove (another user's)
    shutil.rmtree(workspace, ignore_errors=True)
    return Cleanup(1, len(stubs), removed, len(in_use))


def sweep_client_regions(seen: Snapshot | None = None) -> Cleanup:
    """Removes the --shared-memory regions of loadgen processes that are gone, unless some process maps them."""
    names = {entry.name for entry in os.scandir(SHM) if entry.name.startswith(CLIENT_REGION_PREFIX)} if SHM.is_dir() else set()
    if not names:
        return Cleanup()
    running = (seen if seen is not None else snapshot()).running
    mapped = _mapped_regions()
    removed = 0
    for name in sorted(abandoned_client_regions(names, running, mapped)):
        try:
            (SHM / name).unlink()
            removed += 1
        except OSError:
            pass  # another loadgen sweeping at the same moment, or another user's
    kept = sum(1 for name in names if name in mapped and client_region_owner(name) not in running)
    return Cleanup(regions=removed, regions_in_use=kept)


def sweep(tmp: Path | None = None) -> Cleanup:
    """Removes the leftovers of earlier embedded servers that are abandoned (see `abandoned`): their
    stubs, their regions that no process maps, and their workspaces under `tmp` (default: the
    temporary directory) or named by a stub. Regions with Triton's default names cannot be told
    apart by owner and are left, except those a removed stub named. Then the regions of
    --shared-memory runs that are gone (`sweep_client_regions`)."""
    seen = snapshot()
    tmp = Path(tmp) if tmp is not None else Path(tempfile.gettempdir())
    workspaces = {path for path in tmp.glob(f"{WORKSPACE_PREFIX}*") if path.is_dir()}
    workspaces |= {stub.workspace for stub in seen.stubs.values()}
    removed = Cleanup()
    for workspace in sorted(workspaces):
        record = read_record(workspace)
        if abandoned(workspace, record, seen):
            removed += clean_up(workspace, record, seen)
    return removed + sweep_client_regions(seen)
