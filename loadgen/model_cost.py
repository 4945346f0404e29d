"""What an ONNX model costs per run: parameters, FLOPs, bytes moved and arithmetic intensity, per
layer and in total, counted from the graph and ONNX's shape inference. Pure: no files but the one
`load_onnx` reads, nothing run.

Why not a library: onnx-tool (1.0.1, the maintained candidate) gets the convolution and matmul
multiply-accumulates right, but counts a bias add as a whole MAC, weighs transcendental
functions by an instruction-cost guess (sigmoid 40 "MACs" an element) and counts only the
tensors written as memory, not those read; onnx-opcounter (0.0.4) prints, and knows a handful of
operators. Their conventions are not ours and cannot be set, so the counts are made here, each
operator's rule written out below (COUNTING_NOTES) and checked against hand counts in the tests.

Conventions: 1 multiply-accumulate = 2 FLOPs. Bytes are an estimate of one inference's memory
traffic that assumes every tensor is read or written once per layer: a layer's initializers read
(`weight_bytes`) plus its other inputs read and its outputs written (`activation_bytes`). Caches,
fused layers (ONNX Runtime folds BatchNormalization into Conv, ReLU into Conv) and re-reads of
a tile are not modelled: the figures are the graph's as written. Every figure is for one run of
the graph at `batch_size`; the `*_per_inference` properties divide by it (weights read once per
batch, so bytes per inference fall and intensity rises with the batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import helper, shape_inference

from loadgen.errors import UsageError
from loadgen.roof import intensity


class OnnxModelError(UsageError):
    """The file is not an ONNX model we can count, or the shapes given do not fit its inputs."""


class DynamicShapeError(OnnxModelError):
    """An input has dimensions that only its requests fix, and no --shape gives them."""

    def __init__(self, input_name: str, dims: str):
        super().__init__(f"input {input_name} has dynamic dimensions [{dims}]: give them with --shape {input_name}:D1,D2,... "
                         "(without the batch dimension, as perf_analyzer's)")  # fmt: skip
        self.input_name, self.dims = input_name, dims


@dataclass(frozen=True)
class LayerCost:
    name: str  # the ONNX node's name (or op_type + index when unnamed)
    op_type: str
    flops: int  # 1 multiply-accumulate = 2 FLOPs
    params: int  # initializer elements this node reads
    weight_bytes: int  # initializer bytes read
    activation_bytes: int  # non-initializer inputs read + outputs written, bytes

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        return intensity(self.flops, self.bytes)


@dataclass(frozen=True)
class ModelCost:
    """One run of the graph at `batch_size`: its layers in graph order."""

    batch_size: int
    layers: tuple[LayerCost, ...]
    uncounted_ops: tuple[str, ...]  # op types seen whose FLOPs are counted as 0
    unique_params: int  # initializer elements, each counted once even when several nodes read it

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def params(self) -> int:
        return self.unique_params

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        return intensity(self.flops, self.bytes)

    @property
    def flops_per_inference(self) -> float:
        return self.flops / self.batch_size

    @property
    def bytes_per_inference(self) -> float:
        return self.bytes / self.batch_size

    @property
    def op_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(layer.op_type for layer in self.layers))


# How each operator's FLOPs are counted, as the output states it. Per output element unless said.
ELEMENTWISE_UNARY = ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Elu", "Selu",
                     "Celu", "Gelu", "Softplus", "Softsign", "Mish", "Exp", "Log", "Sqrt", "Reciprocal", "Abs", "Neg",
                     "Erf", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "Not", "Where")  # fmt: skip
ELEMENTWISE_BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater", "Less",
                      "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Mod")  # fmt: skip
REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ArgMax", "ArgMin")  # fmt: skip
NORMALIZATIONS = ("InstanceNormalization", "LayerNormalization", "GroupNormalization")
# Data movement: no arithmetic, their bytes still count.
MOVEMENT = ("Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Flatten",
            "Squeeze", "Unsqueeze", "Identity", "Expand", "Tile", "Pad", "Cast", "Shape", "Size", "Constant",
            "ConstantOfShape", "Dropout", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Trilu",
            "CastLike")  # fmt: skip
NORMALIZATION_FLOPS_PER_ELEMENT = 8  # mean 1, variance 3 (subtract, square, add), normalize 2, scale and shift 2
SOFTMAX_FLOPS_PER_ELEMENT = 5  # max, subtract, exp, sum, divide

COUNTING_NOTES: dict[str, str] = {
    "Conv": "Conv: 2 x output elements x (input channels / groups) x kernel elements, + 1 per output element for the bias",
    "ConvTranspose": "ConvTranspose: 2 x input elements x (output channels / groups) x kernel elements, + 1 per output element for the bias",
    "MatMul": "MatMul: 2 x output elements x the shared dimension K",
    "Gemm": "Gemm: 2 x M x N x K, + M x N for C, + M x N each for alpha and beta other than 1",
    "BatchNormalization": "BatchNormalization: 2 per element (inference: scale and shift folded per channel)",
    "normalization": f"Instance/Layer/GroupNormalization: {NORMALIZATION_FLOPS_PER_ELEMENT} per element "
                     "(mean 1, variance 3, normalize 2, scale and shift 2)",
    "unary": "activations and other element-wise functions (Relu, Sigmoid, Tanh, Clip, LeakyRelu, Exp, ...): "
             "1 per output element, a transcendental one too",
    "binary": "Add, Sub, Mul, Div and other element-wise operators: 1 per output element and extra input",
    "MaxPool": "MaxPool: kernel elements - 1 comparisons per output element",
    "AveragePool": "AveragePool: kernel elements (adds and a divide) per output element",
    "global pooling": "GlobalAveragePool: 1 per input element; GlobalMaxPool: 1 per input element less 1 per output",
    "Resize": "Resize: nearest 0; linear 2^d multiplies + 2^d - 1 adds, cubic 4^d + 4^d - 1, per output element "
              "(d the resized axes)",
    "Softmax": f"Softmax/LogSoftmax: {SOFTMAX_FLOPS_PER_ELEMENT} per element (max, subtract, exp, sum, divide)",
    "reduction": "Reduce*, ArgMax/ArgMin: 1 per input element",
    "movement": "Reshape, Transpose, Concat, Slice, Gather, Pad, Cast and other data movement: 0 (their bytes count)",
}
UNCOUNTED_NOTE = ("other operators, and nodes whose shapes ONNX's shape inference cannot give (data-dependent), "
                  "count 0 FLOPs and are listed as uncounted; an unknown shape's bytes are left out")
BYTES_NOTE = ("bytes: initializers read + other inputs read + outputs written, each tensor once per layer "
              "(an estimate: caches and fused layers not modelled)")


def _note_key(op_type: str) -> str | None:
    if op_type in COUNTING_NOTES:
        return op_type
    if op_type == "LogSoftmax":
        return "Softmax"
    for key, ops in (("normalization", NORMALIZATIONS), ("unary", ELEMENTWISE_UNARY), ("binary", ELEMENTWISE_BINARY),
                     ("global pooling", ("GlobalAveragePool", "GlobalMaxPool")), ("reduction", REDUCTIONS),
                     ("movement", MOVEMENT)):  # fmt: skip
        if op_type in ops:
            return key
    return None


def counting_notes(op_types: Sequence[str]) -> list[str]:
    """How the FLOPs of these operators were counted, one line each, then how bytes were."""
    keys = dict.fromkeys(key for key in map(_note_key, op_types) if key is not None)
    return [COUNTING_NOTES[key] for key in keys] + [UNCOUNTED_NOTE, BYTES_NOTE]


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """The ONNX model at `path` (its external data too); a one-line OnnxModelError otherwise."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise OnnxModelError(f"{path}: {what}: give an ONNX model file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, onnx.checker.ValidationError) as exc:  # not protobuf, or its external data missing
        raise OnnxModelError(f"{path} is not an ONNX model ({type(exc).__name__}): give a .onnx file") from None
    if not model.graph.node:
        raise OnnxModelError(f"{path} is not an ONNX model with a graph of nodes: give a .onnx file")
    return model


