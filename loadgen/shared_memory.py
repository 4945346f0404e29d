"""System shared memory for a run's requests (--shared-memory system), as perf_analyzer's.

One region per run holds every prepared request's input tensors, then one slot per output: the
inputs are written once, before the load starts, and registered with Triton once (one region, one
registration and one mapping on each side, however many requests the input data has). Every
request names its inputs' slots and the outputs' slots in its parameters; concurrent requests all
have their outputs written to the same slots, which is why validation_data is refused with it.

Regions are named after the process that made them (loadgen.leftovers, `client_region_name`), so
that a later loadgen can remove those a crashed one left (`sweep_client_regions` there). A run
unregisters and unlinks its region when it ends, whatever ended it: the unregistration is bounded
by UNREGISTER_TIMEOUT_S and its failure (a dead server) does not stop the unlink.

Only a server on this host can map the region: `check_usable` refuses any other, and --workers
with a Ray cluster not started by the run. Naming, layout and sizes are pure functions; the region
and the server are touched by `SharedMemory`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import math
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tritonclient.utils import shared_memory as shm

from loadgen.errors import ServerError, UsageError
from loadgen.leftovers import client_region_name, sweep_client_regions, this_process
from loadgen.transport.base import expected_outputs, split_host_port
from loadgen.validation import wire_element_bytes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from loadgen.config import Target
    from loadgen.inputs import TensorSpec
    from loadgen.transport.base import InputTensor, Transport

# Slots start on cache-line boundaries, as a model's kernels prefer them.
ALIGN_BYTES = 64
# A dead server must not hold up the end of a run.
UNREGISTER_TIMEOUT_S = 5.0
_serials = itertools.count(1)  # this process's regions: each one's name is its own


@dataclass(frozen=True)
class Slot:
    """Where one tensor lies in the region."""

    offset_bytes: int
    size_bytes: int


@dataclass(frozen=True)
class Placement:
    """One prepared request's tensors in the region `region`: its inputs' slots in its inputs'
    order and the outputs' slots in the outputs' order."""

    region: str
    inputs: tuple[Slot, ...]
    outputs: tuple[Slot, ...]


def output_size_bytes(spec: TensorSpec, batch_size: int, default_bytes: int) -> int:
    """An output's slot: the size its shape fixes (with the batch), else `default_bytes`
    (--output-shared-memory-size: strings, variable dimensions)."""
    per_element = wire_element_bytes(spec.datatype)
    if per_element is None or any(d < 0 for d in spec.shape):
        return default_bytes
    return per_element * math.prod(spec.shape) * (batch_size if spec.batched else 1)


def shared_memory_outputs(
    target: Target, specs: Sequence[TensorSpec], outputs: Sequence[str], batch_size: int, requests: Sequence[Sequence[InputTensor]]
) -> list[int] | None:
    """The slot sizes of `outputs` (by name, their specs in `specs`) with --shared-memory system; None
    without it. validation_data is refused: every request's outputs land in the same slots."""
    if target.shared_memory == "none":
        return None
    if any(expected_outputs(inputs) is not None for inputs in requests):
        raise UsageError("--input-data's validation_data checks each response, and with --shared-memory concurrent "
                         "responses overwrite the same output slots: drop validation_data or --shared-memory")
    by_name = {spec.name: spec for spec in specs}
    default = target.output_shared_memory_size
    return [output_size_bytes(by_name[name], batch_size, default) if name in by_name else default for name in outputs]


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN_BYTES) * ALIGN_BYTES


def layout(input_sizes: Sequence[Sequence[int]], output_sizes: Sequence[int], region: str) -> tuple[list[Placement], int]:
    """Each request's placement (its inputs' sizes in `input_sizes`), the inputs of all one after
    the other, then the outputs' slots they share; and the region's size."""
    offset = 0
    inputs = []
    for sizes in input_sizes:
        slots = []
        for size in sizes:
            slots.append(Slot(offset, size))
            offset = _aligned(offset + size)
        inputs.append(tuple(slots))
    outputs = []
    for size in output_sizes:
        outputs.append(Slot(offset, size))
        offset = _aligned(offset + size)
    return [Placement(region, slots, tuple(outputs)) for slots in inputs], max(offset, 1)


