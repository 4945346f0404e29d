"""Bad input gets a clear answer: one line on stderr naming the problem and its fix, exit 2 (3 when
the server cannot be reached), never a traceback.

Most cases run `loadgen.cli.main` in this process (no interpreter start-up each); a handful run
`python -m loadgen` end to end. Cases that need a server use the session's real Triton.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.cli import main
from loadgen.server import free_port

CLOSED_PORT = free_port()  # nothing listens there
SERVER_KEYS = ("{http}", "{grpc}", "{metrics}", "{http_port}")
# A case that passes validation by mistake measures briefly instead of for the default minute.
BRIEF = ["-p", "200", "-r", "3"]

FILES: dict[str, str | bytes | dict] = {
    "bad.yaml": "a: [\n",
    "typo.yaml": "concurency-range: '1:4'\n",
    "far.yaml": "zzz: 1\n",
    "soon.yaml": "measurement-interval: soon\n",
    "half.yaml": "batch-size: 1.5\n",
    "yes.yaml": "model-name: yes\n",
    "maybe.yaml": "verbose-csv: maybe\n",
    "list.yaml": "- a\n- b\n",
    "header-map.yaml": "header: {a: b}\n",
    "binary.yaml": b"\xff\xfe",
    "concurrency.yaml": "concurrency-range: '1:2'\n",
    "gaps-bad.txt": "100\nabc\n",
    "gaps-binary.txt": b"\xff\xfe",
    "binary-summary/summary.json": b"\xff",
    "wrong-name.json": {"data": [{"WRONG": ["a"]}]},
    "extra-name.json": {"data": [{"IMAGE": ["a"], "EXTRA": [1]}]},
    "two-elements.json": {"data": [{"IMAGE": ["a", "b"]}]},
    "number.json": {"data": [{"IMAGE": [5]}]},
    "shape.json": {"data": [{"IMAGE": {"content": ["a", "b"], "shape": [2]}}]},
    "shape-text.json": {"data": [{"IMAGE": {"content": ["a"], "shape": "1"}}]},
    "malformed.json": "{",
    "binary.json": b"\xff\xfe",
    "no-data.json": {"data": []},
    "fp32-text.json": {"data": [{"HEATMAP": ["a"], "WH": [0], "OFFSET": [0], "LETTERBOX": [0]}]},
    # centernet-postprocess's inputs as raw files (the others present, so the folder reads as one file
    # per input); HEATMAP's 5 bytes are no whole number of FP32 elements
    "raw/HEATMAP": b"12345",
    "raw/WH": b"",
    "raw/OFFSET": b"",
    "raw/LETTERBOX": b"",
    "empty-dir/.keep": b"",
    "prompts.txt": "The river starts\n",
    "prompts-bad.jsonl": '{"text": "fine"}\n\n{"text": oops}\n',
    "prompts-empty.jsonl": "\n",
    "trace.jsonl": '{"offset_ms": 0, "batch_size": 4}\n{"offset_ms": 10}\n',
    "trace-not-json.jsonl": '{"offset_ms": 0}\n{oops\n',
    "trace-key.jsonl": '{"offset_ms": 0, "ofset": 1}\n',
    "trace-no-offset.jsonl": '{"offset_ms": 0}\n\n{"input": 1}\n',
    "trace-negative.jsonl": '{"offset_ms": 0}\n{"offset_ms": -3}\n',
    "trace-input.jsonl": '{"offset_ms": 0, "input": -1}\n',
    "trace-batch.jsonl": '{"offset_ms": 0, "batch_size": 0}\n',
    "trace-batches.jsonl": '{"offset_ms": 0, "batch_size": 4}\n{"offset_ms": 10, "batch_size": 2}\n',
    "trace-model.jsonl": '{"offset_ms": 0}\n{"offset_ms": 10, "model": "resnet"}\n',
}

# (args, exit code, a piece of the message). {files} is a folder holding FILES; {http}, {grpc},
# {metrics} are the session server's ports, {closed} a port nothing listens on.
CASES = [
    # ranges
    (["run", "--concurrency-range", "4:1"], 2, "'4:1' ends before it starts: write start:end with end >= start"),
    (["run", "--concurrency-range", "1:4:0"], 2, "has step 0: the step must be at least 1"),
    (["run", "--concurrency-range", "0:4"], 2, "starts below 1"),
    (["run", "--concurrency-range", "a:b"], 2, "is not start[:end[:step]] of whole numbers, e.g. 1:8:1"),
    (["run", "--concurrency-range", "1.5"], 2, "of whole numbers"),
    (["run", "--concurrency-range", "1:2:3:4"], 2, "has 4 parts"),
    (["run", "--concurrency-range", "1:1000000000"], 2, "more than 10000 levels: take a larger step"),
    (["run", "--request-rate-range", "0"], 2, "starts below or at 0"),
    (["run", "--request-rate-range", "-5"], 2, "starts below or at 0"),
    (["run", "--request-rate-range", "nan"], 2, "is not start[:end[:step]] of numbers"),
    (["run", "--request-rate-range", "10:inf"], 2, "is not start[:end[:step]] of numbers"),
    (["run", "--request-rate-range", "10:20:0"], 2, "the step must be above 0"),
    (["run", "--request-rate-range", "10:0"], 2, "needs -l/--latency-threshold or --sla"),
    (["run", "--concurrency-range", "1:2", "--request-rate-range", "10"], 2, "are different loads: give only one"),
    (["run", "--config", "{files}/concurrency.yaml", "--request-rate-range", "10"], 2, "are different loads"),
    # flags
    (["run", "-p", "-5"], 2, "measurement interval must be positive, got -5 ms: fix -p"),
    (["run", "-p", "abc"], 2, "argument -p/--measurement-interval: invalid int value: 'abc'"),
    (["run", "--percentile", "100"], 2, "percentile must be between 1 and 99"),
    (["run", "--percentile", "99.5"], 2, "argument --percentile: invalid int value"),
    (["run", "-l", "nan"], 2, "--latency-threshold must be a finite number"),
    (["run", "-s", "inf"], 2, "--stability-percentage must be a finite number"),
    (["run", "-b", "0"], 2, "batch size must be at least 1"),
    (["run", "-r", "2"], 2, "max trials must be at least 3"),
    (["run", "--seed", "-1"], 2, "--seed must be 0 or more"),
    (["run", "-x", "abc"], 2, "-x 'abc' is not a model version: give a whole number from 1 up"),
    (["run", "-m", ""], 2, "-m/--model-name is empty"),
    (["run", "-i", "ftp"], 2, "argument -i/--protocol: invalid choice: 'ftp'"),
    (["run", "--bogus"], 2, "unrecognized arguments: --bogus"),
    ([], 2, "the following arguments are required: command (see loadgen --help)"),
    (["run", "--headroom", "100%"], 2, "--headroom must be from 0% up to"),
    (["run", "--shape", "IMAGE"], 2, "is not NAME:d1,d2,... with positive dimensions"),
    (["run", "-H", "no-colon"], 2, "is not Header:Value"),
    (["run", "--export-metrics-port", "70000"], 2, "is not a port number (1-65535)"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "--report-dir", "/proc/report"], 2, "give --report-dir a folder you can write to"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "-f", "/proc/x.csv"], 2, "give -f a folder you can write to"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "--junit", "/proc/x.xml"], 2, "give --junit a folder you can write to"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "--profile-export-file", "/proc/x.json"], 2,
     "give --profile-export-file a folder you can write to"),
    (["run", "--metrics-url", "h:1/m"], 2, "--metrics-url only applies with --collect-metrics"),
    (["run", "--collect-metrics", "--metrics-url", "http://[::1"], 2, "is not host:port/path"),
    (["run", "--request-intervals", "{files}/missing.txt"], 2, "cannot read --request-intervals"),
    (["run", "--request-intervals", "{files}/gaps-bad.txt"], 2, "one whole number of microseconds per line"),
    (["run", "--request-intervals", "{files}/gaps-binary.txt"], 2, "give a text file of whole microseconds"),
    (["run", "--trace-collector-port", "4318"], 2,
     "--trace-collector-port is for a server given with -u: the embedded server's traces are read from its trace file"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "--trace-collector-port", "abc"], 2,
     "--trace-collector-port 'abc' is not PORT or HOST:PORT (port 1-65535), e.g. 4318"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "--trace-collector-port", "4318", "--trace-level", "OFF"], 2,
     "--trace-collector-port receives Triton's traces: drop --trace-level OFF"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x", "--trace-collector-port", "4318", "--workers", "2"], 2,
     "it does not apply to --workers"),
    # --schedule-file: a bad line is named by its number; options that go with it
    (["run", "--schedule-file", "{files}/missing.jsonl"], 2, "cannot read --schedule-file {files}/missing.jsonl: No such file"),
    (["run", "--schedule-file", "{files}/trace-not-json.jsonl"], 2, "trace-not-json.jsonl line 2 is not JSON: give one JSON object a line"),
    (["run", "--schedule-file", "{files}/trace-key.jsonl"], 2, "line 1 has unknown key 'ofset': did you mean offset_ms?"),
    (["run", "--schedule-file", "{files}/trace-no-offset.jsonl"], 2, "line 3 has no offset_ms: give each request's time"),
    (["run", "--schedule-file", "{files}/trace-negative.jsonl"], 2, "line 2: offset_ms -3 is not a finite number of ms, 0 or more"),
    (["run", "--schedule-file", "{files}/trace-input.jsonl"], 2, "line 1: input -1 is not a whole number, 0 or more"),
    (["run", "--schedule-file", "{files}/trace-batch.jsonl"], 2, "line 1: batch_size 0 is not a whole number, 1 or more"),
    (["run", "--schedule-file", "{files}/trace-batches.jsonl"], 2, "varying batch sizes in one replay are not supported"),
    (["run", "--schedule-file", "{files}/trace.jsonl", "-b", "2"], 2, "-b 2 and --schedule-file {files}/trace.jsonl's batch_size 4 (line 1) differ"),
    (["run", "--schedule-file", "{files}/trace-model.jsonl"], 2,
     "line 2 names model 'resnet', which the run does not measure: the run's models are centernet-ensemble"),
    (["run", "--schedule-file", "{files}/trace.jsonl", "--request-rate-range", "10"], 2, "are different loads: give only one"),
    (["run", "--schedule-file", "{files}/trace.jsonl", "--replay-speed", "0"], 2, "--replay-speed must be above 0"),
    (["run", "--replay-loop"], 2, "--replay-loop only applies with --schedule-file: add it, or drop --replay-loop"),
    (["export-schedule", "{files}/missing.json"], 2, "cannot read {files}/missing.json: No such file or directory"),
    (["export-schedule", "{files}/malformed.json"], 2, "is not whole JSON (line 1)"),
    (["export-schedule", "{files}/no-data.json"], 2, 'is not a profile export: it has no "experiments" list'),
    (["export-schedule", "{files}/empty-dir"], 2, "has no summary.json: pass a report folder written by loadgen run"),
    # streaming options without --streaming, or out of range
    (["run", "--goodput-ttft-ms", "50"], 2, "--goodput-ttft-ms bounds the responses of streamed requests: add --streaming"),
    (["run", "--goodput-ttft-ms", "50", "--goodput-itl-ms", "5"], 2, "--goodput-ttft-ms and --goodput-itl-ms bound the responses"),
    (["run", "--streaming", "--goodput-itl-ms", "0"], 2, "--goodput-itl-ms must be a finite number of ms above 0, got 0"),
    (["run", "--streaming", "--goodput-ttft-ms", "inf"], 2, "--goodput-ttft-ms must be a finite number, got inf"),
    (["run", "--token-output", "output_ids"], 2, "--token-output names the output that holds a streamed response's tokens: add --streaming"),
    # SLAs
    (["run", "--sla", "p99_ms<"], 2, "is not METRIC OP NUMBER"),
    (["run", "--sla", "p99<5"], 2, "unknown metric 'p99'"),
    (["run", "--sla", "p101_ms<5"], 2, "percentile 101 is over 100"),
    (["run", "--sla", "p99_ms<1e999"], 2, "beyond a float's range"),
    # URLs that do not parse, and servers that are not there
    (["run", "-u", "localhost", "-m", "x"], 2, "bad server URL 'localhost': give it as host:port"),
    (["run", "-u", "localhost:99999", "-m", "x"], 2, "port 1-65535"),
    (["run", "-u", "a b:8000", "-m", "x"], 2, "bad server URL"),
    (["run", "-u", "127.0.0.1:8000"], 2, "-m/--model-name is required with -u"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x"], 3, "cannot reach Triton at 127.0.0.1:{closed} (Connection refused): check -u"),
    (["run", "-u", "127.0.0.1:{closed}", "-i", "grpc", "-m", "x"], 3, "cannot reach Triton at 127.0.0.1:{closed} (Connection refused)"),
    # config files
    (["run", "--config", "{files}/missing.yaml"], 2, "cannot read config file"),
    (["run", "--config", "{files}/bad.yaml"], 2, "is not valid YAML at line 2: fix its syntax"),
    (["run", "--config", "{files}/typo.yaml"], 2, "unknown key 'concurency-range': did you mean concurrency-range?"),
    (["run", "--config", "{files}/far.yaml"], 2, "unknown key 'zzz': keys are the long flag names"),
    (["run", "--config", "{files}/soon.yaml"], 2, "--measurement-interval must be a whole number, got 'soon'"),
    (["run", "--config", "{files}/half.yaml"], 2, "--batch-size must be a whole number, got 1.5"),
    (["run", "--config", "{files}/yes.yaml"], 2, "--model-name must be text, got True (quote it"),
    (["run", "--config", "{files}/maybe.yaml"], 2, "verbose-csv must be true or false"),
    (["run", "--config", "{files}/list.yaml"], 2, "must be a mapping of option: value"),
    (["run", "--config", "{files}/header-map.yaml"], 2, "header must be a value or a list of values"),
    (["run", "--config", "{files}/binary.yaml"], 2, "is not UTF-8 text"),
    # serve, report, compare
    (["serve", "--http-port", "70000"], 2, "port 70000 is not a port number"),
    (["serve", "--http-port", "5000", "--grpc-port", "5000"], 2, "port 5000 is given twice"),
    (["serve", "--model-repository", "{files}/missing"], 2, "is not a directory: pass --model-repository DIR"),
    (["run", "-m", "no-such-model"], 2, "model no-such-model is not in"),
    (["compare", "a", "b", "--max-regression", "nan"], 2, "--max-regression 'nan' is not a percentage"),
    (["report", "{files}/missing"], 2, "has no summary.json"),
    (["report", "{files}/binary-summary"], 2, "is not UTF-8 text"),
    # against the server: models, protocols and ports
    (["run", "-u", "{http}", "-m", "no-such-model"], 2, "model 'no-such-model' is not on the server at"),
    (["run", "-u", "{grpc}", "-i", "grpc", "-m", "no-such-model"], 2, "model 'no-such-model' is not on the server at"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "-x", "7"], 2, "version 7 is not on the server"),
    (["run", "-u", "{grpc}", "-i", "grpc", "-m", "centernet-ensemble", "-x", "7"], 2, "version 7 is not on the server"),
    (["run", "-u", "{grpc}", "-m", "centernet-ensemble"], 2, "answered in HTTP/2: is it the gRPC port? use -i grpc or the HTTP port (8000)"),
    (["run", "-u", "{http}", "-i", "grpc", "-m", "centernet-ensemble"], 2, "is it the HTTP port? use -i http or the gRPC port (8001)"),
    (["run", "-u", "{metrics}", "-m", "centernet-ensemble"], 2, "is it Triton's metrics port? use the HTTP port (8000)"),
    (["run", "-u", "{metrics}", "-i", "grpc", "-m", "centernet-ensemble"], 2, "is it Triton's metrics port? use the gRPC port (8001)"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "-b", "9"], 2, "-b 9 exceeds the max_batch_size 8"),
    # decoupled models (the shipped llm-ensemble streams a response per token)
    (["run", "-u", "{grpc}", "-i", "grpc", "-m", "llm-ensemble"], 2,
     "model 'llm-ensemble' is decoupled (a stream of responses per request): add --streaming, with -i grpc, or -i http where"),
    (["run", "-u", "{http}", "-m", "tiny-lm"], 2, "model 'tiny-lm' is decoupled (a stream of responses per request): add --streaming"),
    (["run", "-u", "{grpc}", "-i", "grpc", "-m", "llm-ensemble", "--streaming", "--token-output", "output_ids"], 2,
     "--token-output 'output_ids': model 'llm-ensemble' has no such output; its outputs are text_output"),
    (["run", "-u", "{grpc}", "-i", "grpc", "-m", "llm-ensemble", "--streaming", "-b", "2"], 2,
     "model 'llm-ensemble' does not support batching: use -b 1"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--streaming"], 2,
     "input 'IMAGE' holds bytes that are not UTF-8 text, which Triton's generate extension cannot carry"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--export-metrics-port", "{http_port}"], 2,
     "port {http_port} is in use: choose another --export-metrics-port"),
    (["serve", "--http-port", "{http_port}"], 2, "port {http_port} is in use: choose another one"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--trace-collector-port", "{http_port}"], 2,
     "port {http_port} is in use: choose another --trace-collector-port"),
    # input data and shapes
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/wrong-name.json"], 2,
     "data[0] has input 'WRONG', which the model does not have: its inputs are IMAGE"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/extra-name.json"], 2, "has input 'EXTRA'"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/two-elements.json"], 2,
     "IMAGE has 2 elements, shape [1] needs 1"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/number.json"], 2, "IMAGE holds 5, which is not BYTES"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/shape.json"], 2,
     "IMAGE.shape [2] does not fit the model's shape [1]"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/shape-text.json"], 2, "is not a list of sizes"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/malformed.json"], 2, "is not valid JSON (line 1)"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/binary.json"], 2, "is not UTF-8 text"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/no-data.json"], 2, 'needs a non-empty "data" list'),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/missing.json"], 2,
     "is not zero, random, a JSON or prompts file (.txt, .jsonl) or a directory: check the path"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/empty-dir"], 2, "holds neither one file per input"),
    (["run", "-u", "{http}", "-m", "centernet-postprocess", "--input-data", "{files}/fp32-text.json"], 2,
     'HEATMAP holds "a", which is not FP32 (a number)'),
    (["run", "-u", "{http}", "-m", "centernet-postprocess", "--input-data", "{files}/raw"], 2,
     "HEATMAP has 5 bytes, not a whole number of FP32 elements (4 bytes each)"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/prompts-bad.jsonl"], 2,
     "prompts-bad.jsonl, line 3: not valid JSON"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/prompts-empty.jsonl"], 2, "holds no prompts"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--max-tokens", "8"], 2,
     "--max-tokens fills an input named max_tokens, max_new_tokens or request_output_len, and the model has none"),
    (["run", "--prompt-tokens", "8", "--input-data", "{files}/prompts.txt"], 2, "--prompt-tokens makes up the prompts and --input-data"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--shape", "FOO:1"], 2, "--shape FOO: the model has no input 'FOO'; its inputs are IMAGE"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--shape", "IMAGE:2"], 2, "--shape IMAGE:2 does not fit input 'IMAGE' of shape [1]"),
]

# End to end, through the interpreter: no traceback reaches the terminal whatever the layer.
END_TO_END = [
    (["run", "--config", "{files}/bad.yaml"], 2, "is not valid YAML"),
    (["run", "--concurrency-range", "4:1"], 2, "ends before it starts"),
    (["run", "-u", "127.0.0.1:{closed}", "-m", "x"], 3, "cannot reach Triton at"),
    (["run", "-u", "{grpc}", "-m", "centernet-ensemble"], 2, "is it the gRPC port?"),
    (["run", "-u", "{http}", "-m", "no-such-model"], 2, "is not on the server"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/wrong-name.json"], 2, "has input 'WRONG'"),
    (["run", "-u", "{grpc}", "-i", "grpc", "-m", "llm-ensemble"], 2, "is decoupled (a stream of responses per request): add --streaming"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--input-data", "{files}/prompts-bad.jsonl"], 2, "line 3: not valid JSON"),
    (["serve", "--http-port", "{http_port}"], 2, "is in use"),
    (["run", "--schedule-file", "{files}/trace-not-json.jsonl"], 2, "line 2 is not JSON"),
    (["export-schedule", "{files}/malformed.json"], 2, "is not whole JSON"),
    (["run", "-u", "{http}", "-m", "centernet-ensemble", "--trace-collector-port", "{http_port}"], 2, "is in use"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            path.write_text(json.dumps(content))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _fill(texts: list[str], request, files: Path) -> list[str]:
    """The case's text with its placeholders filled; asks for the server only when a case needs it."""
    values = {"files": files, "closed": CLOSED_PORT}
    if any(key in text for text in texts for key in SERVER_KEYS):
        triton = request.getfixturevalue("triton")
        values.update(http=triton.http, grpc=triton.grpc, metrics=triton.metrics, http_port=triton.http.rsplit(":", 1)[1])
    return [text.format(**values) for text in texts]


