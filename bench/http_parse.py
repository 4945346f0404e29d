"""What parsing one HTTP/1.1 response costs: loadgen's parser against h11, on the same bytes.

    python bench/http_parse.py [--seconds 2] [--repeats 5]

The bytes are the shape of Triton's answer to an `ident` infer over HTTP with a binary output
(an [1,16] FP32 tensor: a JSON header, then 64 bytes), as one read. Rows, each timed for
--seconds and repeated --repeats times in ABBA order (the median printed):

- `loadgen, repeated head`: one `ResponseParser` fed the same response again and again, as on a
  keep-alive connection under load, where Triton's heads repeat byte for byte (no `Date`);
- `loadgen, new head`: the head differs from the previous one every time (two heads alternate),
  so each response takes the full check;
- `h11`: one request–response cycle of h11's client connection (send the request, feed the
  response, read events to EndOfMessage, start the next cycle), the well-kept pure-Python
  sans-IO library loadgen would otherwise use. h11 is not a dependency: `pip install h11`.

The figure that decides is the lean client's whole CPU per request (bench/http_clients.py,
30-45 µs here): a parser costing a large part of it would show in every load test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen.protocol.http1 import ResponseParser  # noqa: E402

_HEADER = json.dumps(
    {
        "model_name": "ident",
        "model_version": "1",
        "outputs": [{"name": "OUTPUT", "datatype": "FP32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}],
    },
    separators=(",", ":"),
).encode()
_BODY = _HEADER + bytes(64)


def _response(content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nInference-Header-Content-Length: "
        + str(len(_HEADER)).encode() + b"\r\nContent-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
    )  # fmt: skip


RESPONSE = _response(b"application/octet-stream")
OTHER = _response(b"application/octet-stream ")  # the same response, a byte longer head


def per_call_us(call: Callable[[], None], seconds: float) -> float:
    """Mean wall time of `call`, in µs, over batches of 1000 until `seconds` have passed."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            call()
        calls += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls * 1e6


def loadgen_repeated() -> Callable[[], None]:
    parser = ResponseParser()

    def call() -> None:
        assert parser.feed(RESPONSE) is not None

    return call


def loadgen_new_head() -> Callable[[], None]:
    parser, heads = ResponseParser(), [RESPONSE, OTHER]

    def call() -> None:
        heads.reverse()
        assert parser.feed(heads[0]) is not None

    return call


def h11_cycle() -> Callable[[], None]:
    import h11

    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(method="POST", target="/v2/models/ident/infer", headers=[("Host", "x"), ("Content-Length", "0")])

    def call() -> None:
        conn.send(request)
        conn.send(h11.EndOfMessage())
        conn.receive_data(RESPONSE)
        while type(conn.next_event()) is not h11.EndOfMessage:
            pass
        conn.start_next_cycle()

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = {"loadgen, repeated head": loadgen_repeated, "loadgen, new head": loadgen_new_head}
    try:
        import h11

        rows[f"h11 {h11.__version__}"] = h11_cycle
    except ImportError:
        print("h11 is not installed (pip install h11): its row is left out", file=sys.stderr)
    names = list(rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else reversed(names):  # ABBA against drift
            times[name].append(per_call_us(rows[name](), args.seconds))
    print(f"one response of {len(RESPONSE)} bytes; median of {args.repeats} x {args.seconds:g} s")
    print("| parser | µs per response | runs |")
    print("|---|---|---|")
    for name in names:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"| {name} | {statistics.median(times[name]):.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