def input_shapes(model: onnx.ModelProto, batch_size: int = 1, shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple[int, ...]]:
    """Every graph input's concrete shape: a dynamic first dimension is the batch size; `shapes`
    gives an input's dims without that batch dimension (as perf_analyzer's --shape) or all of them.
    A named dynamic dimension one input's shape fixes is fixed for every input that names it (a
    decoder's `past` in all its caches). Raises OnnxModelError for an unknown input name, a shape
    that does not fit, or a dynamic dimension left open."""
    if batch_size < 1:
        raise OnnxModelError(f"batch size must be at least 1, got {batch_size}")
    shapes = dict(shapes or {})
    initializers = {init.name for init in model.graph.initializer}
    inputs = {value.name: list(value.type.tensor_type.shape.dim) for value in model.graph.input if value.name not in initializers}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise OnnxModelError(f"--shape names {', '.join(unknown)}, not an input of the model: its inputs are {', '.join(inputs)}")
    batched = {name for name, dims in inputs.items() if dims and _dynamic(dims[0])}
    if batch_size > 1 and not batched:
        raise OnnxModelError(f"batch size {batch_size}: no input of the model has a dynamic first dimension to batch on")
    symbols = {dims[0].dim_param: batch_size for name, dims in inputs.items() if name in batched and dims[0].dim_param}
    given: dict[str, tuple[int, ...]] = {}
    for name, dims in inputs.items():
        if name not in shapes:
            continue
        shape = tuple(int(d) for d in shapes[name])
        if len(shape) == len(dims) - 1 and name in batched:
            shape = (batch_size, *shape)
        fixed = [None if _dynamic(d) else d.dim_value for d in dims]
        if name in batched:
            fixed[0] = batch_size
        if len(shape) != len(dims) or any(f is not None and f != g for f, g in zip(fixed, shape)):
            raise OnnxModelError(f"--shape {name}:{','.join(map(str, shapes[name]))} does not fit the input's shape "
                                 f"[{','.join(map(_dim_text, dims))}] (batch size {batch_size})")  # fmt: skip
        symbols.update((d.dim_param, g) for d, g in zip(dims, shape) if _dynamic(d) and d.dim_param)
        given[name] = shape
    resolved: dict[str, tuple[int, ...]] = {}
    for name, dims in inputs.items():
        shape = given.get(name) or tuple(
            batch_size if i == 0 and name in batched else d.dim_value if not _dynamic(d) else symbols.get(d.dim_param, -1)
            for i, d in enumerate(dims))  # fmt: skip
        if -1 in shape:
            raise DynamicShapeError(name, ",".join(map(_dim_text, dims)))
        resolved[name] = shape
    return resolved


