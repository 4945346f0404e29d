"""The client's own ceiling: loadgen and perf_analyzer against a fake Triton that costs little.

    python bench/client_ceiling.py [--protocols http,grpc] [--clients pa,lg,lg-w1] [--pairs 1]
                                   [--server-core 0] [--client-core 1] [-p 500]
                                   [--coarse-http 3000:27000:4000] [--coarse-grpc 2000:26000:4000]
                                   [--refine-steps 3] [--retries 1] [--min-rate 500]
                                   [--cpu-rate N] [--cpu-window-s 4]

Against the real Triton's `ident` both tools top out near 3000 req/s on this 2-core VM, where the
server is the limit (bench/workers.py). Here the server is a fake Triton pinned with taskset to
--server-core, and the bench and every client it starts are pinned to --client-core: each client
has one core of its own, so its ceiling is its ceiling per core. It needs Debian's `nginx`,
`libnginx-mod-http-js` and `nodejs` (apt-get install); both servers run as the current user from
files the bench writes in its temp dir (config, pid, logs, temp paths).

- HTTP: nginx as one process (master_process off) with an njs handler (nginx's JavaScript module).
- gRPC (h2c): a Node.js script on Node's own http2 module (nghttp2), no npm package, its
  flow-control windows opened wide (Triton's gRPC grows its own by BDP probing; nghttp2's default
  64 KiB connection window would cap what a client may have unread by the script). nginx can
  answer gRPC too (HTTP/2 with add_trailer), and was tried first, but its HTTP/2 never indexes
  response headers in HPACK's dynamic table, so every header block must be decoded in full, which
  loadgen does in Python (the hpack package): at its ceiling 22% of loadgen's samples were HPACK
  (py-spy) and it topped out at 7800 req/s to perf_analyzer's 14000+. Triton's gRPC (gRPC C++)
  indexes them, and loadgen decodes a fully indexed block once and caches it; nghttp2 indexes
  them as Triton does.

The fake answers every call the two clients make for `ident`: server metadata, liveness and
readiness, model metadata, config and statistics, and infer, over HTTP (KServe v2, binary output)
and gRPC (`inference.GRPCInferenceService`). Its answers are copies of the real Triton's: the bench
first starts the embedded server on tests/model_repos/echo, asks it every one of those calls (infer
with the input [1,16] of 12.078431 = b"AAAA"), keeps the bytes, and stops it. What the fake
computes per request: the request's id, put into the infer answer where Triton puts it (checked byte
for byte against the real answer with an id at capture): perf_analyzer sends an id with every
request and matches each answer to its request by it ("model id was not returned in the response"
otherwise). The statistics are the captured ones with every counter and duration scaled by the
requests served so far (so every average stays the real server's): perf_analyzer rejects
statistics in which the model served nothing ("failed to find the requested model version").

For each protocol and each client (pa: perf_analyzer --async in request-rate mode, as
bench/workers.py runs it; lg: `loadgen run` in one process; lg-w1: `loadgen run --workers 1`, whose
Ray processes, driver included, all share the client core), the bench:

1. searches the highest constant request rate the client sustains, with bench/workers.py's
   definition and search (see its docstring): three windows of -p ms after a warm-up, send rate
   and completions at least 98% of the target, schedule lag p99 within 10 ms, no failed request;
   a coarse ladder (--coarse-http / --coarse-grpc), then --refine-steps rates inside the bracket
   until it is narrower than 5%, a failed rate tried again --retries times.
2. measures its CPU per request at one common constant rate below every ceiling (--cpu-rate;
   default: 80% of the lowest ceiling found for that protocol, rounded down to 100/s), from
   outside: once the load has started and run WARMUP_S, the CPU time of the client's processes
   (/proc/PID/stat, all threads) and the fake's count of requests answered are read twice,
   --cpu-window-s apart; CPU per request is the ratio of the two deltas. perf_analyzer: its
   process; loadgen: every process of its session; loadgen --workers 1: the Ray worker process
   (the whole session, driver and Ray's daemons included, in its own column). The fake's own CPU
   per request is shown too, and its share of its core while the fastest client runs at its
   ceiling (its headroom: the fake must not be what limits the clients).

Order against drift: the searches run perf_analyzer, loadgen, loadgen w1, then (--pairs 1, the
default) again in the reverse order, the second search of each client starting from the first
one's answer (a ladder of 95% to 110% of it, in 5% steps); a client's ceiling is the mean of its
two. The CPU runs are ABBA: pa, lg, w1, w1, lg, pa. --pairs 0 runs each search once. Printed per
protocol: a table with each client's ceiling (1 core), its CPU per request, and their ratios to
perf_analyzer's (the goal: loadgen's ceiling per core at least GOAL = 1.5x perf_analyzer's), then
every rate each search measured.

It takes about 10-12 minutes with the defaults on the 2-core VM when nothing else runs, and much
longer when other processes share the cores (19 minutes at a load average of 5). Its files (the fake's config, scripts
and logs, every client's output) stay in the temp dir it prints.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import message_factory
from common import ROOT, perf_analyzer
from tritonclient.grpc import service_pb2 as pb
from workers import (
    MODEL,
    REPOSITORY,
    Search,
    cpu_seconds,
    end_session,
    ladder,
    measure_pa,
    progress,
    run_loadgen,
    search,
    session_pids,
    verdict_line,
)

from loadgen.server import EmbeddedServer, free_ports

GOAL = 1.5  # loadgen's ceiling per core, in perf_analyzer's
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NODE = shutil.which("node") or shutil.which("nodejs") or "/usr/bin/node"
CANNED_INPUT = b"AAAA" * 16  # FP32 [1,16], 16 times 12.078431: printable, so the canned files read as text
PROBE_ID = "12345"  # the id the canned infer answers are checked with against the real server's
GRPC_METHOD = "/inference.GRPCInferenceService/"
WARMUP_S = 2.0  # after the first request, before the CPU sample: a fresh client's first second is not its steady state
START_TIMEOUT_S = 120.0  # a client's first request (Ray's start included) comes within this
SERVED_MIN = 0.98  # a CPU run whose served rate falls below this share of the target is flagged
CPU_RATE_SHARE = 0.8  # the default common rate: this share of the lowest ceiling
CLIENTS = {"pa": "perf_analyzer", "lg": "loadgen, one process", "lg-w1": "loadgen, 1 Ray worker"}


# --- the real Triton's answers ---------------------------------------------------------------


@dataclass
class Canned:
    """What the real Triton answered, byte for byte."""

    http_gets: dict[str, tuple[int, str, bytes]]  # path: (status, Content-Type, body)
    http_infer_header: str  # infer's JSON header when the request has no id
    http_infer_data: bytes  # its binary output
    grpc: dict[str, bytes]  # method: serialized response
    grpc_stats: dict[str, list]  # "model" and "all" (no model name asked): ModelStatisticsResponse as a tree (stats_tree)
    requests: int  # the model's success count when the statistics were captured
    grpc_infer_head: bytes  # ModelInferResponse's fields before the id (model_name, model_version)...
    grpc_infer_tail: bytes  # ...and after it


def _http(endpoint: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://{endpoint}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _infer_json(request_id: str | None) -> bytes:
    header = {
        **({"id": request_id} if request_id else {}),
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "parameters": {"binary_data_size": len(CANNED_INPUT)}}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
    return json.dumps(header, separators=(",", ":")).encode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def capture(endpoints) -> Canned:
    """Every answer the fake serves, asked of the real server; the id-bearing infer answers are
    checked against the templates the fake fills in."""
    answers = {}
    for request_id in (None, PROBE_ID):
        header = _infer_json(request_id)
        status, headers, body = _http(endpoints.http, f"/v2/models/{MODEL}/infer", header + CANNED_INPUT,
                                      {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})  # fmt: skip
        if status != 200:
            raise RuntimeError(f"the real server's infer answered HTTP {status}: {body[:200]!r}")
        size = int(headers["Inference-Header-Content-Length"])
        answers[request_id] = (body[:size].decode(), body[size:])
    header, data = answers[None]
    if answers[PROBE_ID] != ('{"id":"%s",' % PROBE_ID + header[1:], data):
        raise RuntimeError(f"Triton's infer answer with an id is not the template's: {answers[PROBE_ID]!r}")

    channel = grpc.insecure_channel(endpoints.grpc)
    try:

        def call(method: str, request) -> bytes:
            return channel.unary_unary(GRPC_METHOD + method)(request.SerializeToString(), timeout=10)

        responses = {
            "ServerLive": call("ServerLive", pb.ServerLiveRequest()),
            "ServerReady": call("ServerReady", pb.ServerReadyRequest()),
            "ModelReady": call("ModelReady", pb.ModelReadyRequest(name=MODEL)),
            "ServerMetadata": call("ServerMetadata", pb.ServerMetadataRequest()),
            "ModelMetadata": call("ModelMetadata", pb.ModelMetadataRequest(name=MODEL)),
            "ModelConfig": call("ModelConfig", pb.ModelConfigRequest(name=MODEL)),
        }
        infer = pb.ModelInferRequest(
            model_name=MODEL,
            inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1, 16])],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT0")],
            raw_input_contents=[CANNED_INPUT],
        )
        plain = pb.ModelInferResponse.FromString(call("ModelInfer", infer))
        infer.id = PROBE_ID
        with_id = call("ModelInfer", infer)
        # The statistics last, so that they have counted every infer above (both protocols alike).
        stats = {which: stats_tree(pb.ModelStatisticsResponse.FromString(call("ModelStatistics", pb.ModelStatisticsRequest(name=name))))
                 for which, name in (("model", MODEL), ("all", ""))}  # fmt: skip
        gets = {}
        for path in ("/v2", "/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready",
                     f"/v2/models/{MODEL}/config", f"/v2/models/{MODEL}/stats", "/v2/models/stats"):  # fmt: skip
            status, headers, body = _http(endpoints.http, path)
            gets[path] = (status, headers.get("Content-Type", "application/json"), body)
    finally:
        channel.close()
    # Fields are serialized in number order: model_name (1) and model_version (2), then id (3), then the rest.
    head = pb.ModelInferResponse(model_name=plain.model_name, model_version=plain.model_version).SerializeToString()
    rest = pb.ModelInferResponse()
    rest.CopyFrom(plain)
    rest.ClearField("model_name")
    rest.ClearField("model_version")
    tail = rest.SerializeToString()
    if head + b"\x1a" + _varint(len(PROBE_ID)) + PROBE_ID.encode() + tail != with_id:
        raise RuntimeError(f"Triton's gRPC infer answer with an id is not the template's: {with_id!r}")
    served = json.loads(gets[f"/v2/models/{MODEL}/stats"][2])["model_stats"][0]["inference_stats"]["success"]["count"]
    return Canned(gets, header, data, responses, stats, int(served), head, tail)


SCALED = {"count", "ns", "inference_count", "execution_count"}  # statistics that grow with the requests served


def stats_tree(message) -> list:
    """A protobuf message as nested [kind, field number, value] for the njs handler to serialize with
    its counters scaled: "m" a message (value: its tree), "b" bytes (base64), "v" a varint
    (value, scaled?), "t" the time now in ms (last_inference)."""
    tree = []
    for field, value in message.ListFields():
        items = value if field.is_repeated else [value]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type
            items = [message_factory.GetMessageClass(entry)(key=key, value=value[key]) for key in value]
        for item in items:
            if field.type == field.TYPE_MESSAGE:
                tree.append(["m", field.number, stats_tree(item)])
            elif field.type in (field.TYPE_STRING, field.TYPE_BYTES):
                raw = item.encode() if isinstance(item, str) else item
                tree.append(["b", field.number, base64.b64encode(raw).decode()])
            elif field.name == "last_inference":
                tree.append(["t", field.number])
            elif field.type in (field.TYPE_UINT64, field.TYPE_UINT32, field.TYPE_INT64, field.TYPE_INT32, field.TYPE_BOOL):
                tree.append(["v", field.number, int(item), field.name in SCALED])
            else:
                raise RuntimeError(f"statistics field {field.full_name} of a type the fake cannot serialize")
    return tree


# --- the fake Triton: nginx + njs --------------------------------------------------------------

NJS_TEMPLATE = r"""// The fake Triton's HTTP answers: copies of the real server's (client_ceiling.py writes this file).
const CANNED = __CANNED__;
const b64 = (s) => Buffer.from(s, 'base64');
const GETS = {};
for (const path in CANNED.http_gets) {
    const g = CANNED.http_gets[path];
    GETS[path] = [g[0], g[1], b64(g[2])];
}
const MODEL_PATH = '/v2/models/' + CANNED.model;
const STATS_PATHS = [MODEL_PATH + '/stats', '/v2/models/stats'];
const INFER_DATA = b64(CANNED.http_infer_data);
const SCALED = {count: 1, ns: 1, inference_count: 1, execution_count: 1};

