"""Text models' input data: prompts files (.txt, .jsonl), made-up prompts of N tokens
(--prompt-tokens) counted with the shipped tokenizer, --max-tokens, and the requests they make;
then the shipped llm-ensemble on the real server, streamed those requests over gRPC and HTTP, and
`loadgen run --streaming` with a prompts file."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, trainers
from tritonclient.utils import deserialize_bytes_tensor

from loadgen.errors import UsageError
from loadgen.inputs import build_request_inputs, model_inputs
from loadgen.options import build_config
from loadgen.prompts import FIRST_WORDS, PROMPT_COUNT, WORDS, read_prompts, repository_tokenizer, synthetic_prompts
from loadgen.transport import open_transport
from loadgen.validation import from_wire

REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
MAX_PROMPT_TOKENS = 768  # the shipped tokenizer model's max_prompt_tokens: longer prompts are refused

# The shipped llm-ensemble as Triton describes it (model_repository/README.md).
LLM = (
    {"name": "llm-ensemble", "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1]},
                                        {"name": "max_tokens", "datatype": "INT32", "shape": [1]}]},
    {"max_batch_size": 0, "input": [{"name": "text_input", "data_type": "TYPE_STRING", "dims": ["1"]},
                                    {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": ["1"], "optional": True}]},
)  # fmt: skip


def model(inputs, max_batch_size=0, optional=()):
    """Metadata and config of a model with `inputs` ((name, datatype, dims) each)."""
    shapes = [([-1] if max_batch_size else []) + list(dims) for _, _, dims in inputs]
    metadata = {"name": "m", "inputs": [{"name": n, "datatype": t, "shape": s} for (n, t, _), s in zip(inputs, shapes)]}
    return metadata, {"max_batch_size": max_batch_size, "input": [{"name": n, "optional": n in optional} for n, _, _ in inputs]}


def build(spec, repository=None, **options):
    config = build_config({k.replace("_", "-"): v for k, v in options.items()})
    return build_request_inputs(model_inputs(*spec, config.inputs.batch_size), config.inputs, repository)


def tensors(request) -> dict:
    """A request's tensors by name: BYTES as their elements, others as arrays."""
    return {t.name: deserialize_bytes_tensor(t.data).tolist() if t.datatype == "BYTES" else from_wire(t.datatype, t.data).reshape(t.shape)
            for t in request}  # fmt: skip


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture(scope="module")
def shipped_tokenizer() -> Tokenizer:
    """The shipped tokenizer, as its model builds it at its first load (written beside it if missing)."""
    spec = importlib.util.spec_from_file_location("build_tokenizer", REPOSITORY / "tokenizer" / "build_tokenizer.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder.load(str(REPOSITORY / "tokenizer"))


def counted(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text).ids)  # as the tokenizer model counts a prompt


# -- prompts files ----------------------------------------------------------------------------


def test_a_txt_file_is_one_prompt_a_line_blank_lines_skipped(tmp_path):
    path = write(tmp_path, "p.txt", "The river starts\r\n\n   \n  indented, kept as it is  \nlast without a newline")
    assert read_prompts(path) == ["The river starts", "  indented, kept as it is  ", "last without a newline"]
    assert read_prompts(write(tmp_path, "form.txt", "one\x0cstill one\u2028and still\n")) == ["one\x0cstill one\u2028and still"]


def test_a_jsonl_line_gives_its_text_text_input_or_prompt(tmp_path):
    lines = ['{"text": "genai-perf and AIPerf"}', "", '{"text_input": "a trace", "output_length": 20}', '{"prompt": "émigré 🙂"}']
    assert read_prompts(write(tmp_path, "p.jsonl", "\n".join(lines) + "\n")) == ["genai-perf and AIPerf", "a trace", "émigré 🙂"]


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", '{"text": "fine"}\n{"text": "fine"}\n{"text": oops}\n', r"bad\.jsonl, line 3: not valid JSON"),
    ("key.jsonl", '{"text": "fine"}\n\n{"question": "?"}\n', r"line 3: no prompt: give an object with \"text\""),
    ("list.jsonl", '["a list"]\n', r"line 1: no prompt"),
    ("number.jsonl", '{"text": 5}\n', r"line 1: 'text' is 5, not a string"),
    ("both.jsonl", '{"text": "a", "prompt": "b"}\n', r"line 1: both 'text' and 'prompt': give the prompt under one key"),
    ("latin1.txt", b"fine\ncaf\xe9\n", r"latin1\.txt, line 2: not UTF-8 text"),
    ("empty.txt", "", r"empty\.txt holds no prompts: give one a line$"),
    ("blank.txt", "\n  \n\r\n", r"holds no prompts"),
    ("empty.jsonl", "\n", r"holds no prompts: give one a line, as \{\"text\": \"...\"\}"),
])  # fmt: skip
def test_a_bad_prompts_file_is_one_line_naming_the_line(tmp_path, name, content, message):
    with pytest.raises(UsageError, match=message) as raised:
        read_prompts(write(tmp_path, name, content))
    assert "\n" not in str(raised.value)