def is_local_address(address: str) -> bool:
    """Whether an IP address is loopback (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# What follows resolves names, and touches the region and the server.


def _this_hosts_addresses() -> set[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    addresses = set()
    for name in names:
        try:
            addresses |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except (OSError, ValueError):  # ValueError: a name IDNA cannot encode
            continue
    return addresses


def server_is_local(url: str) -> bool:
    """Whether `url` names this host (loopback, or one of its own addresses): its server shares this machine."""
    host, port = split_host_port(url, 8000)
    if host == "localhost":
        return True
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, port)}
    except (OSError, ValueError):  # not resolvable here: not this host, as far as loadgen can tell
        return False
    return bool(resolved) and all(is_local_address(a) or a in _this_hosts_addresses() for a in resolved)


def _has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl")


def check_usable(kind: str, url: str | None, workers: int | None, ray_address: str | None) -> None:
    """Refuses --shared-memory `kind` where it cannot work: cuda (no GPU support), a server on another
    host (-u `url`; None: the embedded server, on this host), workers on a Ray cluster the run did not start."""
    if kind == "cuda":
        if not _has_nvidia_gpu():
            raise UsageError("--shared-memory cuda needs an NVIDIA GPU and this machine has none (no /dev/nvidiactl; "
                             "nvidia-smi -L lists GPUs): use --shared-memory system")
        raise UsageError("--shared-memory cuda is not supported by loadgen yet: use --shared-memory system")
    if url is not None and not server_is_local(url):
        raise UsageError(f"--shared-memory needs the server on this host, and -u {url} names another: "
                         "run loadgen on the server's host, or drop --shared-memory")
    if workers is not None and ray_address is not None:
        raise UsageError("--shared-memory with --workers needs the workers on the server's host: it works with the Ray "
                         "that --workers starts on this host, not with --ray-address; drop one of them")


class SharedMemory:
    """A run's region: created and filled, registered with the server, released by `close`."""

    def __init__(self, transport: Transport, handle: shm.SharedMemoryRegion, name: str, placements: list[Placement]) -> None:
        self._transport = transport
        self._handle: shm.SharedMemoryRegion | None = handle
        self.name = name
        self.placements = placements
        self.registered = False

    @classmethod
    async def open(cls, transport: Transport, requests: Sequence[Sequence[InputTensor]], output_sizes: Sequence[int]) -> SharedMemory:
        """The region holding every request's inputs (`requests`) and outputs of `output_sizes`,
        registered with the server behind `transport`; released at once if that fails."""
        sweep_client_regions()  # what crashed runs left, before adding to /dev/shm
        name = client_region_name(this_process(), next(_serials))
        placements, size_bytes = layout([[len(t.data) for t in inputs] for inputs in requests], output_sizes, name)
        try:
            handle = shm.create_shared_memory_region(name, name, size_bytes, create_only=True)
        except shm.SharedMemoryException as exc:
            cause = exc.__cause__ or exc
            raise ServerError(f"cannot create a {size_bytes}-byte shared-memory region in /dev/shm: {cause}") from None
        region = cls(transport, handle, name, placements)
        try:
            for inputs, placement in zip(requests, placements):
                for tensor, slot in zip(inputs, placement.inputs):
                    if slot.size_bytes:
                        shm.set_shared_memory_region(handle, [np.frombuffer(tensor.data, dtype=np.uint8)], slot.offset_bytes)
            await transport.register_system_shared_memory(name, "/" + name, size_bytes)
            region.registered = True
        except BaseException:
            await region.close()
            raise
        return region

    def read(self, slot: Slot) -> bytes:
        """The bytes of `slot` as they are now (an output's, once a response came)."""
        return bytes(self._handle._mpsm_handle.buf[slot.offset_bytes : slot.offset_bytes + slot.size_bytes])

    async def close(self) -> None:
        """Unregister the region (within UNREGISTER_TIMEOUT_S; a server that cannot answer is no
        reason to keep it), then unmap and unlink it."""
        try:
            if self.registered:
                self.registered = False
                async with asyncio.timeout(UNREGISTER_TIMEOUT_S):
                    await self._transport.unregister_system_shared_memory(self.name)
        except (ServerError, TimeoutError):
            pass  # the server is gone or stuck: it unmaps the region when it exits, and the file goes now
        finally:
            handle, self._handle = self._handle, None
            if handle is not None:
                shm.destroy_shared_memory_region(handle)