// The statistics grow with the requests served (nginx's stub_status): the captured ones with every
// counter and duration scaled by served / the captured success count, so each average stays the
// real server's (perf_analyzer rejects statistics in which the model served nothing).
function served(r, then) {
    r.subrequest('/nginx_status', (reply) => {
        then(parseInt(reply.responseText.split('\n')[2].trim().split(/\s+/)[2]) / CANNED.requests);
    });
}

function scaleJson(value, scale) {
    if (Array.isArray(value)) return value.map((v) => scaleJson(v, scale));
    if (value === null || typeof value !== 'object') return value;
    const out = {};
    for (const key in value) {
        const v = value[key];
        if (key === 'last_inference' && v !== 0) out[key] = Date.now();
        else if (SCALED[key] && typeof v === 'number') out[key] = Math.round(v * scale);
        else out[key] = scaleJson(v, scale);
    }
    return out;
}

function http(r) {
    if (r.uri === MODEL_PATH + '/infer' && r.method === 'POST') {
        const body = r.requestBuffer;
        const size = parseInt(r.headersIn['Inference-Header-Content-Length']);
        const request = JSON.parse((size >= 0 ? body.slice(0, size) : body).toString());
        const header = request.id === undefined ? CANNED.http_infer_header
            : '{"id":' + JSON.stringify(String(request.id)) + ',' + CANNED.http_infer_header.slice(1);
        const head = Buffer.from(header);
        r.headersOut['Content-Type'] = 'application/octet-stream';
        r.headersOut['Inference-Header-Content-Length'] = String(head.length);
        r.return(200, Buffer.concat([head, INFER_DATA]));
        return;
    }
    const get = GETS[r.uri];
    if (get === undefined || r.method !== 'GET') {
        r.headersOut['Content-Type'] = 'application/json';
        r.return(400, JSON.stringify({error: 'the fake Triton has no answer to ' + r.method + ' ' + r.uri}));
        return;
    }
    r.headersOut['Content-Type'] = get[1];
    if (STATS_PATHS.indexOf(r.uri) >= 0) {
        served(r, (scale) => r.return(get[0], JSON.stringify(scaleJson(JSON.parse(get[2].toString()), scale))));
        return;
    }
    r.return(get[0], get[2]);
}

