"""What output validation (validation_data) costs the client.

    python bench/validation.py [--part decode|client|both] [--seconds 3] [--blocks 2] [--concurrency 4]

decode: CPU per response to decode and compare the outputs (loadgen.validation.check_http on a
  KServe v2 body, check_grpc on a parsed ModelInferResponse), in-process, for the outputs of the
  shipped models and of the test model `ident` (FP32 [1,16]), in three cases: the response equal
  to the expectation byte for byte (a deterministic model answering right: one memory
  comparison), every float off by a relative 1e-6 (other bytes, within the default tolerance:
  decoded and compared with numpy.isclose), and the last element wrong (found, and the message
  built). Bodies and messages are laid out as Triton 2.51 sends them (the JSON header and
  shapes of a real response). The decoded cases of outputs of a megabyte vary 5x with glibc's
  allocator: numpy's temporaries come from fresh (zeroed, faulted-in) pages or from reused ones;
  MALLOC_MMAP_THRESHOLD_=268435456 shows the reused figure.
client: the client process's CPU per request (time.process_time over completed requests) in a
  closed loop on `ident` against the embedded Triton server (tests/model_repos/echo), over HTTP
  and gRPC, with each response checked against its validation_data and without, alternating in
  ABBA blocks (on, off, off, on) against drift. The server is a child process: its CPU is not
  counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import uvloop  # noqa: E402
from tritonclient.grpc import service_pb2  # noqa: E402

from loadgen.engine import LoadEngine  # noqa: E402
from loadgen.samples import SampleRecorder  # noqa: E402
from loadgen.schedule import ConcurrencySchedule  # noqa: E402
from loadgen.server import EmbeddedServer  # noqa: E402
from loadgen.transport import open_transport  # noqa: E402
from loadgen.transport.base import InputTensor, RequestInputs  # noqa: E402
from loadgen.validation import ExpectedOutputs, check_grpc, check_http, expected_output, to_wire  # noqa: E402

ECHO_REPOSITORY = ROOT / "tests" / "model_repos" / "echo"

# (model, its outputs as (name, shape with the batch of 1)) for the shipped models and `ident`; all FP32
MODELS = [
    ("ident", [("OUTPUT0", (1, 16))]),
    ("centernet-ensemble", [("DETECTIONS", (1, 100, 6))]),
    ("image-preprocess", [("INPUT", (1, 3, 256, 256)), ("LETTERBOX", (1, 5))]),
    ("centernet", [("HEATMAP", (1, 80, 64, 64)), ("WH", (1, 2, 64, 64)), ("OFFSET", (1, 2, 64, 64))]),
]
CASES = ("equal bytes", "within rtol", "last element wrong")


def http_body(model: str, outputs: list[tuple[str, np.ndarray]]) -> tuple[bytes, int]:
    header = json.dumps({"model_name": model, "model_version": "1", "outputs": [
        {"name": name, "datatype": "FP32", "shape": list(array.shape), "parameters": {"binary_data_size": array.nbytes}}
        for name, array in outputs]}, separators=(",", ":")).encode()  # fmt: skip
    return header + b"".join(to_wire("FP32", array) for _, array in outputs), len(header)


def grpc_message(model: str, outputs: list[tuple[str, np.ndarray]]):
    response = service_pb2.ModelInferResponse(model_name=model, model_version="1")
    for name, array in outputs:
        entry = response.outputs.add()
        entry.name, entry.datatype = name, "FP32"
        entry.shape.extend(array.shape)
        response.raw_output_contents.append(to_wire("FP32", array))
    return service_pb2.ModelInferResponse.FromString(response.SerializeToString())


def cpu_us(call, min_seconds: float = 0.3) -> float:
    """CPU per call, over repeats lasting at least min_seconds."""
    call()
    calls, started = 0, time.process_time()
    while True:
        for _ in range(10):
            call()
        calls += 10
        spent = time.process_time() - started
        if spent >= min_seconds:
            return spent / calls * 1e6


def decode_part() -> None:
    rng = np.random.default_rng(0)
    print(f"{'model':<20} {'bytes':>9}  {'case':<20} {'HTTP us':>9} {'gRPC us':>9}")
    for model, shapes in MODELS:
        expected_arrays = [(name, rng.random(shape, dtype=np.float32)) for name, shape in shapes]
        expected = ExpectedOutputs(tuple(expected_output(n, "FP32", a, True) for n, a in expected_arrays), 1e-5, 1e-6)
        size = sum(a.nbytes for _, a in expected_arrays)
        for case in CASES:
            answers = []
            for name, array in expected_arrays:
                got = array.copy()
                if case == "within rtol":
                    got *= np.float32(1 + 1e-6)
                elif case == "last element wrong":
                    got.reshape(-1)[-1] += 1
                answers.append((name, got))
            body, header_length = http_body(model, answers)
            message = grpc_message(model, answers)
            assert (check_http(expected, body, header_length) is None) == (case != "last element wrong")
            assert (check_grpc(expected, message) is None) == (case != "last element wrong")
            http = cpu_us(lambda: check_http(expected, body, header_length))
            grpc = cpu_us(lambda: check_grpc(expected, message))
            print(f"{model:<20} {size:>9}  {case:<20} {http:>9.1f} {grpc:>9.1f}")


def client_cpu_us(url: str, protocol: str, validate: bool, seconds: float, concurrency: int) -> float:
    array = np.arange(16, dtype=np.float32).reshape(1, 16)
    tensor = InputTensor("INPUT0", "FP32", (1, 16), array.tobytes())
    expected = ExpectedOutputs((expected_output("OUTPUT0", "FP32", array, True),), 1e-5, 1e-6) if validate else None

    async def measure() -> float:
        async with open_transport(protocol, url) as transport:
            prepared = transport.prepare("ident", "", RequestInputs([tensor], expected), ["OUTPUT0"])
            engine = LoadEngine(transport, [prepared], request_timeout_ms=60_000)
            recorder = SampleRecorder(time.monotonic_ns())
            engine.start(ConcurrencySchedule(concurrency), recorder)
            await asyncio.sleep(0.5)  # warm up
            recorder.close_window(time.monotonic_ns())
            done, cpu_s = engine.completed, time.process_time()
            await asyncio.sleep(seconds)
            window = recorder.close_window(time.monotonic_ns())
            done, cpu_s = engine.completed - done, time.process_time() - cpu_s
            await engine.stop()
            assert not window.errors, window.errors
            return cpu_s / done * 1e6

    return uvloop.run(measure())


def client_part(seconds: float, blocks: int, concurrency: int) -> None:
    server = EmbeddedServer(ECHO_REPOSITORY, Path(tempfile.mkdtemp()) / "server.log")
    endpoints = server.start()
    try:
        for protocol in ("http", "grpc"):
            url = endpoints.http if protocol == "http" else endpoints.grpc
            runs: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(blocks):
                for validate in (True, False, False, True):
                    runs[validate].append(client_cpu_us(url, protocol, validate, seconds, concurrency))
            on, off = statistics.mean(runs[True]), statistics.mean(runs[False])
            for validate, name in ((True, "validated"), (False, "not validated")):
                shown = ", ".join(f"{v:.1f}" for v in runs[validate])
                print(f"{protocol:>4} {name:>13}: {statistics.mean(runs[validate]):.1f} us of client CPU per request ({shown})")
            print(f"{protocol:>4} validation: +{on - off:.1f} us per request ({on / off:.3f}x)")
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("decode", "client", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.part in ("decode", "both"):
        decode_part()
    if args.part in ("client", "both"):
        client_part(args.seconds, args.blocks, args.concurrency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
