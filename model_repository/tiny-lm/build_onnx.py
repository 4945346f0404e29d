#!/usr/bin/env python3
"""Build tiny-lm, a small decoder-only transformer, as an ONNX file, from a fixed seed.

    python model_repository/tiny-lm/build_onnx.py OUT.onnx [--vocab 1024] [--d-model 256] [--layers 4]
        [--heads 4] [--positions 512] [--seed 20240607]

Nothing is downloaded: the weights are drawn with numpy from a fixed seed and the graph is
written with the ``onnx`` package's helper API. Two runs with the same arguments give
byte-identical files (no timestamps, no random names, a fixed producer).

Graph: GPT-2's shape (learned token and position embeddings, pre-LayerNorm blocks of causal
multi-head self-attention and a 4x GELU MLP, a final LayerNorm, the LM head tied to the token
embedding), with a KV cache, and greedy decoding in the graph:

    input_ids        INT64 [B,T]             the new tokens: the prompt (prefill), then one token a step
    past_key_i       FP32  [B,H,P,Dh]        layer i's cached keys of the P tokens before (P = 0 at first)
    past_value_i     FP32  [B,H,P,Dh]        layer i's cached values
  ->
    next_token       INT64 [B]               argmax of the last position's logits
    present_key_i    FP32  [B,H,P+T,Dh]      the cache to pass as past_key_i to the next step
    present_value_i  FP32  [B,H,P+T,Dh]

Positions are P..P+T-1 (P is read from past_key_0's shape), so P+T must not exceed
``--positions``. Only the last position goes through the LM head: a step's cost is the blocks'
over T tokens plus one vocabulary projection.

Initialisation as GPT-2's: normal(0, 0.02) weights, the residual projections scaled by
1/sqrt(2 * layers), zero biases, unit LayerNorm gains. The output is meaningless (greedy decoding
of random weights soon repeats itself); the work per token is a real transformer's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_VOCAB = 1024
DEFAULT_D_MODEL = 256
DEFAULT_LAYERS = 4
DEFAULT_HEADS = 4
DEFAULT_POSITIONS = 512
DEFAULT_SEED = 20240607
MLP_RATIO = 4
INIT_STD = 0.02
LN_EPSILON = 1e-5
MASKED = -1e4  # added to the scores of future positions: exp() underflows to 0 after the max is subtracted
OPSET = 17  # LayerNormalization
IR_VERSION = 8  # loadable by every onnxruntime >= 1.14
PRODUCER = "loadgen-build_onnx"
FINGERPRINT_KEY = "loadgen.fingerprint"


def fingerprint(**sizes: int) -> str:
    """Identifies this builder's source and arguments: a generated file whose fingerprint differs is stale."""
    with open(os.path.abspath(__file__), "rb") as f:
        source = f.read()
    arguments = "|".join(f"{key}={value}" for key, value in sorted(sizes.items()))
    return hashlib.sha256(source + b"|" + arguments.encode()).hexdigest()


def parameter_count(vocab: int, d_model: int, layers: int, positions: int) -> int:
    """Weights and biases (the LM head shares the token embedding's)."""
    per_layer = 4 * d_model + (3 * d_model * d_model + 3 * d_model) + (d_model * d_model + d_model)
    per_layer += 2 * MLP_RATIO * d_model * d_model + MLP_RATIO * d_model + d_model
    return vocab * d_model + positions * d_model + layers * per_layer + 2 * d_model