export default {http};
"""

NODE_TEMPLATE = r"""// The fake Triton's gRPC answers on Node's http2 (client_ceiling.py writes this file): copies of the
// real server's. nghttp2 indexes the response headers in HPACK's dynamic table, as Triton's gRPC does.
'use strict';
const http = require('http');
const http2 = require('http2');
const CANNED = __CANNED__;
const b64 = (s) => Buffer.from(s, 'base64');
const GRPC = {};
for (const method in CANNED.grpc) GRPC[method] = b64(CANNED.grpc[method]);
const INFER_HEAD = b64(CANNED.grpc_infer_head);
const INFER_TAIL = b64(CANNED.grpc_infer_tail);
let served = 0;  // requests answered, for the bench (GET /served on the counter port) and the statistics

function varintBytes(value) {
    const out = [];
    while (value > 0x7f) {
        out.push((value % 128) | 0x80);
        value = Math.floor(value / 128);
    }
    out.push(value);
    return Buffer.from(out);
}

// The captured statistics (a tree from client_ceiling.stats_tree) serialized, with every counter and
// duration scaled: each average stays the real server's.
function encodeTree(tree, scale) {
    const parts = [];
    for (const node of tree) {
        const kind = node[0], number = node[1];
        if (kind === 'm' || kind === 'b') {
            const body = kind === 'm' ? encodeTree(node[2], scale) : b64(node[2]);
            parts.push(varintBytes(number * 8 + 2), varintBytes(body.length), body);
        } else {
            const value = kind === 't' ? Date.now() : node[3] ? Math.round(node[2] * scale) : node[2];
            if (value !== 0) parts.push(varintBytes(number * 8), varintBytes(value));
        }
    }
    return Buffer.concat(parts);
}