def _dynamic(dim: onnx.TensorShapeProto.Dimension) -> bool:
    return not (dim.HasField("dim_value") and dim.dim_value > 0)


def _dim_text(dim: onnx.TensorShapeProto.Dimension) -> str:
    return (dim.dim_param or "?") if _dynamic(dim) else str(dim.dim_value)


def _with_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name]):
                dim.Clear()
                dim.dim_value = size
    del fixed.graph.value_info[:]  # inferred afresh for these shapes
    return fixed


def _tensor_types(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """name -> (shape or None when not fully known, element size in bytes)."""
    found: dict[str, tuple[tuple[int, ...] | None, int]] = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            shape = None
        else:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            shape = None if any(d < 0 for d in dims) else dims
        found[value.name] = (shape, _itemsize(tensor.elem_type))
    for init in model.graph.initializer:
        found[init.name] = (tuple(init.dims), _itemsize(init.data_type))
    return found


def _itemsize(elem_type: int) -> int:
    if elem_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
        return 0  # strings have no fixed size: left out of the bytes
    return helper.tensor_dtype_to_np_dtype(elem_type).itemsize


def _attribute(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _decoded(value):
    return value.decode() if isinstance(value, bytes) else value


def node_flops(node: onnx.NodeProto, in_shapes: Sequence[tuple[int, ...] | None], out_shapes: Sequence[tuple[int, ...]]) -> int | None:
    """This node's FLOPs by the rules of COUNTING_NOTES; None for an operator they do not cover.
    `in_shapes` has None for an absent optional input."""
    op = node.op_type
    out = math.prod(out_shapes[0]) if out_shapes else 0
    x = in_shapes[0] if in_shapes else None
    has_bias = len(in_shapes) > 2 and in_shapes[2] is not None
    if op == "Conv":
        weight = in_shapes[1]  # [M, C/group, k1, k2, ...]
        return 2 * out * math.prod(weight[1:]) + (out if has_bias else 0)
    if op == "ConvTranspose":
        weight = in_shapes[1]  # [C, M/group, k1, k2, ...]: each input element meets M/group x kernel weights
        return 2 * math.prod(x) * math.prod(weight[1:]) + (out if has_bias else 0)
    if op == "MatMul":
        return 2 * out * x[-1]
    if op == "Gemm":
        rows, shared = (x[1], x[0]) if _attribute(node, "transA", 0) else (x[0], x[1])
        cols = in_shapes[1][0] if _attribute(node, "transB", 0) else in_shapes[1][1]
        flops = 2 * rows * cols * shared
        flops += rows * cols if _attribute(node, "alpha", 1.0) != 1.0 else 0
        if has_bias:
            flops += rows * cols * (2 if _attribute(node, "beta", 1.0) != 1.0 else 1)
        return flops
    if op == "BatchNormalization":
        return 2 * out
    if op in NORMALIZATIONS:
        return NORMALIZATION_FLOPS_PER_ELEMENT * out
    if op in ELEMENTWISE_UNARY:
        return out
    if op in ELEMENTWISE_BINARY:
        return out * max(1, sum(shape is not None for shape in in_shapes) - 1)
    if op in ("MaxPool", "AveragePool"):
        kernel = math.prod(_attribute(node, "kernel_shape", []))
        return out * (kernel - 1 if op == "MaxPool" else kernel)
    if op == "GlobalAveragePool":
        return math.prod(x)
    if op == "GlobalMaxPool":
        return math.prod(x) - out
    if op == "Resize":
        per_axis = {"linear": 2, "cubic": 4}.get(_decoded(_attribute(node, "mode", "nearest")), 0)
        taps = per_axis ** sum(a != b for a, b in zip(x, out_shapes[0]))
        return out * (2 * taps - 1) if per_axis else 0
    if op in ("Softmax", "LogSoftmax"):
        return SOFTMAX_FLOPS_PER_ELEMENT * out
    if op in REDUCTIONS:
        return math.prod(x)
    if op in MOVEMENT:
        return 0
    return None


def model_cost(model: onnx.ModelProto, batch_size: int = 1, shapes: Mapping[str, Sequence[int]] | None = None) -> ModelCost:
    """The model's cost at this batch size and these input shapes (see input_shapes)."""
    resolved = input_shapes(model, batch_size, shapes)
    try:
        inferred = shape_inference.infer_shapes(_with_input_shapes(model, resolved), strict_mode=False, data_prop=True)
    except (shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise OnnxModelError(f"ONNX shape inference failed for these input shapes: {str(exc).splitlines()[0]}") from None
    types = _tensor_types(inferred)
    initializers = {init.name for init in model.graph.initializer}
    layers: list[LayerCost] = []
    uncounted: dict[str, None] = {}
    for index, node in enumerate(inferred.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        in_shapes, weight_bytes, params, activation_bytes = [], 0, 0, 0
        for tensor in node.input:
            shape, itemsize = types.get(tensor, (None, 0))  # an optional input left out is named ""
            in_shapes.append(shape)
            if shape is None:
                continue
            if tensor in initializers:
                params += math.prod(shape)
                weight_bytes += math.prod(shape) * itemsize
            else:
                activation_bytes += math.prod(shape) * itemsize
        outputs = [types.get(tensor, (None, 0)) for tensor in node.output if tensor]
        out_shapes = [shape for shape, _ in outputs]
        activation_bytes += sum(math.prod(shape) * itemsize for shape, itemsize in outputs if shape is not None)
        shapes_known = all(shape is not None for shape in out_shapes) and all(
            shape is not None for tensor, shape in zip(node.input, in_shapes) if tensor)
        flops = node_flops(node, in_shapes, out_shapes) if shapes_known else None
        if flops is None:
            uncounted.setdefault(node.op_type, None)
        layers.append(LayerCost(name, node.op_type, flops or 0, params, weight_bytes, activation_bytes))
    unique_params = sum(math.prod(init.dims) for init in model.graph.initializer)
    return ModelCost(batch_size, tuple(layers), tuple(uncounted), unique_params)

