"""How much client CPU does a gRPC request cost, and which way of calling grpc costs least?

    /tmp/venv/bin/python bench/grpc_cpu.py [--variants a,b,...] [--levels 1,2,4,8]
        [--duration 5] [--warmup 1] [--repeats 3] [--idle]

Starts the embedded server on model_repository/ (the centernet ensemble; input: the sample
photograph as a BYTES [1,1] tensor), then for each repeat runs every variant in a child process
of its own (rotating which goes first, to spread the machine's drift), each child measuring a
closed loop at every concurrency level: 1 s of warm-up, then requests/s and the child's CPU time
per request (time.process_time: every thread of the process) over --duration s. A child per
variant because some variants are environment variables that grpc reads once per process.
Prints the median of the repeats per cell, and for the median run the CPU split by thread name
(/proc/self/task/*/stat), which shows where the time goes (event loop, grpc's completion-queue
poller, grpc's EventEngine threads).

Variants (see VARIANTS): the lean HTTP transport as a reference row; loadgen's GrpcTransport as
it is now ("loadgen"); grpc.aio as loadgen used it before (tritonclient's channel options,
identity serializers, the multicallable made once) under uvloop ("aio-uvloop"), under asyncio's
own loop, with GRPC_POLL_STRATEGY=poll, without tritonclient's channel options; the sync grpc
stack bridged into asyncio (`.future()` callbacks, or worker threads making blocking calls, as
perf_analyzer's sync mode); grpclib (pure-Python gRPC on h2; not a dependency: install it in a
directory and pass --extra-path DIR).

Measured here (2 cores shared with the server; medians of 3, 5 s per level), CPU µs per request
at concurrency 1/2/4/8: aio-uvloop 1161/991/918/791, aio-asyncio 1247/1020/913/798, aio-poll
1063/854/788/768, aio-noopts 1014/799/754/774, future 1398/856/778/727, threads 904/666/716/747,
the lean HTTP transport 288/215/229/228, and loadgen's lean HTTP/2 gRPC client 383/278/289/294
(at equal or better throughput). grpclib cost more than grpc.aio. --idle showed no polling
cost: with 0 to 32 calls held in flight every variant burned under 3 ms of CPU per second.

--idle: instead, how much CPU the process burns per second while N gRPC calls sit in flight
(held by a small grpc server in a subprocess that answers after 3 s), per variant: polling or
timer overhead shows up here as CPU that grows with the number of waiting calls.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "centernet-ensemble"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# name: (how the child calls, which event loop, extra environment)
VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "http": ("http", "uvloop", {}),
    "loadgen": ("loadgen", "uvloop", {}),
    "loadgen-ids": ("loadgen-ids", "uvloop", {}),  # each request carrying a tracing id patched in per send (--trace-rate)
    "aio-uvloop": ("aio", "uvloop", {}),
    "aio-asyncio": ("aio", "asyncio", {}),
    "aio-poll": ("aio", "uvloop", {"GRPC_POLL_STRATEGY": "poll"}),
    "aio-noopts": ("aio-noopts", "uvloop", {}),
    "future": ("future", "uvloop", {}),
    "threads": ("threads", "uvloop", {}),
    "grpclib": ("grpclib", "uvloop", {}),
}
DEFAULT_VARIANTS = ("http", "loadgen", "aio-uvloop", "aio-asyncio", "future", "threads")

# tritonclient.grpc.aio's channel options (keepalive defaults, unlimited message sizes)
TRITON_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20000),
    ("grpc.keepalive_permit_without_calls", False),
    ("grpc.http2.max_pings_without_data", 2),
]


# -- the child: one variant, every level --------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread name, summed over threads of the same name (this process)."""
    totals: dict[str, float] = defaultdict(float)
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    for task in Path("/proc/self/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        name = python_names.get(int(task.name))
        if name is not None:  # a Python thread: "MainThread", "Thread-1 (_poll_wrapper)" (grpc.aio's poller)
            comm = name.split(" (")[-1].rstrip(")") if " (" in name else name
        fields = text.rsplit(")", 1)[1].split()
        totals[comm] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return totals


def grpc_request_bytes() -> bytes:
    from tritonclient.grpc import service_pb2

    from loadgen.inputs import sample_photographs

    photo = sample_photographs()[0].read_bytes()
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    entry = request.inputs.add()
    entry.name, entry.datatype = "IMAGE", "BYTES"
    entry.shape.extend([1, 1])
    request.raw_input_contents.append(len(photo).to_bytes(4, "little") + photo)
    request.outputs.add().name = "DETECTIONS"
    return request.SerializeToString()


def loadgen_tensor():
    from loadgen.inputs import sample_photographs
    from loadgen.transport.base import InputTensor

    photo = sample_photographs()[0].read_bytes()
    return InputTensor("IMAGE", "BYTES", (1, 1), len(photo).to_bytes(4, "little") + photo)


class Client:
    """`one()` does a request and raises if it failed; `close()` releases everything."""

    async def open(self) -> None: ...

    async def one(self) -> None: ...

    async def close(self) -> None: ...


class TransportClient(Client):
    def __init__(self, transport, traced: bool = False) -> None:
        self.transport = transport
        self.traced = traced  # each request carries an id, as with tracing
        self.numbers = itertools.count(1)

    async def open(self) -> None:
        from loadgen.transport.request_id import run_prefix

        prefix = run_prefix() if self.traced else None
        self.prepared = self.transport.prepare(MODEL, "", [loadgen_tensor()], ["DETECTIONS"], prefix)

    async def one(self) -> None:
        infer = self.transport.infer
        outcome = await (infer(self.prepared, next(self.numbers)) if self.traced else infer(self.prepared))
        if outcome.error is not None:
            raise RuntimeError(outcome.error)

    async def close(self) -> None:
        await self.transport.close()


class AioClient(Client):
    """grpc.aio the way loadgen called it before: prebuilt bytes through unary_unary, parse the reply."""

    def __init__(self, url: str, options) -> None:
        self.url, self.options = url, options

    async def open(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2

        self.channel = grpc.aio.insecure_channel(self.url, options=self.options)
        self.call = self.channel.unary_unary(INFER_METHOD)
        self.request = grpc_request_bytes()
        self.parse = service_pb2.ModelInferResponse.FromString

    async def one(self) -> None:
        self.parse(await self.call(self.request, metadata=()))

    async def close(self) -> None:
        await self.channel.close()


class SyncChannelClient(Client):
    """A client on grpc's sync stack (a plain channel), bridged into the event loop."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2

        self.channel = grpc.insecure_channel(self.url, options=TRITON_CHANNEL_OPTIONS)
        self.call = self.channel.unary_unary(INFER_METHOD)
        self.request = grpc_request_bytes()
        self.parse = service_pb2.ModelInferResponse.FromString
        self.loop = asyncio.get_running_loop()


class FutureClient(SyncChannelClient):
    """The sync stack's `.future()`; its done-callback (on grpc's channel thread) wakes the loop."""

    async def one(self) -> None:
        waiter = self.loop.create_future()
        call = self.call.future(self.request, metadata=())

        def done(call) -> None:
            self.loop.call_soon_threadsafe(_resolve, waiter, call)

        call.add_done_callback(done)
        self.parse(await waiter)

    async def close(self) -> None:
        self.channel.close()


def _resolve(waiter: asyncio.Future, call) -> None:
    if waiter.done():
        return
    try:
        waiter.set_result(call.result())
    except Exception as exc:  # noqa: BLE001
        waiter.set_exception(exc)


class ThreadsClient(SyncChannelClient):
    """Worker threads making blocking calls (perf_analyzer's sync mode), one per request in flight."""

    async def open(self) -> None:
        await super().open()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.idle = 0
        self.lock = threading.Lock()

    def _work(self) -> None:
        call, loop = self.call, self.loop
        while True:
            job = self.jobs.get()
            if job is None:
                return
            request, waiter = job
            try:
                result = call(request, metadata=())
                loop.call_soon_threadsafe(_set_result, waiter, result)
            except Exception as exc:  # noqa: BLE001
                loop.call_soon_threadsafe(_set_exception, waiter, exc)
            with self.lock:
                self.idle += 1

    async def one(self) -> None:
        waiter = self.loop.create_future()
        with self.lock:
            if self.idle:
                self.idle -= 1
            else:
                thread = threading.Thread(target=self._work, daemon=True)
                self.threads.append(thread)
                thread.start()
        self.jobs.put((self.request, waiter))
        self.parse(await waiter)

    async def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        self.channel.close()


def _set_result(waiter, value) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _set_exception(waiter, exc) -> None:
    if not waiter.done():
        waiter.set_exception(exc)


class GrpclibClient(Client):
    """grpclib (pure-Python gRPC on h2), if importable (--extra-path DIR where it is installed)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        from grpclib.client import Channel, UnaryUnaryMethod
        from grpclib.encoding.base import CodecBase
        from tritonclient.grpc import service_pb2

        class RawCodec(CodecBase):
            __content_subtype__ = "proto"

            def encode(self, message, message_type):
                return message

            def decode(self, data, message_type):
                return data

        host, port = self.url.rsplit(":", 1)
        self.channel = Channel(host, int(port), codec=RawCodec())
        self.call = UnaryUnaryMethod(self.channel, INFER_METHOD, bytes, bytes)
        self.request = grpc_request_bytes()
        self.parse = service_pb2.ModelInferResponse.FromString

    async def one(self) -> None:
        self.parse(await self.call(self.request))

    async def close(self) -> None:
        self.channel.close()


def make_client(kind: str, grpc_url: str, http_url: str) -> Client:
    if kind == "http":
        from loadgen.transport.http import HttpTransport

        return TransportClient(HttpTransport(http_url, {}))
    if kind in ("loadgen", "loadgen-ids"):
        from loadgen.transport.grpc import GrpcTransport

        return TransportClient(GrpcTransport(grpc_url, {}), traced=kind == "loadgen-ids")
    if kind == "aio":
        return AioClient(grpc_url, TRITON_CHANNEL_OPTIONS)
    if kind == "aio-noopts":
        return AioClient(grpc_url, [])
    if kind == "future":
        return FutureClient(grpc_url)
    if kind == "threads":
        return ThreadsClient(grpc_url)
    if kind == "grpclib":
        return GrpclibClient(grpc_url)
    raise SystemExit(f"unknown client kind {kind!r}")


async def measure_levels(kind: str, grpc_url: str, http_url: str, levels, warmup: float, duration: float) -> list[dict]:
    client = make_client(kind, grpc_url, http_url)
    await client.open()
    results = []
    try:
        await client.one()
        for concurrency in levels:
            stop = False
            count = 0

            async def worker() -> None:
                nonlocal count
                while not stop:
                    await client.one()
                    count += 1

            tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
            await asyncio.sleep(warmup)
            c0, t0, cpu0, threads0 = count, time.perf_counter(), time.process_time(), thread_cpu()
            await asyncio.sleep(duration)
            c1, t1, cpu1, threads1 = count, time.perf_counter(), time.process_time(), thread_cpu()
            stop = True
            await asyncio.gather(*tasks)
            done = max(c1 - c0, 1)
            split = {name: (threads1[name] - threads0.get(name, 0.0)) * 1e6 / done for name in threads1}
            results.append(
                {
                    "concurrency": concurrency,
                    "rate": (c1 - c0) / (t1 - t0),
                    "cpu_us": (cpu1 - cpu0) * 1e6 / done,
                    "threads": {k: round(v, 1) for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v >= 0.5},
                }
            )
    finally:
        await client.close()
    return results


async def measure_idle(kind: str, grpc_url: str, levels, duration: float) -> list[dict]:
    """CPU µs per second of wall time while N calls wait in flight on a server that holds them."""
    client = make_client(kind, grpc_url, "")
    await client.open()
    results = []
    try:
        for concurrency in [0, *levels]:
            tasks = [asyncio.ensure_future(client.one()) for _ in range(concurrency)]
            await asyncio.sleep(0.3)
            t0, cpu0, threads0 = time.perf_counter(), time.process_time(), thread_cpu()
            await asyncio.sleep(duration)
            t1, cpu1, threads1 = time.perf_counter(), time.process_time(), thread_cpu()
            wall = t1 - t0
            split = {name: (threads1[name] - threads0.get(name, 0.0)) * 1e6 / wall for name in threads1}
            results.append(
                {
                    "concurrency": concurrency,
                    "cpu_us_per_s": (cpu1 - cpu0) * 1e6 / wall,
                    "threads": {k: round(v, 1) for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v >= 0.5},
                }
            )
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await client.close()
    return results


def child_main(args) -> int:
    kind, loop_kind, _ = VARIANTS[args.child]
    levels = [int(v) for v in args.levels.split(",")]
    if args.idle:
        coroutine = measure_idle(kind, args.grpc, levels, args.duration)
    else:
        coroutine = measure_levels(kind, args.grpc, args.http, levels, args.warmup, args.duration)
    if loop_kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results = runner.run(coroutine)
    else:
        results = asyncio.run(coroutine)
    print(json.dumps(results))
    return 0


# -- the holding server for --idle ---------------------------------------------------------------

HOLD_SERVER = """
import sys, time
from concurrent import futures
import grpc
from tritonclient.grpc import service_pb2

reply = service_pb2.ModelInferResponse(model_name="m").SerializeToString()

def infer(request, context):
    time.sleep(float(sys.argv[1]))
    return reply

class Handler(grpc.GenericRpcHandler):
    def service(self, details):
        return grpc.unary_unary_rpc_method_handler(infer)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
server.add_generic_rpc_handlers((Handler(),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


# -- the parent: server, children, table ---------------------------------------------------------


def run_child(variant: str, args, grpc_url: str, http_url: str, idle: bool = False) -> list[dict]:
    _, _, env_extra = VARIANTS[variant]
    env = {**os.environ, **env_extra}
    if args.extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (args.extra_path, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, __file__, "--child", variant, "--grpc", grpc_url, "--http", http_url,
               "--levels", args.levels, "--warmup", str(args.warmup), "--duration", str(args.duration)]  # fmt: skip
    if idle:
        command.append("--idle")
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_table(variants, levels, results) -> None:
    print("\n| variant | conc | req/s | CPU µs/req | CPU vs loadgen-before (aio-uvloop) | CPU by thread, µs/req (median run) |")
    print("|---|---|---|---|---|---|")
    for concurrency in levels:
        base_runs = results.get(("aio-uvloop", concurrency))
        base = statistics.median(r["cpu_us"] for r in base_runs) if base_runs else float("nan")
        for variant in variants:
            runs = results.get((variant, concurrency))
            if not runs:
                continue
            cpu = statistics.median(r["cpu_us"] for r in runs)
            rate = statistics.median(r["rate"] for r in runs)
            middle = sorted(runs, key=lambda r: r["cpu_us"])[len(runs) // 2]
            split = ", ".join(f"{k} {v:.0f}" for k, v in middle["threads"].items())
            spread = f" ({min(r['cpu_us'] for r in runs):.0f}-{max(r['cpu_us'] for r in runs):.0f})" if len(runs) > 1 else ""
            print(f"| {variant} | {concurrency} | {rate:.1f} | {cpu:.0f}{spread} | {cpu / base:.2f} | {split} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per level (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", action="store_true", help="CPU per second with N calls held in flight")
    parser.add_argument("--extra-path", help="a directory put on the children's PYTHONPATH (e.g. where grpclib is installed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--grpc", help=argparse.SUPPRESS)
    parser.add_argument("--http", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}: use {', '.join(VARIANTS)}")
    levels = [int(v) for v in args.levels.split(",")]

    if args.idle:
        hold = subprocess.Popen([sys.executable, "-c", HOLD_SERVER, "3"], stdout=subprocess.PIPE, text=True)
        try:
            url = f"127.0.0.1:{hold.stdout.readline().strip()}"
            print(f"holding server at {url}; CPU µs per second of wall time with N calls in flight ({args.duration:g} s)")
            print("\n| variant | in flight | CPU µs/s | by thread |\n|---|---|---|---|")
            for variant in variants:
                if variant == "http":
                    continue
                for row in run_child(variant, args, url, "", idle=True):
                    split = ", ".join(f"{k} {v:.0f}" for k, v in row["threads"].items())
                    print(f"| {variant} | {row['concurrency']} | {row['cpu_us_per_s']:.0f} | {split} |", flush=True)
        finally:
            hold.kill()
            hold.wait()
        return 0

    from loadgen.server import EmbeddedServer

    results: dict[tuple[str, int], list[dict]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="grpc-cpu-"))
    server = EmbeddedServer(ROOT / "model_repository", workdir / "server.log")
    endpoints = server.start()
    try:
        print(f"server: grpc {endpoints.grpc}, http {endpoints.http}; {args.warmup:g} s warm-up + {args.duration:g} s per level", flush=True)
        for repeat in range(args.repeats):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                try:
                    rows = run_child(variant, args, endpoints.grpc, endpoints.http)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"  repeat {repeat + 1} {variant}: {exc}", file=sys.stderr, flush=True)
                    continue
                for row in rows:
                    results.setdefault((variant, row["concurrency"]), []).append(row)
                cells = "  ".join(f"c={r['concurrency']}: {r['rate']:.0f}/s {r['cpu_us']:.0f}µs" for r in rows)
                print(f"  repeat {repeat + 1} {variant:12s} {cells}", flush=True)
    finally:
        server.stop()
    print_table(variants, levels, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