// The bytes of top-level length-delimited field `number` of protobuf message `buf`, or null.
function field(buf, number) {
    let pos = 0;
    const varint = () => {
        let value = 0, scale = 1, byte;
        do {
            byte = buf[pos++];
            value += (byte & 0x7f) * scale;
            scale *= 128;
        } while (byte & 0x80);
        return value;
    };
    while (pos < buf.length) {
        const key = varint(), type = key % 8;
        if (type === 2) {
            const size = varint();
            if (Math.floor(key / 8) === number) return buf.subarray(pos, pos + size);
            pos += size;
        } else if (type === 0) varint();
        else if (type === 1) pos += 8;
        else if (type === 5) pos += 4;
        else return null;
    }
    return null;
}

function answer(method, request) {
    if (method === 'ModelInfer') {
        const id = field(request, 3);  // perf_analyzer matches each answer to its request by this id
        return id === null || id.length === 0 ? Buffer.concat([INFER_HEAD, INFER_TAIL])
            : Buffer.concat([INFER_HEAD, Buffer.from([0x1a]), varintBytes(id.length), id, INFER_TAIL]);
    }
    if (method === 'ModelStatistics') {
        const name = field(request, 1);
        return encodeTree(CANNED.grpc_stats[name === null || name.length === 0 ? 'all' : 'model'], served / CANNED.requests);
    }
    return GRPC[method];
}

