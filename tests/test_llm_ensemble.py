"""The shipped generative pipeline (model_repository/: tokenizer -> tiny-lm -> detokenizer as
llm-ensemble) on the real embedded server: streamed over gRPC with tritonclient's streaming API
and over HTTP with Triton's generate extension; its errors; its tokenizer; its builders."""

from __future__ import annotations

import importlib.util
import json
import queue
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tokenizers import Tokenizer

REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
PROMPT = "The river starts as a thin line of water"
DEFAULT_MAX_TOKENS = 32  # the tokenizer's max_tokens_default
MAX_TOKENS_LIMIT = 256
QUIET_S = 0.2  # how long to wait for a response that must not come


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def text_inputs(text: str | bytes, max_tokens: int | None) -> list[grpcclient.InferInput]:
    data = text.encode() if isinstance(text, str) else text
    prompt = grpcclient.InferInput("text_input", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([data], dtype=np.object_))
    if max_tokens is None:
        return [prompt]
    count = grpcclient.InferInput("max_tokens", [1], "INT32")
    count.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    return [prompt, count]


def id_inputs(ids: list[int], max_tokens: int) -> list[grpcclient.InferInput]:
    tokens = grpcclient.InferInput("input_ids", [len(ids)], "INT32")
    tokens.set_data_from_numpy(np.array(ids, dtype=np.int32))
    count = grpcclient.InferInput("max_tokens", [1], "INT32")
    count.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    return [tokens, count]


class Stream:
    """One gRPC ModelStreamInfer stream: each response (or error) with its arrival time."""

    def __init__(self, url: str):
        self.client = grpcclient.InferenceServerClient(url)
        self.arrivals: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.arrivals.put((time.perf_counter(), result, error)))

    def send(self, model: str, inputs, empty_final: bool = False) -> float:
        sent = time.perf_counter()
        self.client.async_stream_infer(model, inputs, enable_empty_final_response=empty_final)
        return sent

    def until_final(self, timeout_s: float = 60) -> list[tuple]:
        """Responses up to the one with the final flag, or up to an error; then none may follow for a while."""
        got = []
        while True:
            arrived, result, error = self.arrivals.get(timeout=timeout_s)
            got.append((arrived, result, error))
            if error is not None or result.get_response().parameters["triton_final_response"].bool_param:
                break
        time.sleep(QUIET_S)
        assert self.arrivals.empty(), "a response came after the final one"
        return got

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


@pytest.fixture
def stream(triton):
    opened = Stream(triton.grpc)
    try:
        yield opened
    finally:
        opened.close()


def texts(responses: list[tuple]) -> list[bytes]:
    out = []
    for _, result, error in responses:
        assert error is None, error
        (text,) = result.as_numpy("text_output").tolist()
        out.append(text)
    return out