# -- made-up prompts ---------------------------------------------------------------------------


def test_the_word_lists_are_single_tokens_of_the_shipped_tokenizer(shipped_tokenizer):
    assert all(len(shipped_tokenizer.encode(" " + word).ids) == 1 for word in WORDS)
    assert set(FIRST_WORDS) <= set(WORDS) and all(len(shipped_tokenizer.encode(word).ids) == 1 for word in FIRST_WORDS)


@pytest.mark.parametrize("tokens", [1, 2, 17, 256, MAX_PROMPT_TOKENS])
def test_made_up_prompts_have_exactly_the_tokens_asked_for(shipped_tokenizer, tokens):
    for tokenizer in (None, shipped_tokenizer):  # without the tokenizer at hand, and counted with it
        prompts = synthetic_prompts(tokens, seed=0, tokenizer=tokenizer)
        assert len(prompts) == PROMPT_COUNT
        assert {counted(shipped_tokenizer, prompt) for prompt in prompts} == {tokens}
        assert len(set(prompts)) == (26 if tokens == 1 else PROMPT_COUNT)  # distinct, but for the 26 one-word ones


def test_made_up_prompts_are_the_same_for_the_same_seed():
    assert synthetic_prompts(40, seed=0) == synthetic_prompts(40, seed=0) != synthetic_prompts(40, seed=1)