// Windows opened wide, as Triton's gRPC (BDP probing) opens them: with nghttp2's 64 KiB connection
// window a client could not have more than ~400 requests' bytes unread by this script at once.
const WINDOW = 2 ** 31 - 1;
const server = http2.createServer({settings: {maxConcurrentStreams: 1024, initialWindowSize: WINDOW}});
server.on('session', (session) => session.setLocalWindowSize(WINDOW));
server.on('stream', (stream, headers) => {
    const chunks = [];
    stream.on('error', () => {});  // a client that gave up on a call (or stopped) is no failure of ours
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', () => {
        if (stream.destroyed) return;
        served++;
        const path = headers[':path'];
        const message = answer(path.slice(path.lastIndexOf('/') + 1), Buffer.concat(chunks).subarray(5));
        if (message === undefined) {
            stream.respond({':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12',
                            'grpc-message': 'the fake Triton has no answer to ' + path}, {endStream: true});
            return;
        }
        const prefix = Buffer.alloc(5);  // not compressed, then the length, big-endian
        prefix.writeUInt32BE(message.length, 1);
        stream.respond({':status': 200, 'content-type': 'application/grpc'}, {waitForTrailers: true});
        stream.on('wantTrailers', () => stream.sendTrailers({'grpc-status': '0'}));
        stream.end(Buffer.concat([prefix, message]));
    });
});
server.on('sessionError', () => {});
server.listen(__GRPC_PORT__, '127.0.0.1');
http.createServer((request, response) => response.end(String(served))).listen(__COUNTER_PORT__, '127.0.0.1');
"""

NGINX_TEMPLATE = """# The fake Triton's HTTP side (client_ceiling.py writes this file): one process, every answer from triton.js.
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
load_module {njs};
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}  # perf_analyzer behind its schedule opens thousands of connections
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_body_buffer_size 1m;  # request bodies stay in memory, where njs reads them
    client_max_body_size 1m;
    client_body_in_single_buffer on;
    keepalive_requests 1000000000;  # never close a client's connection
    keepalive_timeout 3600s;
    js_import triton from {dir}/triton.js;
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        location / {{ js_content triton.http; }}
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""


