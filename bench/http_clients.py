"""Which HTTP client should carry loadgen's requests? Throughput and client CPU per request.

Starts the embedded Triton server on the tiny test repository tests/model_repos/echo (Python-backend
models: `ident`, an FP32 [1,16] identity, and `echo_bytes`, a BYTES echo), then runs a closed
loop at each concurrency for a fixed time with each client, alternating clients, and prints
requests/s and the client process's CPU time per request (time.process_time deltas: this
process is only the client, the server is a child process).

Clients:
  aiohttp      aiohttp.ClientSession posting the prebuilt binary-extension body
  tritonclient tritonclient.http.aio.InferenceServerClient.infer (builds the body per request)
  lean         loadgen.transport.http.HttpTransport (asyncio.Protocol, prebuilt request bytes)
  lean-ids     optional: the same, each request carrying a tracing id patched into its bytes per send
               (what --trace-rate does to every request; compare with lean, e.g. --clients lean,lean-ids)
  grpc         optional (--clients ...,grpc): loadgen.transport.grpc.GrpcTransport, for comparison
  perf_analyzer  optional (--perf-analyzer PATH): NVIDIA's C++ client on the same model; its CPU
               from getrusage(RUSAGE_CHILDREN), its request count from the server's statistics.

    /tmp/venv/bin/python bench/http_clients.py [--duration 5] [--repeats 2] [--model ident]
        [--concurrency 1,2,4] [--perf-analyzer "$(../shared/tools/get-perf-analyzer)"]

This is the measurement behind hand-writing the lean HTTP client (prefer a well-kept library
unless measurement shows it is the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from loadgen.server import EmbeddedServer  # noqa: E402
from loadgen.transport.base import InputTensor  # noqa: E402
from loadgen.transport.http import HttpTransport  # noqa: E402
from loadgen.transport.request_id import run_prefix  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency, but the bench runs without it
    uvloop = None

ECHO_REPOSITORY = ROOT / "tests" / "model_repos" / "echo"  # ident (FP32 [1,16]), echo_bytes (BYTES [B,1])


def model_input(model: str) -> tuple[np.ndarray, InputTensor]:
    if model == "ident":
        array = np.arange(16, dtype=np.float32).reshape(1, 16)
        return array, InputTensor("INPUT0", "FP32", (1, 16), array.tobytes())
    array = np.array([[b"hello world"]], dtype=np.object_)
    return array, InputTensor("INPUT0", "BYTES", (1, 1), struct.pack("<I", 11) + b"hello world")


# -- the clients: each an async context giving a `one()` coroutine that does one request ------


class AiohttpClient:
    name = "aiohttp"

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model

    async def __aenter__(self):
        import aiohttp

        _, tensor = model_input(self.model)
        prepared = HttpTransport(self.url, {}).prepare(self.model, "", [tensor], ["OUTPUT0"])
        head, _, body = prepared.request.partition(b"\r\n\r\n")
        json_len = int(re.search(rb"Inference-Header-Content-Length: (\d+)", head).group(1))
        self.session = aiohttp.ClientSession()
        endpoint = f"http://{self.url}/v2/models/{self.model}/infer"
        headers = {"Inference-Header-Content-Length": str(json_len), "Content-Type": "application/octet-stream"}
        session = self.session

        async def one() -> None:
            async with session.post(endpoint, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"aiohttp: HTTP {response.status}")

        self.one = one
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()


class TritonClient:
    name = "tritonclient"

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model

    async def __aenter__(self):
        import tritonclient.http as httpclient
        import tritonclient.http.aio as aioclient

        array, tensor = model_input(self.model)
        self.client = aioclient.InferenceServerClient(self.url)
        inputs = [httpclient.InferInput("INPUT0", list(array.shape), tensor.datatype)]
        inputs[0].set_data_from_numpy(array, binary_data=True)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)]
        client, model = self.client, self.model

        async def one() -> None:
            await client.infer(model, inputs, outputs=outputs)

        self.one = one
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()


class LeanClient:
    name = "lean"
    traced = False  # each request carries an id, as with tracing (lean-ids)

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model

    async def __aenter__(self):
        _, tensor = model_input(self.model)
        self.transport = HttpTransport(self.url, {})
        traced = self.traced
        prepared = self.transport.prepare(self.model, "", [tensor], ["OUTPUT0"], run_prefix() if traced else None)
        infer = self.transport.infer
        numbers = itertools.count(1)

        async def one() -> None:
            outcome = await (infer(prepared, next(numbers)) if traced else infer(prepared))  # as the engine calls it
            if outcome.error is not None:
                raise RuntimeError(f"lean: {outcome.error}")

        self.one = one
        return self

    async def __aexit__(self, *exc) -> None:
        await self.transport.close()


class LeanIdsClient(LeanClient):
    name = "lean-ids"
    traced = True


class GrpcClient:
    """Not an HTTP client: loadgen's gRPC transport (grpc.aio), for comparison (--clients ...,grpc)."""

    name = "grpc"

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model

    async def __aenter__(self):
        from loadgen.transport.grpc import GrpcTransport

        _, tensor = model_input(self.model)
        self.transport = GrpcTransport(self.url, {})
        prepared = self.transport.prepare(self.model, "", [tensor], ["OUTPUT0"])
        infer = self.transport.infer

        async def one() -> None:
            outcome = await infer(prepared)
            if outcome.error is not None:
                raise RuntimeError(f"grpc: {outcome.error}")

        self.one = one
        return self

    async def __aexit__(self, *exc) -> None:
        await self.transport.close()


