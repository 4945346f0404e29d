"""Decoupled models: which model of a tree makes it stream (an ensemble's step at any depth), what a run
of one needs, and which output counts a streamed response's tokens. The shipped generative ensemble
streams end to end over both protocols, with the window defaults of --streaming."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loadgen.decoupled import check_streamable, decoupled_model, token_output
from loadgen.errors import UsageError
from loadgen.server_stats import ModelTree

DECOUPLED = {"model_transaction_policy": {"decoupled": True}}
ENSEMBLE = {"platform": "ensemble"}


def tree(name: str, *steps: ModelTree) -> ModelTree:
    return ModelTree(name, "", tuple(steps))


# outer → (pre, inner → (detector, generator), post): only the generator is decoupled, two levels down
NESTED = tree("outer", tree("pre"), tree("inner", tree("detector"), tree("generator")), tree("post"))


def test_a_decoupled_step_of_a_nested_ensemble_makes_it_decoupled():
    configs = {"outer": ENSEMBLE, "pre": {}, "inner": ENSEMBLE, "detector": {}, "generator": DECOUPLED, "post": {}}
    assert decoupled_model(NESTED, configs) == "generator"


def test_the_models_own_flag_names_the_model_itself():
    # As Triton marks an ensemble with a decoupled step: the ensemble is named, not the step.
    configs = {"outer": ENSEMBLE | DECOUPLED, "pre": {}, "inner": ENSEMBLE | DECOUPLED, "detector": {}, "generator": DECOUPLED,
               "post": {}}  # fmt: skip
    assert decoupled_model(NESTED, configs) == "outer"
    assert decoupled_model(tree("tiny-lm"), {"tiny-lm": DECOUPLED}) == "tiny-lm"


def test_no_decoupled_model_anywhere():
    configs = {"outer": ENSEMBLE, "inner": ENSEMBLE, "generator": {"model_transaction_policy": {"decoupled": False}}}
    assert decoupled_model(NESTED, configs) is None
    assert decoupled_model(tree("centernet"), {"centernet": {"max_batch_size": 8}}) is None


def test_a_decoupled_model_needs_streaming():
    check_streamable("outer", "generator", True)
    check_streamable("plain", None, False)
    with pytest.raises(UsageError) as raised:
        check_streamable("outer", "generator", False)
    assert str(raised.value) == ("model 'outer' has a decoupled step, 'generator' (a stream of responses per request): add "
                                 "--streaming, with -i grpc, or -i http where Triton's generate endpoint can map the model's inputs")


OUTPUTS = [{"name": "text_output", "datatype": "BYTES"}, {"name": "output_ids", "datatype": "INT32"},
           {"name": "logits", "datatype": "FP32"}]  # fmt: skip


def test_the_token_output_is_the_only_integer_output_by_default_or_the_only_output():
    assert token_output("m", OUTPUTS, None) == "output_ids"
    assert token_output("m", [{"name": "text_output", "datatype": "BYTES"}], None) == "text_output"
    assert token_output("m", [OUTPUTS[0], OUTPUTS[2]], None) is None
    two = [*OUTPUTS, {"name": "lengths", "datatype": "UINT64"}]
    assert token_output("m", two, None) is None  # which one: the user says, with --token-output


def test_a_named_token_output_may_be_any_output_the_model_has():
    assert token_output("m", OUTPUTS, "text_output") == "text_output"
    with pytest.raises(UsageError) as raised:
        token_output("m", OUTPUTS, "tokens")
    assert str(raised.value) == "--token-output 'tokens': model 'm' has no such output; its outputs are text_output, output_ids, logits"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_shipped_generative_ensemble_streams(triton, protocol, tmp_path):
    """`loadgen run -m llm-ensemble --streaming` against the real server: a short count window (the
    --streaming default kind), 8 tokens a request, each response's text_output one token."""
    url = triton.grpc if protocol == "grpc" else triton.http
    args = ["run", "-u", url, "-i", protocol, "-m", "llm-ensemble", "--streaming", "--token-output", "text_output",
            "--max-tokens", "8", "--measurement-request-count", "4", "-r", "3", "-s", "1000", "--report-dir", str(tmp_path)]  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["windows"]["mode"] == "count_windows"
    [level] = summary["levels"]
    assert level["client"]["error_count"] == 0 and level["client"]["request_count"] >= 3 * 4
    stream = level["streaming"]
    assert stream["responses_per_request"] == 8
    assert stream["tokens_per_s"] > 0 and stream["output_tokens"] == 8 * stream["request_count"]
    assert 0 < stream["ttft_us"]["p50"] < level["client"]["percentile_latency_us"]["p50"]
