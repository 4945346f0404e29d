#!/usr/bin/env python3
"""Build the synthetic CenterNet-style detector as an ONNX file, from a fixed seed.

    python model_repository/centernet/build_onnx.py OUT.onnx [--size 256] [--classes 80] [--seed 20240521]

Nothing is downloaded: the weights are drawn with numpy from a fixed seed and the graph is
written with the ``onnx`` package's helper API. Two runs with the same arguments give
byte-identical files (no timestamps, no random names, a fixed producer).

Graph (NCHW, batch dimension dynamic, spatial size fixed to ``--size``):

    input  [N,3,S,S] FP32 (RGB, ImageNet-normalized, letterboxed: see image-preprocess)
      conv3x3 s2  3->16   + ReLU      S/2
      conv3x3 s2 16->32   + ReLU      S/4   (output stride 4, as CenterNet)
      conv3x3 s1 32->32   + ReLU
      conv3x3 s1 32->32   + ReLU
      three heads, each conv3x3 32->32 + ReLU, then conv1x1 32->k:
        heatmap  [N,C,S/4,S/4]  sigmoid           per-class center heatmap in (0,1)
        wh       [N,2,S/4,S/4]  exp               box width, height in OUTPUT-GRID cells (x4 = input pixels)
        offset   [N,2,S/4,S/4]  sigmoid           sub-cell center offset (x, y) in [0,1) cells

Semantics consumed by centernet-postprocess (keep both in step): a peak at grid cell (x, y)
of class c has its center at ((x + offset_x) * 4, (y + offset_y) * 4) and its size
(wh_w * 4, wh_h * 4) in letterboxed input pixels.

Initialisation: He-normal weights (std sqrt(2 / fan_in)) keep the activations near unit scale
through the ReLU backbone. The heads' 1x1 projections have zero-sum weights (their inputs are
ReLU outputs, whose positive mean would otherwise shift every logit) and a bias: the heatmap's
is -6 (prior 0.0025, as CenterNet's -2.19 focal-loss prior but sparser) with a logit spread of
about 2, so that the sigmoid is mostly small with a few peaks where the image has strong
features: the sparse maps of a real detector. The wh head's bias makes boxes tens of pixels.
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

DEFAULT_SIZE = 256
DEFAULT_CLASSES = 80
DEFAULT_SEED = 20240521
STRIDE = 4
OPSET = 17
IR_VERSION = 8  # loadable by every onnxruntime >= 1.10
PRODUCER = "loadgen-build_onnx"
FINGERPRINT_KEY = "loadgen.fingerprint"

# (name, out_channels, stride) of the backbone's 3x3 convolutions, each followed by ReLU.
BACKBONE = (("stem", 16, 2), ("down", 32, 2), ("body1", 32, 1), ("body2", 32, 1))
HEAD_CHANNELS = 32

# Last-layer scale and bias of each head: (weight std multiplier, bias).
HEATMAP_LOGIT_STD = 2.0
HEATMAP_PRIOR_BIAS = -6.0  # sigmoid(-6) ~= 0.0025: on a photo, median ~0.003, p99 ~0.1, a few peaks > 0.5
WH_BIAS = float(np.log(6.0))  # exp: median 6 cells = 24 px; the spread gives boxes of a few to tens of cells
WH_LOGIT_STD = 0.7


def fingerprint(size: int = DEFAULT_SIZE, num_classes: int = DEFAULT_CLASSES, seed: int = DEFAULT_SEED) -> str:
    """Identifies this builder's source and arguments: a generated file whose fingerprint differs is stale."""
    with open(os.path.abspath(__file__), "rb") as f:
        source = f.read()
    return hashlib.sha256(source + f"|size={size}|classes={num_classes}|seed={seed}".encode()).hexdigest()