CLIENTS = {"aiohttp": AiohttpClient, "tritonclient": TritonClient, "lean": LeanClient, "lean-ids": LeanIdsClient,
           "grpc": GrpcClient}
DEFAULT_CLIENTS = ("aiohttp", "tritonclient", "lean")


async def closed_loop(client_cls, url: str, model: str, concurrency: int, duration: float) -> tuple[float, float]:
    """(requests/s, client CPU µs per request) over `duration` s after a short warm-up."""
    async with client_cls(url, model) as client:
        one = client.one
        stop = False
        count = 0

        async def worker() -> None:
            nonlocal count
            while not stop:
                await one()
                count += 1

        tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        await asyncio.sleep(0.5)  # warm-up: connections opened, code paths hot
        start_count, start_wall, start_cpu = count, time.perf_counter(), time.process_time()
        await asyncio.sleep(duration)
        done, wall, cpu = count - start_count, time.perf_counter() - start_wall, time.process_time() - start_cpu
        stop = True
        await asyncio.gather(*tasks)
    return done / wall, cpu / max(done, 1) * 1e6


def run_client(client_cls, url, model, concurrency, duration, use_uvloop):
    coroutine = closed_loop(client_cls, url, model, concurrency, duration)
    if use_uvloop:
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def _success_count(url: str, model: str) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def run_perf_analyzer(path: str, url: str, model: str, concurrency: int, duration: float, workdir: Path):
    """(infer/s as perf_analyzer reports it, its CPU µs per request it sent)."""
    data_args = []
    if model == "echo_bytes":
        data_file = workdir / "pa-bytes.json"
        data_file.write_text('{"data": [{"INPUT0": ["hello world"]}]}')
        data_args = ["--input-data", str(data_file)]
    command = [
        path, "-m", model, "-u", url, "-i", "http", "--concurrency-range", str(concurrency),
        "-p", str(int(duration * 1000)), "--max-trials", "8", "-s", "25", *data_args,
    ]  # fmt: skip
    before_count = _success_count(url, model)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent = _success_count(url, model) - before_count
    match = re.search(r"Throughput: ([\d.]+) infer/sec", result.stdout)
    if result.returncode != 0 or match is None:
        print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)
        return float("nan"), float("nan")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(match.group(1)), cpu / max(sent, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run (default 5)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--model", choices=("ident", "echo_bytes"), default="ident")
    parser.add_argument("--clients", default=",".join(DEFAULT_CLIENTS), help=f"of {', '.join(CLIENTS)}")
    parser.add_argument("--perf-analyzer", metavar="PATH", help="also run perf_analyzer (path of its wrapper)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    names = [n for n in args.clients.split(",") if n]
    use_uvloop = uvloop is not None and not args.no_uvloop
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}

    with tempfile.TemporaryDirectory(prefix="loadgen-bench-") as tmp:
        tmp_path = Path(tmp)
        server = EmbeddedServer(ECHO_REPOSITORY, tmp_path / "server.log")
        try:
            url = server.start().http
            print(f"server at {url}; event loop: {'uvloop' if use_uvloop else 'asyncio'}; model {args.model}", flush=True)
            for repeat in range(args.repeats):
                order = names[repeat % len(names) :] + names[: repeat % len(names)]  # rotate who goes first
                for concurrency in concurrencies:
                    runs = [(name, None) for name in order]
                    if args.perf_analyzer:
                        runs.append(("perf_analyzer", None))
                    for name, _ in runs:
                        if name == "perf_analyzer":
                            rps, cpu = run_perf_analyzer(args.perf_analyzer, url, args.model, concurrency, args.duration, tmp_path)
                        else:
                            target = server.endpoints.grpc if name == "grpc" else url
                            rps, cpu = run_client(CLIENTS[name], target, args.model, concurrency, args.duration, use_uvloop)
                        results.setdefault((name, concurrency), []).append((rps, cpu))
                        print(f"  repeat {repeat + 1} c={concurrency} {name:13s} {rps:8.0f} req/s {cpu:7.1f} µs CPU/req", flush=True)
        finally:
            server.stop()

    all_names = names + (["perf_analyzer"] if args.perf_analyzer else [])
    print()
    print(f"event loop: {'uvloop' if use_uvloop else 'asyncio'}; model {args.model}; {args.duration:g} s x {args.repeats} per cell (mean)")
    print(f"{'client':14s} {'conc':>4s} {'req/s':>8s} {'CPU µs/req':>11s} {'req/s vs aiohttp':>17s} {'CPU vs aiohttp':>15s}")
    for concurrency in concurrencies:
        base = results.get(("aiohttp", concurrency))
        base_rps = statistics.mean(r for r, _ in base) if base else float("nan")
        base_cpu = statistics.mean(c for _, c in base) if base else float("nan")
        for name in all_names:
            cells = results[(name, concurrency)]
            rps = statistics.mean(r for r, _ in cells)
            cpu = statistics.mean(c for _, c in cells)
            print(f"{name:14s} {concurrency:4d} {rps:8.0f} {cpu:11.1f} {rps / base_rps:16.2f}x {cpu / base_cpu:14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