def build_model(
    vocab: int = DEFAULT_VOCAB,
    d_model: int = DEFAULT_D_MODEL,
    layers: int = DEFAULT_LAYERS,
    heads: int = DEFAULT_HEADS,
    positions: int = DEFAULT_POSITIONS,
    seed: int = DEFAULT_SEED,
) -> onnx.ModelProto:
    if min(vocab, d_model, layers, heads, positions) <= 0:
        raise ValueError("vocab, d_model, layers, heads and positions must be positive")
    if d_model % heads:
        raise ValueError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
    head_dim = d_model // heads
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    def weight(name: str, shape: tuple[int, ...], std: float = INIT_STD) -> str:
        return const(name, (rng.standard_normal(shape) * std).astype(np.float32))

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(name: str, x: str, cin: int, cout: int, std: float = INIT_STD) -> str:
        y = node("MatMul", [x, weight(f"{name}.weight", (cin, cout), std)], f"{name}.matmul")
        return node("Add", [y, const(f"{name}.bias", np.zeros(cout, np.float32))], f"{name}.out")

    def layer_norm(name: str, x: str) -> str:
        gain = const(f"{name}.weight", np.ones(d_model, np.float32))
        bias = const(f"{name}.bias", np.zeros(d_model, np.float32))
        return node("LayerNormalization", [x, gain, bias], f"{name}.out", axis=-1, epsilon=LN_EPSILON)

    def heads_first(name: str, x: str) -> str:  # [B,T,D] -> [B,H,T,Dh]
        split = node("Reshape", [x, "shape.heads"], f"{name}.split")
        return node("Transpose", [split], f"{name}.heads", perm=[0, 2, 1, 3])

    const("shape.heads", np.array([0, 0, heads, head_dim], np.int64))
    const("shape.model", np.array([0, 0, d_model], np.int64))
    const("qkv.sizes", np.array([d_model] * 3, np.int64))
    const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    const("zero", np.array(0, np.int64))
    const("one", np.array(1, np.int64))
    const("axis0", np.array([0], np.int64))
    const("axis1", np.array([1], np.int64))
    const("masked", np.array(MASKED, np.float32))
    const("unmasked", np.array(0.0, np.float32))
    const("last", np.array(-1, np.int64))

    # Positions past..past+T-1, and the causal mask [T, past+T]: query i sees keys 0..past+i.
    past = node("Squeeze", [node("Shape", ["past_key_0"], "past.shape", start=2, end=3)], "past.len")
    new = node("Squeeze", [node("Shape", ["input_ids"], "new.shape", start=1, end=2)], "new.len")
    total = node("Add", [past, new], "total.len")
    query_pos = node("Range", [past, total, "one"], "query.pos")
    key_pos = node("Range", ["zero", total, "one"], "key.pos")
    future = node("Greater", [node("Unsqueeze", [key_pos, "axis0"], "key.row"), node("Unsqueeze", [query_pos, "axis1"], "query.col")], "future")
    mask = node("Where", [future, "masked", "unmasked"], "mask")

    tokens = node("Gather", [weight("wte", (vocab, d_model)), "input_ids"], "embed.tokens")
    x = node("Add", [tokens, node("Gather", [weight("wpe", (positions, d_model)), query_pos], "embed.positions")], "embed.out")

    residual_std = INIT_STD / np.sqrt(2 * layers)
    for i in range(layers):
        p = f"h{i}"
        qkv = linear(f"{p}.attn.qkv", layer_norm(f"{p}.ln1", x), d_model, 3 * d_model)
        nodes.append(helper.make_node("Split", [qkv, "qkv.sizes"], [f"{p}.q", f"{p}.k", f"{p}.v"], name=f"{p}.qkv.split", axis=2))
        q = heads_first(f"{p}.q", f"{p}.q")
        keys = node("Concat", [f"past_key_{i}", heads_first(f"{p}.k", f"{p}.k")], f"present_key_{i}", axis=2)
        values = node("Concat", [f"past_value_{i}", heads_first(f"{p}.v", f"{p}.v")], f"present_value_{i}", axis=2)
        scores = node("MatMul", [q, node("Transpose", [keys], f"{p}.keys.t", perm=[0, 1, 3, 2])], f"{p}.scores")
        scores = node("Add", [node("Mul", [scores, "scale"], f"{p}.scores.scaled"), mask], f"{p}.scores.masked")
        attended = node("MatMul", [node("Softmax", [scores], f"{p}.probs", axis=-1), values], f"{p}.attended")
        merged = node("Reshape", [node("Transpose", [attended], f"{p}.attended.t", perm=[0, 2, 1, 3]), "shape.model"], f"{p}.merged")
        x = node("Add", [x, linear(f"{p}.attn.proj", merged, d_model, d_model, residual_std)], f"{p}.attn.residual")

        hidden = linear(f"{p}.mlp.fc", layer_norm(f"{p}.ln2", x), d_model, MLP_RATIO * d_model)
        # GELU, erf form (ORT fuses the pattern into one kernel)
        erf = node("Erf", [node("Mul", [hidden, const(f"{p}.gelu.rsqrt2", np.array(1 / np.sqrt(2), np.float32))], f"{p}.gelu.scaled")], f"{p}.gelu.erf")
        gate = node("Mul", [node("Add", [erf, const(f"{p}.gelu.one", np.array(1.0, np.float32))], f"{p}.gelu.shift"),
                            const(f"{p}.gelu.half", np.array(0.5, np.float32))], f"{p}.gelu.gate")  # fmt: skip
        gelu = node("Mul", [hidden, gate], f"{p}.gelu.out")
        x = node("Add", [x, linear(f"{p}.mlp.proj", gelu, MLP_RATIO * d_model, d_model, residual_std)], f"{p}.mlp.residual")

    last = node("Gather", [layer_norm("ln_f", x), "last"], "last.hidden", axis=1)  # [B, D]
    logits = node("Gemm", [last, "wte"], "logits", transB=1)  # tied LM head: [B, vocab]
    node("ArgMax", [logits], "next_token", axis=1, keepdims=0)

    cache_shape = ["batch", heads, "past", head_dim]
    present_shape = ["batch", heads, "total", head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "new"])]
    outputs = [helper.make_tensor_value_info("next_token", TensorProto.INT64, ["batch"])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", TensorProto.FLOAT, cache_shape))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", TensorProto.FLOAT, present_shape))
    graph = helper.make_graph(nodes, "tiny_lm", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER)
    model.ir_version = IR_VERSION
    sizes = dict(vocab=vocab, d_model=d_model, layers=layers, heads=heads, positions=positions, seed=seed)
    helper.set_model_props(model, {FINGERPRINT_KEY: fingerprint(**sizes)})
    model.doc_string = "tiny-lm: decoder-only transformer, " + ", ".join(f"{k}={v}" for k, v in sizes.items()) + ": random weights, for load testing"
    onnx.checker.check_model(model)
    return model