def _argv(args: list[str], tmp_path: Path) -> list[str]:
    if args[:1] != ["run"]:
        return args
    brief = BRIEF if "-u" in args else []  # config-file cases must not be overridden by flags
    return ["run", *brief, "--report-dir", str(tmp_path / "report"), *args[1:]]


def _assert_one_line(err: str, code: int, expected_code: int, message: str) -> None:
    assert "Traceback" not in err
    assert err.startswith("loadgen: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert message in err, err
    assert code == expected_code, err


@pytest.mark.parametrize("args,code,message", CASES, ids=[" ".join(args) or "no command" for args, _, _ in CASES])
def test_bad_input_in_process(args, code, message, files, tmp_path, request, capsys):
    *argv, message = _fill([*args, message], request, files)
    result = main(_argv(argv, tmp_path))
    _assert_one_line(capsys.readouterr().err, result, code, message)


@pytest.mark.parametrize("args,code,message", END_TO_END, ids=[" ".join(args) for args, _, _ in END_TO_END])
def test_bad_input_end_to_end(args, code, message, files, tmp_path, request):
    *argv, message = _fill([*args, message], request, files)
    process = subprocess.run([sys.executable, "-m", "loadgen", *_argv(argv, tmp_path)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    _assert_one_line(process.stderr, process.returncode, code, message)