def test_another_tokenizer_counts_the_words(shipped_tokenizer):
    """A smaller vocabulary splits words: the words are counted with it, still exactly."""
    spec = importlib.util.spec_from_file_location("build_tokenizer", REPOSITORY / "tokenizer" / "build_tokenizer.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    small = builder.train(300)
    assert len(small.encode(" mountains").ids) > 1
    for tokens in (1, 5, 100):
        assert {counted(small, p) for p in synthetic_prompts(tokens, seed=0, tokenizer=small)} == {tokens}
    assert {counted(small, p) for p in synthetic_prompts(100, seed=0)} != {100}  # the shipped count would be wrong here


def test_a_tokenizer_that_merges_across_spaces_is_trimmed_to_the_count():
    """No pre-tokenizer: merges span words ("now and then" is one token), so a text's tokens are not
    its words' sum; most prompts still get the count, the others come within a couple of tokens."""
    merging = Tokenizer(models.BPE())
    merging.train([str(REPOSITORY / "tokenizer" / "corpus.txt")], trainers.BpeTrainer(vocab_size=1024, show_progress=False))
    assert merging.token_to_id("now and then") is not None
    for tokens in (60, 300):
        counts = [counted(merging, p) for p in synthetic_prompts(tokens, seed=0, tokenizer=merging)]
        assert sum(count == tokens for count in counts) >= 0.9 * len(counts) and all(abs(c - tokens) <= 2 for c in counts), counts


def test_the_repository_tokenizer_is_read_when_written(tmp_path, shipped_tokenizer):
    assert repository_tokenizer(None) is None and repository_tokenizer(tmp_path) is None
    assert repository_tokenizer(REPOSITORY).to_str() == shipped_tokenizer.to_str()
    (tmp_path / "tokenizer").mkdir()
    write(tmp_path / "tokenizer", "tokenizer.json", "{not json")
    with pytest.raises(UsageError, match=r"cannot read the tokenizer .*tokenizer\.json"):
        repository_tokenizer(tmp_path)


# -- the requests they make ---------------------------------------------------------------------


def test_each_prompt_is_one_request_and_optional_inputs_are_left_out(tmp_path):
    path = write(tmp_path, "p.txt", "first prompt\nsecond prompt\n")
    requests = build(LLM, input_data=str(path))
    assert [tensors(r) for r in requests] == [{"text_input": [b"first prompt"]}, {"text_input": [b"second prompt"]}]
    assert requests[0][0].shape == (1,)


def test_max_tokens_goes_to_the_input_named_for_it(tmp_path):
    requests = build(LLM, input_data=str(write(tmp_path, "p.jsonl", '{"text": "a"}\n{"text": "b"}\n')), max_tokens=8)
    assert [[t.name for t in r] for r in requests] == [["text_input", "max_tokens"]] * 2
    assert [tensors(r)["max_tokens"].tolist() for r in requests] == [[8], [8]]
    # TensorRT-LLM's names, any case; and with other data: random, or JSON that leaves it out
    for name in ("max_new_tokens", "REQUEST_OUTPUT_LEN"):
        (request,) = build(model([("X", "FP32", [2]), (name, "INT32", [1])]), input_data="zero", max_tokens=5)
        assert tensors(request)[name].tolist() == [5]
    path = write(tmp_path, "d.json", json.dumps({"data": [{"text_input": ["from JSON"]}]}))
    (request,) = build(LLM, input_data=str(path), max_tokens=3)
    assert tensors(request) == {"text_input": [b"from JSON"], "max_tokens": tensors(request)["max_tokens"]}
    assert tensors(request)["max_tokens"].tolist() == [3]


def test_made_up_prompts_are_requests_of_that_many_tokens(shipped_tokenizer):
    requests = build(LLM, REPOSITORY, prompt_tokens=32, max_tokens=4)
    assert len(requests) == PROMPT_COUNT
    texts = [tensors(r)["text_input"][0].decode() for r in requests]
    assert {counted(shipped_tokenizer, text) for text in texts} == {32}
    assert build(LLM, None, prompt_tokens=32, max_tokens=4)[0][0].data == requests[0][0].data  # the same either way


def test_a_batch_takes_consecutive_prompts(tmp_path):
    path = write(tmp_path, "p.txt", "a\nb\nc\n")
    requests = build(model([("TEXT", "BYTES", [1]), ("max_tokens", "INT32", [1])], max_batch_size=4), input_data=str(path),
                     batch_size=2, max_tokens=7)  # fmt: skip
    assert [tensors(r)["TEXT"] for r in requests] == [[b"a", b"b"], [b"c", b"a"]]
    assert requests[0][0].shape == (2, 1) and tensors(requests[0])["max_tokens"].tolist() == [[7], [7]]


def test_the_text_goes_to_the_only_required_text_input(tmp_path):
    path = str(write(tmp_path, "p.txt", "hello\n"))
    trtllm = model([("text_input", "BYTES", [1]), ("max_tokens", "INT32", [1]), ("bad_words", "BYTES", [-1]),
                    ("stop_words", "BYTES", [-1]), ("temperature", "FP32", [1])], optional=("bad_words", "stop_words", "temperature"))  # fmt: skip
    (request,) = build(trtllm, input_data=path, max_tokens=16)
    assert tensors(request) == {"text_input": [b"hello"], "max_tokens": tensors(request)["max_tokens"]}


@pytest.mark.parametrize("spec,options,message", [
    (model([("X", "FP32", [4])]), {}, r"--input-data .*p\.txt gives prompts, and the model has no text \(BYTES\) input: its "
                                      r"inputs are X \(FP32\)$"),
    (model([("A", "BYTES", [1]), ("B", "BYTES", [1])]), {}, r"several text inputs \(A, B\): give the data as perf_analyzer JSON"),
    (model([("T", "BYTES", [1]), ("SEED", "INT64", [1])]), {}, r"input 'SEED' is required, and --input-data .* gives only the prompt"),
    (model([("T", "BYTES", [1]), ("max_tokens", "INT32", [1])]), {}, r"input 'max_tokens' is required: give --max-tokens N"),
    (model([("T", "BYTES", [3])]), {}, r"input 'T' of shape \[3\] holds 3 elements, and a prompt is one"),
    (model([("T", "BYTES", [1])]), {"max_tokens": 8}, r"--max-tokens fills an input named max_tokens, max_new_tokens or "
                                                       r"request_output_len, and the model has none: its inputs are T \(BYTES\); drop"),
    (model([("T", "BYTES", [1]), ("max_tokens", "FP32", [1])]), {"max_tokens": 8}, r"'max_tokens' is FP32, not an integer"),
    (model([("T", "BYTES", [1]), ("max_tokens", "INT8", [1])]), {"max_tokens": 300}, r"--max-tokens 300 does not fit .*at most 127"),
    (model([("T", "BYTES", [1]), ("max_tokens", "INT32", [1]), ("MAX_NEW_TOKENS", "INT32", [1])], optional=("max_tokens", "MAX_NEW_TOKENS")),
     {"max_tokens": 8}, r"and the model has several \(max_tokens, MAX_NEW_TOKENS\): drop --max-tokens"),
])  # fmt: skip
def test_a_model_the_prompts_do_not_fit_is_one_line(tmp_path, spec, options, message):
    path = str(write(tmp_path, "p.txt", "hello\n"))
    with pytest.raises(UsageError, match=message) as raised:
        build(spec, input_data=path, **options)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("options,message", [
    ({"prompt_tokens": 8, "input_data": "p.txt"}, "--prompt-tokens makes up the prompts and --input-data p.txt gives the data: give one of them"),
    ({"prompt_tokens": 8, "input_data": "random"}, "give one of them"),
    ({"prompt_tokens": 0}, "--prompt-tokens must be from 1 to 131072, got 0"),
    ({"prompt_tokens": 200_000}, "--prompt-tokens must be from 1 to 131072"),
    ({"max_tokens": 0}, "--max-tokens must be at least 1, got 0"),
])  # fmt: skip
def test_bad_prompt_options(options, message):
    with pytest.raises(UsageError, match=message):
        build_config({k.replace("_", "-"): v for k, v in options.items()})


def test_the_options_are_in_the_summarys_config():
    config = build_config({"prompt-tokens": 8, "max-tokens": 4})
    assert (config.inputs.prompt_tokens, config.inputs.max_tokens) == (8, 4)
    assert {key: config.to_dict()[key] for key in ("prompt_tokens", "max_tokens")} == {"prompt_tokens": 8, "max_tokens": 4}


# -- on the real server ------------------------------------------------------------------------


def stream_all(protocol: str, url: str, config_options: dict, count: int | None = None):
    """The llm-ensemble's requests built from the server's own description of it, each streamed
    (prepared as a run prepares them): the requests and their outcomes."""
    config = build_config({"model-name": "llm-ensemble", **config_options})

    async def go():
        async with open_transport(protocol, url, {}, None, 60_000) as transport:
            metadata = await transport.model_metadata("llm-ensemble")
            model_config = await transport.model_config("llm-ensemble")
            requests = build_request_inputs(model_inputs(metadata, model_config, 1), config.inputs, REPOSITORY)[:count]
            prepared = [transport.prepare_stream("llm-ensemble", "", r, ["text_output"]) for r in requests]
            return requests, prepared, [await transport.stream(p) for p in prepared]

    return asyncio.run(asyncio.wait_for(go(), 120))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_prompts_stream_through_the_llm_ensemble(triton, tmp_path, protocol):
    path = write(tmp_path, "p.jsonl", '{"text": "The river starts as a thin line"}\n{"prompt": "émigré 🙂"}\n')
    url = triton.grpc if protocol == "grpc" else triton.http
    requests, prepared, outcomes = stream_all(protocol, url, {"input-data": str(path), "max-tokens": 8})
    assert [o.error for o in outcomes] == [None, None]
    assert [len(o.response_ns) for o in outcomes] == [8, 8]  # one response a token, max_tokens of them
    if protocol == "http":  # the generate extension's body: the model's inputs as JSON fields
        body = json.loads(prepared[1].request.split(b"\r\n\r\n", 1)[1])
        assert body == {"text_input": "émigré 🙂", "max_tokens": 8}


def test_made_up_prompts_are_counted_as_the_server_counts_them(triton):
    """The tokenizer model refuses a prompt over 768 tokens, naming its count: 768 pass, 769 are refused as 769."""
    _, _, fitting = stream_all("grpc", triton.grpc, {"prompt-tokens": MAX_PROMPT_TOKENS, "max-tokens": 1}, count=3)
    assert [o.error for o in fitting] == [None] * 3 and [len(o.response_ns) for o in fitting] == [1] * 3
    _, _, over = stream_all("grpc", triton.grpc, {"prompt-tokens": MAX_PROMPT_TOKENS + 1, "max-tokens": 1}, count=3)
    assert all(f"the prompt is {MAX_PROMPT_TOKENS + 1} tokens, more than max_prompt_tokens" in o.error.message for o in over)


def test_loadgen_run_streams_a_prompts_file_on_the_embedded_server(tmp_path):
    prompts = write(tmp_path, "prompts.txt", "The river starts as a thin line\n\nA baker walks to the market\n")
    report = tmp_path / "report"
    args = ["run", "-m", "llm-ensemble", "--streaming", "-i", "grpc", "--input-data", str(prompts), "--max-tokens", "8",
            "-p", "500", "-r", "3", "-s", "100", "--report-dir", str(report)]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    summary = json.loads((report / "summary.json").read_text())
    (level,) = summary["levels"]
    assert level["error_rate"] == 0 and level["streaming"]["request_count"] > 0
    assert level["streaming"]["responses_per_request"] == 8  # --max-tokens reached the model
    assert summary["config"]["model_repository"] == str(REPOSITORY)  # the shipped one (none in the working folder)


def test_random_data_leaves_an_optional_max_tokens_input_to_the_model_or_the_flag():
    (request,) = build(LLM)
    assert set(tensors(request)) == {"text_input"}  # a random count of tokens to generate is no load
    (request,) = build(LLM, max_tokens=16)
    assert tensors(request)["max_tokens"].tolist() == [16]
    (request,) = build(model([("text", "BYTES", [1]), ("max_tokens", "INT32", [1])]))
    assert set(tensors(request)) == {"text", "max_tokens"}  # required: random, as perf_analyzer sends it