def build_model(size: int = DEFAULT_SIZE, num_classes: int = DEFAULT_CLASSES, seed: int = DEFAULT_SEED) -> onnx.ModelProto:
    if size <= 0 or size % STRIDE:
        raise ValueError(f"size must be a positive multiple of {STRIDE}, got {size}")
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def conv(name: str, x: str, cin: int, cout: int, k: int, stride: int, w_scale: float = 1.0, bias: float = 0.0, zero_mean: bool = False) -> str:
        fan_in = cin * k * k
        w = rng.standard_normal((cout, cin, k, k))
        if zero_mean:  # the inputs are ReLU outputs (mean > 0): zero-sum weights keep the outputs centred on the bias
            w -= w.mean(axis=(1, 2, 3), keepdims=True)
        w = (w * np.sqrt(2.0 / fan_in) * w_scale).astype(np.float32)
        b = np.full((cout,), bias, dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        inits.append(numpy_helper.from_array(b, f"{name}.bias"))
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.weight", f"{name}.bias"],
                [f"{name}.out"],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return f"{name}.out"

    def act(op: str, x: str, name: str, out: str | None = None) -> str:
        out = out or f"{name}.out"
        nodes.append(helper.make_node(op, [x], [out], name=name))
        return out

    x, cin = "input", 3
    for name, cout, stride in BACKBONE:
        x = act("Relu", conv(name, x, cin, cout, 3, stride), f"{name}.relu")
        cin = cout
    features = x

    def head(name: str, cout: int, w_scale: float, bias: float, final_op: str, output: str) -> None:
        h = act("Relu", conv(f"{name}.conv", features, cin, HEAD_CHANNELS, 3, 1), f"{name}.relu")
        # 1x1: fan_in = HEAD_CHANNELS; He std is sqrt(2/fan_in), w_scale/sqrt(2) makes the logit std ~ w_scale.
        logits = conv(f"{name}.proj", h, HEAD_CHANNELS, cout, 1, 1, w_scale=w_scale / np.sqrt(2.0), bias=bias, zero_mean=True)
        act(final_op, logits, f"{name}.{final_op.lower()}", out=output)

    head("heatmap", num_classes, HEATMAP_LOGIT_STD, HEATMAP_PRIOR_BIAS, "Sigmoid", "heatmap")
    head("wh", 2, WH_LOGIT_STD, WH_BIAS, "Exp", "wh")
    head("offset", 2, 1.0, 0.0, "Sigmoid", "offset")

    grid = size // STRIDE
    graph = helper.make_graph(
        nodes,
        "centernet_synthetic",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", num_classes, grid, grid]),
            helper.make_tensor_value_info("wh", TensorProto.FLOAT, ["N", 2, grid, grid]),
            helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["N", 2, grid, grid]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {FINGERPRINT_KEY: fingerprint(size, num_classes, seed)})
    model.doc_string = f"Synthetic CenterNet-style detector, size={size} classes={num_classes} seed={seed}: random weights, for load testing"
    onnx.checker.check_model(model)
    return model


def build_from_parameters(parameters: dict[str, str]) -> onnx.ModelProto:
    """The model its config.pbtxt's parameters (input_size, num_classes) describe: what model.py builds on
    first load, for a reader of the repository such as loadgen's roofline when the file is not on disk."""
    return build_model(int(parameters.get("input_size", DEFAULT_SIZE)), int(parameters.get("num_classes", DEFAULT_CLASSES)))


def build_bytes(size: int = DEFAULT_SIZE, num_classes: int = DEFAULT_CLASSES, seed: int = DEFAULT_SEED) -> bytes:
    return build_model(size, num_classes, seed).SerializeToString(deterministic=True)


def write(path: str, size: int = DEFAULT_SIZE, num_classes: int = DEFAULT_CLASSES, seed: int = DEFAULT_SEED) -> bytes:
    """Write the model to path atomically (temporary file + rename); return its bytes."""
    data = build_bytes(size, num_classes, seed)
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
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"input height and width (default {DEFAULT_SIZE})")
    parser.add_argument("--classes", type=int, default=DEFAULT_CLASSES, help=f"heatmap classes (default {DEFAULT_CLASSES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"weight seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    try:
        data = write(args.out, args.size, args.classes, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.out}: {len(data)} bytes, input [N,3,{args.size},{args.size}], {args.classes} classes, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