def build_bytes(**sizes: int) -> bytes:
    return build_model(**sizes).SerializeToString(deterministic=True)


def write(path: str, **sizes: int) -> bytes:
    """Write the model to path atomically (temporary file + rename); return its bytes."""
    data = build_bytes(**sizes)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".onnx.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="path of the ONNX file to write")
    parser.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help=f"vocabulary size, the tokenizer's (default {DEFAULT_VOCAB})")
    parser.add_argument("--d-model", type=int, default=DEFAULT_D_MODEL, help=f"model width (default {DEFAULT_D_MODEL})")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help=f"transformer blocks (default {DEFAULT_LAYERS})")
    parser.add_argument("--heads", type=int, default=DEFAULT_HEADS, help=f"attention heads (default {DEFAULT_HEADS})")
    parser.add_argument("--positions", type=int, default=DEFAULT_POSITIONS, help=f"context length: prompt + generated tokens (default {DEFAULT_POSITIONS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"weight seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    sizes = dict(vocab=args.vocab, d_model=args.d_model, layers=args.layers, heads=args.heads, positions=args.positions, seed=args.seed)
    try:
        data = write(args.out, **sizes)
    except ValueError as exc:
        parser.error(str(exc))
    count = parameter_count(args.vocab, args.d_model, args.layers, args.positions)
    print(f"wrote {args.out}: {len(data)} bytes, {count} parameters, " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
