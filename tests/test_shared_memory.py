"""--shared-memory system: the layout and the naming (pure), the requests against the embedded
server over both protocols, /dev/shm left clean (a normal end, SIGINT, a crashed run's regions
swept) and the combinations refused."""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from loadgen.cli import main
from loadgen.inputs import TensorSpec
from loadgen.leftovers import (
    ProcessId,
    abandoned_client_regions,
    client_region_name,
    client_region_owner,
    sweep_client_regions,
    this_process,
)
from loadgen.shared_memory import ALIGN_BYTES, SharedMemory, is_local_address, layout, output_size_bytes
from loadgen.transport import open_transport
from loadgen.transport.base import InputTensor

SHM = Path("/dev/shm")


def _regions_of(pid: int) -> set[str]:
    return {p.name for p in SHM.iterdir() if (owner := client_region_owner(p.name)) is not None and owner.pid == pid}


# -- pure parts --------------------------------------------------------------------------------


def test_a_region_name_gives_back_its_owner():
    owner = ProcessId(4242, 987654)
    name = client_region_name(owner, 3)
    assert name == "loadgen_shm_4242_987654_3"
    assert client_region_owner(name) == owner
    for foreign in ("loadgen_shm_4242_987654", "loadgen_8lulgg_k_0b37d858-f11d-43b5-98bb-9eeccec3e65d", "input_simple",
                    "loadgen_shm_x_1_2", "loadgen_shm_1_2_3_4"):  # fmt: skip
        assert client_region_owner(foreign) is None


def test_only_regions_of_gone_processes_that_no_one_maps_are_abandoned():
    alive, gone = ProcessId(10, 100), ProcessId(11, 100)
    reused = ProcessId(10, 555)  # the same pid, another process: the region's maker is gone
    names = {client_region_name(p, 1) for p in (alive, gone, reused)} | {client_region_name(gone, 2), "other_region"}
    mapped = {client_region_name(gone, 2)}
    assert abandoned_client_regions(names, frozenset({alive}), mapped) == {client_region_name(gone, 1), client_region_name(reused, 1)}


def test_the_layout_places_every_input_then_the_shared_outputs_aligned():
    placements, size = layout([[12, 0, 100], [12, 0, 100]], [64, 3], "r")
    slots = [s for p in placements for s in p.inputs] + list(placements[0].outputs)
    assert all(s.offset_bytes % ALIGN_BYTES == 0 for s in slots)
    assert [s.size_bytes for s in slots] == [12, 0, 100, 12, 0, 100, 64, 3]
    ends = [s.offset_bytes + s.size_bytes for s in slots]
    assert all(end <= nxt.offset_bytes for end, nxt in zip(ends, slots[1:]))  # no overlap, in order
    assert size >= ends[-1] and placements[0].outputs == placements[1].outputs
    assert {p.region for p in placements} == {"r"}


def test_output_sizes():
    assert output_size_bytes(TensorSpec("y", "FP32", (1, 16), False), 1, 999) == 64
    assert output_size_bytes(TensorSpec("y", "FP16", (3,), True), 4, 999) == 24  # the batch counts
    assert output_size_bytes(TensorSpec("y", "BYTES", (1,), True), 4, 999) == 999  # strings: the shape fixes no size
    assert output_size_bytes(TensorSpec("y", "INT64", (-1, 2), False), 1, 999) == 999


def test_local_addresses():
    assert is_local_address("127.0.0.1") and is_local_address("127.3.2.1") and is_local_address("::1")
    assert not is_local_address("192.0.2.1") and not is_local_address("localhost-ish")


# -- against the embedded server ---------------------------------------------------------------


def _network_output(url: str, protocol: str, data: np.ndarray) -> np.ndarray:
    """The ident model's output for `data`, over the network path (tritonclient)."""
    client_module = httpclient if protocol == "http" else grpcclient
    client = client_module.InferenceServerClient(url)
    tensor = client_module.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    try:
        return client.infer("ident", [tensor]).as_numpy("OUTPUT0")
    finally:
        client.close()


