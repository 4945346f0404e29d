"""Records Triton trace files for tests/data/traces (see README.md there). From the repository root:
`.venv/bin/python tests/data/traces/capture.py REPOSITORY MODEL INPUT OUT_DIR [options]`.

Starts the embedded server with the trace file on its command line (level TIMESTAMPS, rate 1),
sends `--before` requests while log_frequency is 0 (Triton holds their traces), sets
log_frequency to 1 over the trace API (the held traces go to PATH, each later one to PATH.N),
sends `--count` more from `--concurrency` threads, each with a request id, and stops the server
by its pid. INPUT is `image` (the sample photograph as a BYTES tensor IMAGE [1,1]),
`not-an-image` (the same with bytes no decoder takes: the request fails) or NAME:D1xD2... (an
FP32 tensor of ones). OUT_DIR gets trace.json, trace.json.N and client.json: each request's
id and the latency this client measured, in µs.

With `--otlp` the server runs in OpenTelemetry mode instead, exporting every 100 ms to a collector
here (http.server), and OUT_DIR gets bodies.json: each body Triton posted, as it came, with its
Content-Type (tests/data/otlp).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from loadgen.inputs import sample_photographs
from loadgen.server import EmbeddedServer


def _tensor(client_module, spec: str):
    if spec in ("image", "not-an-image"):
        content = sample_photographs()[0].read_bytes() if spec == "image" else b"not an image"
        data = np.array([[content]], dtype=np.object_)
        tensor = client_module.InferInput("IMAGE", list(data.shape), "BYTES")
    else:
        name, dims = spec.split(":")
        data = np.ones([int(d) for d in dims.split("x")], dtype=np.float32)
        tensor = client_module.InferInput(name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    # urllib closes its connection after each request: an HTTP connection still open at the
    # server's stop holds Triton until its exit timeout, and it then exits without flushing PATH.
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=60) as response:
        response.read()


def _sender(args, endpoints):
    """A function that sends one inference request with a given id ("" for none)."""
    if args.grpc:
        client = grpcclient.InferenceServerClient(endpoints.grpc)  # gRPC stubs are thread-safe
        return lambda request_id: client.infer(args.model, [_tensor(grpcclient, args.input)], request_id=request_id)

    def send(request_id: str) -> None:
        body, json_size = httpclient.InferenceServerClient.generate_request_body(
            [_tensor(httpclient, args.input)], request_id=request_id)
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        _post(f"http://{endpoints.http}/v2/models/{args.model}/infer", body, headers)

    return send


class _Collector(http.server.BaseHTTPRequestHandler):
    """Keeps every body posted to it, as it came, in `bodies` (a class attribute: one collector a run)."""

    bodies: list[dict[str, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.bodies.append({"content_type": self.headers.get("Content-Type", ""), "body": body.decode()})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("repository", type=Path)
    parser.add_argument("model")
    parser.add_argument("input", help="`image`, `not-an-image` or NAME:D1xD2 (FP32 ones)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--before", type=int, default=2)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--grpc", action="store_true")
    parser.add_argument("--log", type=Path, help="keep the server's log here")
    parser.add_argument("--otlp", action="store_true", help="OpenTelemetry mode: OTLP/HTTP bodies to bodies.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trace = args.out.resolve() / "trace.json"
    flags = (f"--trace-config=triton,file={trace}", "--trace-config=level=TIMESTAMPS", "--trace-config=rate=1")
    if args.otlp:
        collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        threading.Thread(target=collector.serve_forever, daemon=True).start()
        flags = ("--trace-config=mode=opentelemetry", "--trace-config=level=TIMESTAMPS", "--trace-config=rate=1",
                 f"--trace-config=opentelemetry,url=http://127.0.0.1:{collector.server_address[1]}/v1/traces",
                 "--trace-config=opentelemetry,bsp_schedule_delay=100")
    latencies_us: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as logs:
        server = EmbeddedServer(args.repository, args.log or Path(logs) / "server.log", extra_args=flags)
        endpoints = server.start()
        try:
            send = _sender(args, endpoints)

            def infer(number: int) -> None:
                request_id = f"req-{number}"
                start_ns = time.monotonic_ns()
                with contextlib.suppress(urllib.error.HTTPError, InferenceServerException):  # failures are traced too
                    send(request_id)
                latencies_us[request_id] = (time.monotonic_ns() - start_ns) / 1e3

            # Loads what loads lazily (centernet builds its ONNX file); its trace has no id.
            with contextlib.suppress(urllib.error.HTTPError, InferenceServerException):
                send("")
            for number in range(args.before):
                infer(number)
            if not args.otlp:
                _post(f"http://{endpoints.http}/v2/trace/setting", json.dumps({"log_frequency": "1"}).encode(), {})
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(infer, range(args.before, args.before + args.count)))
            if args.otlp:
                time.sleep(1.0)  # ten export delays: every span has left
        finally:
            server.stop()
    if args.otlp:
        collector.shutdown()
        (args.out / "bodies.json").write_text(json.dumps(_Collector.bodies, indent=1) + "\n")
    (args.out / "client.json").write_text(json.dumps(latencies_us, indent=1) + "\n")


if __name__ == "__main__":
    main()