def canned_table(canned: Canned) -> str:
    encode = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return json.dumps({
        "model": MODEL,
        "http_gets": {path: [status, kind, encode(body)] for path, (status, kind, body) in canned.http_gets.items()},
        "http_infer_header": canned.http_infer_header,
        "http_infer_data": encode(canned.http_infer_data),
        "grpc": {method: encode(body) for method, body in canned.grpc.items()},
        "grpc_stats": canned.grpc_stats,
        "requests": canned.requests,
        "grpc_infer_head": encode(canned.grpc_infer_head),
        "grpc_infer_tail": encode(canned.grpc_infer_tail),
    }, indent=1)  # fmt: skip


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class FakeTriton:
    """nginx answering Triton's HTTP calls for `ident` and Node's http2 its gRPC calls, in their
    own temp dir, both pinned to one core."""

    def __init__(self, canned: Canned, workdir: Path, core: int) -> None:
        self.dir = workdir / "fake-triton"
        self.dir.mkdir()
        self.core = core
        http_port, grpc_port, self.counter_port = free_ports(3)
        self.http, self.grpc = f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
        table = canned_table(canned)
        (self.dir / "triton.js").write_text(NJS_TEMPLATE.replace("__CANNED__", table))
        (self.dir / "grpc.js").write_text(NODE_TEMPLATE.replace("__CANNED__", table).replace("__GRPC_PORT__", str(grpc_port))
                                          .replace("__COUNTER_PORT__", str(self.counter_port)))  # fmt: skip
        (self.dir / "nginx.conf").write_text(NGINX_TEMPLATE.format(dir=self.dir, njs=NJS_MODULE, http_port=http_port))
        self.nginx: subprocess.Popen | None = None
        self.node: subprocess.Popen | None = None

    def start(self) -> None:
        pin = ["taskset", "-c", str(self.core)]  # taskset execs the server: same pid
        with (self.dir / "nginx.log").open("w") as nginx_log, (self.dir / "node.log").open("w") as node_log:  # the children keep their copies
            self.nginx = subprocess.Popen([*pin, NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")],
                                          stdout=nginx_log, stderr=subprocess.STDOUT)  # fmt: skip
            self.node = subprocess.Popen([*pin, NODE, str(self.dir / "grpc.js")], stdout=node_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for name, process in (("nginx", self.nginx), ("node", self.node)):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited {process.returncode}: see {self.dir}")
            try:
                if _http(self.http, "/v2/health/ready")[0] == 200 and self.requests("grpc") >= 0:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the fake Triton did not answer within 10 s: see {self.dir}")

    def requests(self, protocol: str) -> int:
        """Requests answered so far on `protocol` (HTTP: the bench's own stub_status queries included)."""
        if protocol == "grpc":
            return int(_http(f"127.0.0.1:{self.counter_port}", "/served")[2])
        text = _http(self.http, "/nginx_status")[2].decode()
        return int(text.splitlines()[2].split()[2])  # "server accepts handled requests" / " A H R"

    def cpu_s(self, protocol: str) -> float:
        return cpu_seconds((self.nginx if protocol == "http" else self.node).pid) or 0.0

    def versions(self) -> str:
        nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip().rsplit("/", 1)[-1]
        node = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
        return f"nginx {nginx} + njs (HTTP), Node.js {node} http2 (gRPC)"

    def stop(self) -> None:
        _stop(self.nginx)
        _stop(self.node)


# --- CPU per request at a common rate ----------------------------------------------------------


@dataclass
class CpuRun:
    client: str
    rate: int
    served_per_s: float  # requests the fake answered per second over the sample
    cpu_us: float  # the client's CPU per request (loadgen --workers 1: the Ray worker's)
    session_cpu_us: float  # every process the run started (the same as cpu_us but for Ray)
    server_cpu_us: float  # the fake Triton's (nginx or node)


def processes_cpu_s(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def ray_worker(pids: list[int]) -> int | None:
    """The Ray actor process that runs loadgen's load (its process title is ray::LoadWorker...)."""
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::LoadWorker"):
                return pid
        except OSError:
            continue
    return None


def client_command(client: str, pa: str, url: str, protocol: str, rate: int, report: Path) -> list[str]:
    """A run at a constant `rate` that lasts well past the CPU sample (the bench stops it)."""
    if client == "pa":
        return [pa, "-m", MODEL, "-u", url, "-i", protocol, "--request-rate-range", str(rate), "--async",
                "-p", "30000", "-r", "3", "-s", "1000"]  # fmt: skip
    workers = ["--workers", "1"] if client == "lg-w1" else []
    return [sys.executable, "-m", "loadgen", "run", "-m", MODEL, "-u", url, "-i", protocol, "--request-rate-range", str(rate),
            *workers, "-p", "30000", "-r", "3", "-s", "1000", "--report-dir", str(report)]  # fmt: skip


def cpu_run(client: str, pa: str, fake: FakeTriton, protocol: str, rate: int, sample_s: float, workdir: Path) -> CpuRun:
    url = fake.http if protocol == "http" else fake.grpc
    name = f"cpu-{protocol}-{client}-{rate}-{time.monotonic_ns()}"
    log = (workdir / f"{name}.log").open("w")
    process = subprocess.Popen(client_command(client, pa, url, protocol, rate, workdir / name), stdout=log,
                               stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)  # fmt: skip
    try:
        start, deadline = fake.requests(protocol), time.monotonic() + START_TIMEOUT_S
        while fake.requests(protocol) < start + rate // 10:  # the load has begun (not just the control calls)
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{CLIENTS[client]} sent no load at {rate}/s (exit {process.poll()}): see {log.name}")
            time.sleep(0.05)
        time.sleep(WARMUP_S)
        session = [process.pid] if client == "pa" else session_pids(process.pid)
        measured = [ray_worker(session)] if client == "lg-w1" else session
        if None in measured:
            raise RuntimeError(f"no Ray worker process among {session}")
        t0, n0, c0, s0, f0 = time.monotonic(), fake.requests(protocol), processes_cpu_s(measured), processes_cpu_s(session), fake.cpu_s(protocol)
        time.sleep(sample_s)
        t1, n1, c1, s1, f1 = time.monotonic(), fake.requests(protocol), processes_cpu_s(measured), processes_cpu_s(session), fake.cpu_s(protocol)
        if process.poll() is not None:
            raise RuntimeError(f"{CLIENTS[client]} ended during the CPU sample (exit {process.returncode}): see {log.name}")
    finally:
        if client == "pa":
            process.kill()
            process.wait()
        else:
            end_session(process)
        log.close()
    served = max(1, n1 - n0 - (protocol == "http"))  # less the bench's own stub_status query
    return CpuRun(client, rate, served / (t1 - t0), (c1 - c0) * 1e6 / served, (s1 - s0) * 1e6 / served, (f1 - f0) * 1e6 / served)


# --- the whole bench ---------------------------------------------------------------------------


@dataclass
class Result:
    protocol: str
    searches: dict[str, list[Search]]  # client: its searches, in the order run
    cpu: dict[str, list[CpuRun]]  # client: its CPU runs
    cpu_rate: int
    headroom: CpuRun | None = None  # the fastest client at its ceiling, for the fake's share of its core

    def ceiling(self, client: str) -> float | None:
        rates = [found.best.rate for found in self.searches[client] if found.best is not None]
        return statistics.fmean(rates) if rates else None

    def cpu_us(self, client: str, what: str = "cpu_us") -> float | None:
        runs = self.cpu.get(client)
        return statistics.fmean(getattr(run, what) for run in runs) if runs else None


def second_ladder(first: float) -> list[int]:
    """The reverse-order search starts near the first one's answer: 95% to 110% of it in 5% steps."""
    step = max(10, round(first / 20))
    return ladder(max(100, round(first) - step), round(first) + 2 * step, step)


def measure_protocol(protocol: str, clients: list[str], pa: str, fake: FakeTriton, args, workdir: Path) -> Result:
    url = fake.http if protocol == "http" else fake.grpc
    search_args = argparse.Namespace(protocol=protocol, p=args.p, pa_sync=False)
    coarse = ladder(*(int(v) for v in (args.coarse_http if protocol == "http" else args.coarse_grpc).split(":")))
    result = Result(protocol, {client: [] for client in clients}, {client: [] for client in clients}, 0)
    order = clients + (clients[::-1] if args.pairs else [])  # A B C, then C B A
    for client in order:
        name = f"{protocol} {CLIENTS[client]}"
        first = result.ceiling(client)
        rates = coarse if first is None else second_ladder(first)
        if client == "pa":
            measure = lambda rates, name=name: measure_pa(pa, rates, url, search_args, workdir, progress(name))  # noqa: E731
        else:
            workers = 1 if client == "lg-w1" else 0
            measure = lambda rates, name=name, n=workers: run_loadgen(n, rates, url, search_args, workdir, progress(name))  # noqa: E731
        result.searches[client].append(search(name, measure, rates, args.refine_steps, args.retries, args.min_rate))
    ceilings = [c for c in (result.ceiling(client) for client in clients) if c is not None]
    top = max(clients, key=lambda client: result.ceiling(client) or 0)
    if result.ceiling(top):  # is the fake far from its own limit while the fastest client runs at its ceiling?
        try:
            result.headroom = cpu_run(top, pa, fake, protocol, int(result.ceiling(top)), args.cpu_window_s, workdir)
        except RuntimeError as exc:
            print(f"  {protocol} headroom run: {exc}", file=sys.stderr, flush=True)
    result.cpu_rate = args.cpu_rate or max(100, int(CPU_RATE_SHARE * min(ceilings, default=1000) // 100 * 100))
    for client in (clients + clients[::-1]) * max(1, args.pairs):
        try:
            run = cpu_run(client, pa, fake, protocol, result.cpu_rate, args.cpu_window_s, workdir)
        except RuntimeError as exc:
            print(f"  {protocol} {CLIENTS[client]} CPU run: {exc}", file=sys.stderr, flush=True)
            continue
        result.cpu[client].append(run)
        print(f"  {protocol} {CLIENTS[client]} at {run.rate}/s: served {run.served_per_s:.0f}/s, {run.cpu_us:.1f} us CPU/request "
              f"(session {run.session_cpu_us:.1f}), server {run.server_cpu_us:.1f}", file=sys.stderr, flush=True)  # fmt: skip
    return result


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value and reference else "n/a"


def figure(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_result(result: Result) -> None:
    clients = list(result.searches)
    pa_ceiling, pa_cpu = result.ceiling("pa"), result.cpu_us("pa")
    print(f"\n{result.protocol.upper()}: highest constant rate sustained on one core (mean of {len(result.searches[clients[0]])} "
          f"searches), and CPU per request at {result.cpu_rate}/s (mean of {len(result.cpu[clients[0]])} runs)\n")  # fmt: skip
    header = ("client", "ceiling req/s (1 core)", "searches (+: all passed)", "vs perf_analyzer", "CPU us/request", "vs perf_analyzer",
              "req/s per core-second of CPU", "whole run's CPU us/request", "served req/s", "fake Triton CPU us/request")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for client in clients:
        # "+": the whole ladder passed, so the ceiling is above it
        found = " / ".join((f"{s.best.rate:g}" if s.best else "none") + ("+" if s.first_fail is None else "") for s in result.searches[client])
        cpu = result.cpu_us(client)
        served = result.cpu_us(client, "served_per_s")
        flag = "" if served is None or served >= SERVED_MIN * result.cpu_rate else " (short of the rate)"
        print(f"| {CLIENTS[client]} | {figure(result.ceiling(client))} | {found} | {ratio(result.ceiling(client), pa_ceiling)} | "
              f"{figure(cpu, 1)} | {ratio(cpu, pa_cpu)} | {figure(1e6 / cpu if cpu else None)} | "
              f"{figure(result.cpu_us(client, 'session_cpu_us'), 1)} | {figure(served)}{flag} | "
              f"{figure(result.cpu_us(client, 'server_cpu_us'), 1)} |")  # fmt: skip
    for i, order in enumerate(("first (pa first)", "second (pa last)")[: len(result.searches["pa"])]):
        reference = result.searches["pa"][i].best
        shown = [f"{CLIENTS[c]} {ratio(found[i].best.rate if found[i].best else None, reference.rate if reference else None)}"
                 for c, found in result.searches.items() if c != "pa" and len(found) > i]  # fmt: skip
        print(f"{'' if i else chr(10)}Ceiling vs perf_analyzer's in the {order} searches alone: {', '.join(shown)}")
    if result.headroom is not None:
        run = result.headroom
        print(f"\nThe fake Triton's headroom: with {CLIENTS[run.client]} at its ceiling ({run.rate}/s, served {run.served_per_s:.0f}/s), "
              f"the server used {run.server_cpu_us * run.served_per_s / 1e4:.0f}% of its core ({run.server_cpu_us:.1f} us/request) "
              f"and the client {run.session_cpu_us * run.served_per_s / 1e4:.0f}% of its own.")  # fmt: skip
    print("\nRates measured (ascending; a retried rate shows each try):")
    for client in clients:
        for found in result.searches[client]:
            print(verdict_line(found))
    for client in clients:
        if client != "pa" and pa_ceiling and result.ceiling(client):
            met = result.ceiling(client) >= GOAL * pa_ceiling
            print(f"Goal ({CLIENTS[client]} ceiling per core >= {GOAL}x perf_analyzer's): "
                  f"{'met' if met else 'MISSED'} ({result.ceiling(client) / pa_ceiling:.2f}x)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocols", default="http,grpc", help="protocols (default http,grpc)")
    parser.add_argument("--clients", default="pa,lg,lg-w1", help="pa, lg, lg-w1 (default all three; pa is the reference)")
    parser.add_argument("--server-core", type=int, default=0, help="the core the fake Triton (nginx, node) runs on (default 0)")
    parser.add_argument("--client-core", type=int, default=1, help="the core the bench and its clients run on (default 1)")
    parser.add_argument("-p", type=int, default=500, help="measurement window in ms for the searches (default 500)")
    parser.add_argument("--coarse-http", default="3000:27000:4000", help="HTTP coarse ladder START:END:STEP (default 3000:27000:4000)")
    parser.add_argument("--coarse-grpc", default="2000:26000:4000", help="gRPC coarse ladder START:END:STEP (default 2000:26000:4000)")
    parser.add_argument("--refine-steps", type=int, default=3, help="rates per refining ladder (default 3)")
    parser.add_argument("--retries", type=int, default=1, help="measurements again of a failed rate (default 1)")
    parser.add_argument("--min-rate", type=int, default=500, help="lowest rate the search goes down to (default 500)")
    parser.add_argument("--cpu-rate", type=int, default=0, help="the common rate of the CPU runs (default: 80%% of the lowest ceiling)")
    parser.add_argument("--cpu-window-s", type=float, default=4.0, help="CPU sample length in s (default 4)")
    parser.add_argument("--pairs", type=int, default=1, help="1: searches A B C C B A, CPU runs ABBA; 0: searches once (default 1)")
    args = parser.parse_args()
    clients = args.clients.split(",")
    if clients[0] != "pa" or any(c not in CLIENTS for c in clients):
        parser.error(f"--clients: pa first, then any of {', '.join(CLIENTS)}")
    if not Path(NGINX).exists() or not NJS_MODULE.exists() or not Path(NODE).exists():
        parser.error("needs nginx, its JavaScript module and Node.js: apt-get install nginx libnginx-mod-http-js nodejs")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop what was started

    began, load_before = time.monotonic(), os.getloadavg()
    pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-client-ceiling-"))
    with EmbeddedServer(REPOSITORY, workdir / "triton.log") as server:
        canned = capture(server.endpoints)
    fake = FakeTriton(canned, workdir, args.server_core)
    results = []
    try:
        fake.start()
        os.sched_setaffinity(0, {args.client_core})  # the bench, and every client it starts from now on
        for protocol in args.protocols.split(","):
            results.append(measure_protocol(protocol, clients, pa, fake, args, workdir))
    finally:
        fake.stop()
    print(f"\nThe clients against a fake Triton ({fake.versions()}, answering copies of the real `{MODEL}`'s answers) "
          f"on core {args.server_core}; each client and the bench on core {args.client_core}. Searches: -p {args.p}, "
          f"bench/workers.py's definition of sustained; CPU: {args.cpu_window_s:g} s samples after {WARMUP_S:g} s of load.")  # fmt: skip
    for result in results:
        print_result(result)
    print(f"\nMachine: {os.cpu_count()} cores; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after. "
          f"Bench time {(time.monotonic() - began) / 60:.1f} min; files in {workdir}.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