def infer(triton, model: str, inputs, output: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(triton.grpc)
    try:
        return client.infer(model, inputs).as_numpy(output)
    finally:
        client.close()


def tokenize(triton, text: str) -> list[int]:
    return infer(triton, "tokenizer", text_inputs(text, None), "input_ids").tolist()


def detokenize(triton, ids: list[int]) -> bytes:
    tensor = grpcclient.InferInput("output_ids", [len(ids)], "INT32")
    tensor.set_data_from_numpy(np.array(ids, dtype=np.int32))
    (text,) = infer(triton, "detokenizer", [tensor], "text_output").tolist()
    return text


def generate_stream(triton, body: dict) -> tuple[int, list[dict]]:
    """POST /v2/models/llm-ensemble/generate_stream: the status and each server-sent event's JSON."""
    request = urllib.request.Request(f"http://{triton.http}/v2/models/llm-ensemble/generate_stream", data=json.dumps(body).encode(), method="POST")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        response = exc
    with response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [json.loads(line[len(b"data: "):]) for line in response if line.startswith(b"data: ")]
    return response.status, events


@pytest.mark.parametrize("empty_final", [False, True], ids=["plain", "empty-final-asked"])
def test_the_ensemble_streams_one_response_per_token_in_order(triton, stream, empty_final):
    max_tokens = 48
    stream.send("llm-ensemble", text_inputs(PROMPT, 2))  # the first calls after a start are slow
    stream.until_final()
    sent = stream.send("llm-ensemble", text_inputs(PROMPT, max_tokens), empty_final)
    responses = stream.until_final()
    streamed = texts(responses)
    assert len(streamed) == max_tokens and all(streamed), "one response with text per token"
    finals = [result.get_response().parameters["triton_final_response"].bool_param for _, result, _ in responses]
    assert finals == [False] * (max_tokens - 1) + [True], "the final flag travels with the last token, even when an empty final response is asked for"
    # A few milliseconds a token; on a starved machine the detokenizer falls behind and responses bunch.
    per_token_ms = (responses[-1][0] - sent) / max_tokens * 1e3
    assert per_token_ms < 50, f"{per_token_ms:.2f} ms per token"

    # In order: the texts are tiny-lm's tokens, generated from the tokenizer's ids, each detokenized alone.
    tokens = Stream(triton.grpc)
    try:
        tokens.send("tiny-lm", id_inputs(tokenize(triton, PROMPT), max_tokens))
        generated = tokens.until_final()
    finally:
        tokens.close()
    ids = [int(result.as_numpy("output_ids")[0]) for _, result, _ in generated]
    assert streamed == [detokenize(triton, [token]) for token in ids]


def test_max_tokens_defaults_when_absent(triton, stream):
    stream.send("llm-ensemble", text_inputs(PROMPT, None))
    assert len(texts(stream.until_final())) == DEFAULT_MAX_TOKENS


def test_an_empty_prompt_generates_after_end_of_text(triton, stream):
    assert tokenize(triton, "") == [0]  # <|endoftext|>, as GPT-2 starts an unconditional generation
    stream.send("llm-ensemble", text_inputs("", 3))
    assert len(texts(stream.until_final())) == 3


@pytest.mark.parametrize(
    ("text", "max_tokens", "message"),
    [
        ("word " * 1000, 4, "tokens, more than max_prompt_tokens (768)"),
        (PROMPT, 0, f"tokenizer: max_tokens 0 is not in 1..{MAX_TOKENS_LIMIT}"),
        (PROMPT, MAX_TOKENS_LIMIT + 1, f"tokenizer: max_tokens {MAX_TOKENS_LIMIT + 1} is not in 1..{MAX_TOKENS_LIMIT}"),
        (b"\xff\xfe not UTF-8", 4, "tokenizer: text_input is not UTF-8"),
    ],
    ids=["prompt-too-long", "max-tokens-0", "max-tokens-over-limit", "not-utf8"],
)
def test_a_bad_request_gets_one_clear_error(triton, stream, text, max_tokens, message):
    stream.send("llm-ensemble", text_inputs(text, max_tokens))
    (response,) = stream.until_final()
    assert message in str(response[2])
    stream.send("llm-ensemble", text_inputs(PROMPT, 2))  # the pipeline keeps serving
    assert len(texts(stream.until_final())) == 2


@pytest.mark.parametrize(
    ("ids", "max_tokens", "message"),
    [
        ([5, 1024], 2, "tiny-lm: token id 1024 is not in 0..1023"),
        ([5] * 1000, 100, "tiny-lm: 1000 prompt tokens + max_tokens 100 is more than the 1024 positions"),
    ],
    ids=["id-outside-vocab", "past-the-context"],
)
def test_tiny_lm_refuses_what_it_cannot_generate(triton, stream, ids, max_tokens, message):
    stream.send("tiny-lm", id_inputs(ids, max_tokens))
    (response,) = stream.until_final()
    assert message in str(response[2])


@pytest.fixture(scope="module")
def longest_generation(triton) -> np.ndarray:
    """tiny-lm's arrival times of MAX_TOKENS_LIMIT tokens, in seconds from the send: long enough
    that a starved client's late callbacks do not hide the shape."""
    ids = tokenize(triton, PROMPT)
    whole = Stream(triton.grpc)
    try:
        sent = whole.send("tiny-lm", id_inputs(ids, MAX_TOKENS_LIMIT))
        return np.array([arrived for arrived, _, _ in whole.until_final()]) - sent
    finally:
        whole.close()


def test_tiny_lm_sends_each_token_as_it_is_generated(longest_generation):
    assert len(longest_generation) == MAX_TOKENS_LIMIT
    first_s, last_s = longest_generation[0], longest_generation[-1]
    assert first_s < last_s / 2, f"first token at {first_s * 1e3:.1f} ms of {last_s * 1e3:.1f} ms: not streamed"
    assert last_s / MAX_TOKENS_LIMIT < 0.05, f"{last_s / MAX_TOKENS_LIMIT * 1e3:.1f} ms per token"


def test_a_cancelled_generation_frees_tiny_lm(triton, longest_generation):
    """Cancelled by its client, tiny-lm stops at the next token: the next request does not wait for
    the rest. (Through llm-ensemble, Triton 2.51 does not pass the cancellation on.)"""
    ids = tokenize(triton, PROMPT)
    cancelled = Stream(triton.grpc)
    try:
        cancelled.send("tiny-lm", id_inputs(ids, MAX_TOKENS_LIMIT))
        cancelled.arrivals.get(timeout=60)  # generating
    finally:
        cancelled.close(cancel=True)
    after = Stream(triton.grpc)
    try:
        started = after.send("tiny-lm", id_inputs(ids, 1))
        waited_s = after.until_final()[0][0] - started
    finally:
        after.close()
    whole_s = longest_generation[-1]
    assert waited_s < whole_s / 2, f"the next request waited {waited_s * 1e3:.0f} ms; a whole generation takes {whole_s * 1e3:.0f} ms"


def test_the_generate_endpoint_streams_the_same_tokens(triton, stream):
    status, events = generate_stream(triton, {"text_input": PROMPT, "max_tokens": 16})
    assert status == 200
    assert [set(event) >= {"model_name", "text_output"} for event in events] == [True] * 16, "one event per token"
    stream.send("llm-ensemble", text_inputs(PROMPT, 16))
    assert [event["text_output"].encode() for event in events] == texts(stream.until_final())


def test_the_generate_endpoint_reports_a_bad_request(triton):
    status, events = generate_stream(triton, {"text_input": PROMPT, "max_tokens": 0})
    assert status == 400
    assert events == [{"error": f"in ensemble 'llm-ensemble', tokenizer: max_tokens 0 is not in 1..{MAX_TOKENS_LIMIT}"}]


@pytest.mark.parametrize("text", ["Hello, world!", "  two  spaces\tand a tab\n", "Ünïcödé ✓ and <|endoftext|> kept", "numbers 3.14159 and 1024"])
def test_the_tokenizer_round_trips_text_and_matches_its_saved_file(triton, text):
    ids = tokenize(triton, text)
    assert detokenize(triton, ids) == text.encode()
    saved = Tokenizer.from_file(str(REPOSITORY / "tokenizer" / "tokenizer.json"))  # what genai-perf is given
    assert saved.encode(text).ids == ids
    assert saved.get_vocab_size() == 1024


def test_the_tokenizer_builder_is_deterministic_and_knows_a_stale_folder(tmp_path):
    builder = _module(REPOSITORY / "tokenizer" / "build_tokenizer.py", "build_tokenizer_under_test")
    builder.write(str(tmp_path / "a"))
    builder.write(str(tmp_path / "b"))
    for name in (builder.TOKENIZER_FILE, builder.CONFIG_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    config = json.loads((tmp_path / "a" / builder.CONFIG_FILE).read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # what AutoTokenizer.from_pretrained(folder) reads
    assert not builder.is_stale(str(tmp_path / "a"))
    assert builder.is_stale(str(tmp_path / "a"), vocab=512)
    (tmp_path / "b" / builder.CONFIG_FILE).unlink()
    assert not builder.is_stale(str(tmp_path / "b")), "a tokenizer.json the builder did not save is used as it is"
    assert builder.is_stale(str(tmp_path / "empty"))


def test_the_kv_cache_gives_what_the_whole_prefix_gives():
    """One token at a time with the cache, or the whole sequence at once: the same cache and the
    same next token (the causal mask hides what comes later; the positions follow the cache)."""
    builder = _module(REPOSITORY / "tiny-lm" / "build_onnx.py", "tiny_lm_build_under_test")
    sizes = dict(vocab=64, d_model=32, layers=2, heads=4, positions=16, seed=7)
    data = builder.build_bytes(**sizes)
    assert data == builder.build_bytes(**sizes), "two builds give the same bytes"
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    empty = {f"past_{kind}_{i}": np.zeros((1, 4, 0, 8), np.float32) for i in range(2) for kind in ("key", "value")}

    def step(ids, cache):
        outputs = dict(zip(names, session.run(None, {"input_ids": np.array([ids], np.int64), **cache})))
        return int(outputs["next_token"][0]), {name.replace("present_", "past_"): v for name, v in outputs.items() if name != "next_token"}

    sequence = [3, 17, 42, 5, 9, 60]
    whole_token, whole_cache = step(sequence, empty)
    cache = empty
    for token in sequence:
        next_token, cache = step([token], cache)
    assert next_token == whole_token
    for name, value in whole_cache.items():
        assert value.shape == (1, 4, len(sequence), 8)
        np.testing.assert_allclose(cache[name], value, rtol=1e-4, atol=1e-5)
    # Prompt then cache, as tiny-lm generates: the same again.
    token, cache = step(sequence[:4], empty)
    for later in sequence[4:]:
        token, cache = step([later], cache)
    assert token == whole_token