def _shm_status(url: str, protocol: str) -> list[str]:
    """The names of the system shared-memory regions registered with the server."""
    if protocol == "http":
        client = httpclient.InferenceServerClient(url)
        try:
            return [region["name"] for region in client.get_system_shared_memory_status()]
        finally:
            client.close()
    client = grpcclient.InferenceServerClient(url)
    try:
        return list(client.get_system_shared_memory_status(as_json=True).get("regions", {}))
    finally:
        client.close()


def _success_count(statistics: dict) -> int:
    return sum(int(m["inference_stats"]["success"]["count"]) for m in statistics["model_stats"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_inputs_come_from_and_the_outputs_land_in_the_region(echo_triton, protocol):
    url = echo_triton.http if protocol == "http" else echo_triton.grpc
    requests = [np.arange(16, dtype=np.float32).reshape(1, 16) * k for k in (1.5, -2.0)]

    async def drive():
        async with open_transport(protocol, url) as transport:
            tensors = [[InputTensor("INPUT0", "FP32", (1, 16), data.tobytes())] for data in requests]
            region = await SharedMemory.open(transport, tensors, [64])
            try:
                assert region.name in _shm_status(url, protocol) and (SHM / region.name).exists()
                before = _success_count(await transport.model_statistics("ident"))
                outputs = []
                for inputs, placement in zip(tensors, region.placements):
                    prepared = transport.prepare("ident", "", inputs, ["OUTPUT0"], shared_memory=placement)
                    for _ in range(3):
                        outcome = await transport.infer(prepared)
                        assert outcome.error is None, outcome.error
                    outputs.append(region.read(placement.outputs[0]))
                counted = _success_count(await transport.model_statistics("ident")) - before
            finally:
                await region.close()
            assert region.name not in _shm_status(url, protocol) and not (SHM / region.name).exists()
            return outputs, counted

    outputs, counted = asyncio.run(drive())
    assert counted == 6
    for data, raw in zip(requests, outputs):
        expected = _network_output(url, protocol, data)
        assert np.array_equal(np.frombuffer(raw, dtype=np.float32).reshape(1, 16), expected)
        assert not np.array_equal(expected, np.zeros_like(expected))  # the check can fail


def test_an_unreachable_server_does_not_keep_the_region(echo_triton):
    async def drive():
        async with open_transport("http", echo_triton.http) as transport:
            region = await SharedMemory.open(transport, [[InputTensor("INPUT0", "FP32", (1, 16), bytes(64))]], [64])
        # the transport is closed: the unregistration fails, the unlink still happens
        await region.close()
        return region.name

    name = asyncio.run(drive())
    assert not (SHM / name).exists()
    _unregister_all(echo_triton.http)


def _unregister_all(url: str) -> None:
    client = httpclient.InferenceServerClient(url)
    try:
        for region in client.get_system_shared_memory_status():
            if client_region_owner(region["name"]) is not None:
                client.unregister_system_shared_memory(region["name"])
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_shared_memory_run_is_error_free_and_leaves_dev_shm_clean(echo_triton, protocol, tmp_path):
    url = echo_triton.http if protocol == "http" else echo_triton.grpc
    report = tmp_path / "report"
    args = ["run", "-u", url, "-i", protocol, "-m", "echo_bytes", "--shared-memory", "system", "-b", "2",
            "--output-shared-memory-size", "1048576", "--concurrency-range", "1:2", "-p", "300", "-r", "3", "-s", "50", "--report-dir", str(report)]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "loadgen", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    summary = json.loads((report / "summary.json").read_text())
    assert summary["config"]["shared_memory"] == "system" and summary["config"]["output_shared_memory_size"] == 1048576
    for level in summary["levels"]:
        assert level["client"]["error_count"] == 0 and level["client"]["request_count"] > 0
    assert not _regions_of(process.pid)
    assert not [name for name in _shm_status(url, protocol) if (o := client_region_owner(name)) and o.pid == process.pid]


def test_workers_on_the_ray_the_run_starts_each_use_a_region_of_their_own(echo_triton, tmp_path):
    pytest.importorskip("ray")
    report = tmp_path / "report"
    args = ["run", "-u", echo_triton.http, "-m", "ident", "--shared-memory", "system", "--workers", "2",
            "--concurrency-range", "2", "-p", "500", "-r", "3", "-s", "50", "--report-dir", str(report)]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=240)
    assert process.returncode == 0, process.stderr
    (level,) = json.loads((report / "summary.json").read_text())["levels"]
    assert level["client"]["error_count"] == 0
    workers = {worker["pid"] for worker in level["workers"]}
    assert len(workers) == 2 and all(worker["request_count"] > 0 for worker in level["workers"])
    assert not any(_regions_of(pid) for pid in workers)
    assert not [name for name in _shm_status(echo_triton.http, "http") if (o := client_region_owner(name)) and o.pid in workers]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_sequence_model_runs_on_shared_memory(sequence_triton, protocol, tmp_path):
    url = sequence_triton.http if protocol == "http" else sequence_triton.grpc
    report = tmp_path / "report"
    args = ["run", "-u", url, "-i", protocol, "-m", "running-sum", "--shared-memory", "system", "--sequence-length", "6",
            "--sequence-id-range", "7:11", "--concurrency-range", "3", "-p", "300", "-r", "3", "-s", "50",
            "--report-dir", str(report)]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    (level,) = json.loads((report / "summary.json").read_text())["levels"]
    assert level["client"]["error_count"] == 0 and level["sequences"]["completed"] > 0 and level["sequences"]["failed"] == 0


def test_sigint_mid_level_leaves_dev_shm_clean(echo_triton, tmp_path):
    args = ["run", "-u", echo_triton.grpc, "-i", "grpc", "-m", "ident", "--shared-memory", "system",
            "--concurrency-range", "2", "-p", "5000", "-r", "20", "--report-dir", str(tmp_path / "report")]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "loadgen", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _regions_of(process.pid) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert _regions_of(process.pid), "the run made no region"
        time.sleep(1.0)  # mid-level
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert not _regions_of(process.pid)
    assert not [name for name in _shm_status(echo_triton.http, "http") if (o := client_region_owner(name)) and o.pid == process.pid]


def test_a_crashed_runs_region_is_swept_and_live_or_mapped_ones_kept():
    gone = ProcessId(2**22 + 12345, 1)  # above the default pid_max: no process has it
    dead, mapped_dead, live = client_region_name(gone, 1), client_region_name(gone, 2), client_region_name(this_process(), 999)
    for name in (dead, mapped_dead, live):
        (SHM / name).write_bytes(bytes(4096))
    with open(SHM / mapped_dead, "r+b") as file, mmap.mmap(file.fileno(), 4096) as held:
        try:
            cleanup = sweep_client_regions()
            assert not (SHM / dead).exists()
            assert (SHM / mapped_dead).exists() and (SHM / live).exists()
            assert cleanup.regions >= 1 and cleanup.regions_in_use >= 1
        finally:
            held.close()
            for name in (dead, mapped_dead, live):
                (SHM / name).unlink(missing_ok=True)


# -- refused: one line, exit 2 -----------------------------------------------------------------


def _refused(argv, tmp_path, capsys, message):
    code = main(["run", "-p", "200", "-r", "3", "--report-dir", str(tmp_path / "report"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("loadgen: error: ") and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shared-memory", "cuda"], "needs an NVIDIA GPU"),
        (["-u", "192.0.2.1:8000", "-m", "ident", "--shared-memory", "system"], "needs the server on this host"),
        (["--shared-memory", "system", "--streaming"], "does not apply to --streaming"),
        (["--shared-memory", "system", "--workers", "2", "--ray-address", "auto"], "not with --ray-address"),
        (["--shared-memory", "system", "--output-shared-memory-size", "0"], "at least 1 byte"),
    ],
)
def test_what_cannot_work_is_refused(argv, message, tmp_path, capsys):
    if "cuda" in argv and os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA GPU")
    _refused(argv, tmp_path, capsys, message)


def test_validation_data_is_refused(echo_triton, tmp_path, capsys):
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": [{"INPUT0": [1.0] * 16}], "validation_data": [{"OUTPUT0": [1.0] * 16}]}))
    _refused(["-u", echo_triton.http, "-m", "ident", "--shared-memory", "system", "--input-data", str(data),
              "--shape", "INPUT0:1,16"], tmp_path, capsys, "validation_data")  # fmt: skip
