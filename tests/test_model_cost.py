"""model_cost's counts against hand-computed ones (single-layer models and the shipped centernet),
and direct_timing on a large MatMul against the machine's roof."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from loadgen.direct_timing import (
    OrtThreads,
    cov_percent,
    latency_summary_ms,
    threads_from_model_dir,
    time_model,
)
from loadgen.errors import UsageError
from loadgen.model_cost import model_cost
from loadgen.roof import resolve_roof

ROOT = Path(__file__).resolve().parent.parent
CENTERNET = ROOT / "model_repository" / "centernet"
F32 = 4  # bytes


def single_node_model(node, inputs, output, initializers=()):
    """A one-node float model: `inputs` (name, shape) graph inputs, `output` (name, shape)."""
    graph = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info(*output[:1], TensorProto.FLOAT, output[1])],
        initializer=[numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in initializers],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def only_layer(cost):
    assert len(cost.layers) == 1
    return cost.layers[0]


def test_conv_with_bias():
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model = single_node_model(node, [("x", [1, 3, 8, 8])], ("y", [1, 4, 8, 8]), [("w", [4, 3, 3, 3]), ("b", [4])])
    layer = only_layer(model_cost(model))
    out = 4 * 8 * 8  # 256 output elements
    assert layer.flops == 2 * out * (3 * 3 * 3) + out == 14080  # 27 MACs per output, + the bias add
    assert layer.params == 4 * 3 * 3 * 3 + 4 == 112
    assert layer.weight_bytes == 112 * F32 == 448
    assert layer.activation_bytes == (3 * 8 * 8 + out) * F32 == 1792  # input read + output written
    assert layer.bytes == 2240
    assert layer.intensity == pytest.approx(14080 / 2240)


def test_grouped_conv_without_bias():
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], group=2)
    model = single_node_model(node, [("x", [1, 4, 6, 6])], ("y", [1, 8, 4, 4]), [("w", [8, 2, 3, 3])])
    layer = only_layer(model_cost(model))
    assert layer.flops == 2 * (8 * 4 * 4) * (2 * 3 * 3) == 4608  # each output sees 4/2 input channels
    assert layer.params == 8 * 2 * 3 * 3 == 144
    assert layer.bytes == 144 * F32 + (4 * 6 * 6 + 8 * 4 * 4) * F32 == 1664


def test_matmul_batched_and_per_inference():
    node = helper.make_node("MatMul", ["a", "w"], ["y"])
    model = single_node_model(node, [("a", ["N", 3, 64, 32])], ("y", ["N", 3, 64, 16]), [("w", [32, 16])])
    cost = model_cost(model)
    layer = only_layer(cost)
    assert layer.flops == 2 * (3 * 64 * 16) * 32 == 196608  # 2 x outputs x shared dimension K
    assert layer.params == 512
    assert layer.bytes == 512 * F32 + (3 * 64 * 32 + 3 * 64 * 16) * F32 == 38912
    at4 = model_cost(model, batch_size=4)
    assert at4.flops == 4 * 196608 and at4.flops_per_inference == 196608
    # The weights are read once per batch: per inference they are a quarter, the activations the same.
    assert at4.bytes_per_inference == 512 * F32 / 4 + (3 * 64 * 32 + 3 * 64 * 16) * F32 == 37376
    assert at4.intensity > cost.intensity


def test_gemm_with_c_and_alpha():
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)
    model = single_node_model(node, [("a", [8, 32])], ("y", [8, 16]), [("b", [16, 32]), ("c", [16])])
    layer = only_layer(model_cost(model))
    assert layer.flops == 2 * 8 * 16 * 32 + 8 * 16 == 8320  # M x N x K MACs, + C added
    assert layer.params == 16 * 32 + 16 == 528
    assert layer.bytes == 528 * F32 + (8 * 32 + 8 * 16) * F32 == 3648
    scaled = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5)
    model = single_node_model(scaled, [("a", [8, 32])], ("y", [8, 16]), [("b", [16, 32]), ("c", [16])])
    assert only_layer(model_cost(model)).flops == 8320 + 8 * 16  # alpha multiplies each product


def test_pooling():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    layer = only_layer(model_cost(single_node_model(pool, [("x", [1, 2, 8, 8])], ("y", [1, 2, 4, 4]))))
    assert layer.flops == (2 * 4 * 4) * (2 * 2 - 1) == 96  # 3 comparisons per output
    assert layer.params == 0
    assert layer.bytes == (2 * 8 * 8 + 2 * 4 * 4) * F32 == 640
    average = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    layer = only_layer(model_cost(single_node_model(average, [("x", [1, 2, 8, 8])], ("y", [1, 2, 8, 8]))))
    assert layer.flops == (2 * 8 * 8) * 9 == 1152  # 8 adds and a divide per output
    global_average = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    layer = only_layer(model_cost(single_node_model(global_average, [("x", [1, 2, 8, 8])], ("y", [1, 2, 1, 1]))))
    assert layer.flops == 2 * 8 * 8 == 128  # one per input element


def test_conv_transpose_resize_and_batch_norm():
    up = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2])
    layer = only_layer(model_cost(single_node_model(up, [("x", [1, 2, 4, 4])], ("y", [1, 3, 9, 9]), [("w", [2, 3, 3, 3])])))
    assert layer.flops == 2 * (2 * 4 * 4) * (3 * 3 * 3) == 1728  # each input element meets 3 channels x 3x3 weights
    assert layer.bytes == 54 * F32 + (2 * 4 * 4 + 3 * 9 * 9) * F32 == 1316
    resize = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    layer = only_layer(model_cost(single_node_model(resize, [("x", [1, 1, 4, 4])], ("y", [1, 1, 8, 8]), [("scales", [4])])))
    assert layer.flops == 64 * (4 + 3) == 448  # bilinear: 4 weighted neighbours (4 multiplies, 3 adds) per output
    norm = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    layer = only_layer(model_cost(single_node_model(norm, [("x", [1, 2, 3, 3])], ("y", [1, 2, 3, 3]),
                                                    [("s", [2]), ("b", [2]), ("m", [2]), ("v", [2])])))  # fmt: skip
    assert layer.flops == 2 * 18 and layer.params == 8  # a multiply and an add per element


def test_unknown_operator_is_listed_as_uncounted():
    node = helper.make_node("Hardmax", ["x"], ["y"])
    cost = model_cost(single_node_model(node, [("x", [4, 10])], ("y", [4, 10])))
    assert cost.flops == 0 and cost.uncounted_ops == ("Hardmax",)
    assert cost.bytes == 2 * 40 * F32  # its bytes still count


def test_shapes_fill_dynamic_dimensions_and_bad_ones_are_refused():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = single_node_model(node, [("x", ["N", "C", 16])], ("y", ["N", "C", 16]))
    assert model_cost(model, 2, {"x": (5, 16)}).flops == 2 * 5 * 16  # without the batch dimension, as perf_analyzer's
    assert model_cost(model, 2, {"x": (2, 5, 16)}).flops == 2 * 5 * 16  # or with it
    for shapes, message in (({}, "dynamic dimensions"), ({"y": (5, 16)}, "not an input"), ({"x": (5, 8)}, "does not fit"),
                            ({"x": (3, 5, 16)}, "does not fit")):  # fmt: skip
        with pytest.raises(UsageError, match=message):
            model_cost(model, 2, shapes)
    with pytest.raises(UsageError, match="no input of the model has a dynamic first dimension"):
        model_cost(single_node_model(node, [("x", [1, 16])], ("y", [1, 16])), 4)


def test_a_named_dimension_given_once_holds_for_every_input():
    node = helper.make_node("Add", ["a", "b"], ["y"])
    model = single_node_model(node, [("a", ["batch", "past", 8]), ("b", ["batch", "past", 8])], ("y", ["batch", "past", 8]))
    assert model_cost(model, 1, {"a": (4, 8)}).flops == 4 * 8  # b's "past" is a's


def centernet_builder():
    """The shipped centernet's own builder, model_repository/centernet/build_onnx.py."""
    spec = importlib.util.spec_from_file_location("centernet_build_under_test", CENTERNET / "build_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_centernet_counts_match_its_architecture():
    """build_onnx.py at its defaults: 256x256 input, 80 classes; 3x3 convolutions padded 1, 1x1 projections."""
    cost = model_cost(centernet_builder().build_model())

    def conv(cin, cout, k, hw):  # MACs x 2 + the bias add per output; weights + biases
        return 2 * cout * hw * hw * cin * k * k + cout * hw * hw, cout * cin * k * k + cout

    expected = {
        "stem": conv(3, 16, 3, 128),  # stride 2: 256 -> 128
        "down": conv(16, 32, 3, 64),  # stride 2: 128 -> 64 (output stride 4)
        "body1": conv(32, 32, 3, 64),
        "body2": conv(32, 32, 3, 64),
        "heatmap.conv": conv(32, 32, 3, 64), "wh.conv": conv(32, 32, 3, 64), "offset.conv": conv(32, 32, 3, 64),
        "heatmap.proj": conv(32, 80, 1, 64), "wh.proj": conv(32, 2, 1, 64), "offset.proj": conv(32, 2, 1, 64),
        # One FLOP per output element of each activation.
        "stem.relu": (16 * 128 * 128, 0), "down.relu": (32 * 64 * 64, 0), "body1.relu": (32 * 64 * 64, 0),
        "body2.relu": (32 * 64 * 64, 0), "heatmap.relu": (32 * 64 * 64, 0), "wh.relu": (32 * 64 * 64, 0),
        "offset.relu": (32 * 64 * 64, 0), "heatmap.sigmoid": (80 * 64 * 64, 0), "wh.exp": (2 * 64 * 64, 0),
        "offset.sigmoid": (2 * 64 * 64, 0),
    }  # fmt: skip
    assert {layer.name: (layer.flops, layer.params) for layer in cost.layers} == expected
    assert expected["stem"] == (14_417_920, 448) and expected["body1"] == (75_628_544, 9_248)
    assert expected["heatmap.proj"] == (21_299_200, 2_640) and expected["wh.proj"] == (532_480, 66)
    assert cost.flops == sum(flops for flops, _ in expected.values()) == 454_197_248
    assert cost.params == sum(params for _, params in expected.values()) == 54_100
    assert cost.uncounted_ops == ()


def matmul_model(m, k, n):
    """Both operands inputs, as the roof's GEMM: ONNX Runtime prepacks a constant weight, a few % faster."""
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
                               helper.make_tensor_value_info("w", TensorProto.FLOAT, [k, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_large_matmul_timed_directly_reaches_a_plausible_share_of_the_roof(tmp_path):
    """A 2048² MatMul against the roof (a 1024² GEMM, which fits the caches better and is faster); both are
    measured here and now (a fresh roof cache), so that a busy moment weighs on both alike."""
    roof = resolve_roof(threads=1, local=True, cache_dir=tmp_path)
    model = matmul_model(2048, 2048, 2048)
    cost = model_cost(model)
    assert cost.flops == 2 * 2048**3
    timing = time_model(model, threads=OrtThreads(1, 1, "test"), warmup_ms=300, iterations=8, duration_s=1.5)
    assert timing.iterations >= 8 and timing.wall_s >= 1.5
    latency = timing.latency_ms
    assert 0 < latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"]
    assert sum(timing.latencies_ms) / 1e3 <= timing.wall_s  # each run inside the timed wall time
    assert timing.throughput_per_s == pytest.approx(timing.iterations / timing.wall_s)
    achieved = cost.flops_per_inference * timing.throughput_per_s
    share = roof.share(achieved, cost.intensity)
    assert 0.10 <= share <= 1.10, f"achieved {achieved / 1e9:.1f} GFLOP/s, {share:.0%} of the roof {roof}"


def test_latency_summary_and_cov():
    latencies = [float(v) for v in range(1, 101)]  # 1..100 ms
    summary = latency_summary_ms(latencies)
    assert summary == {"min": 1.0, "mean": 50.5, "median": 51.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert cov_percent([10.0, 10.0, 10.0]) == 0.0
    assert cov_percent([9.0, 11.0]) == pytest.approx(10.0)  # population stdev 1 over mean 10


def test_threads_from_model_dir(tmp_path):
    shipped = threads_from_model_dir(CENTERNET)
    assert (shipped.intra_op, shipped.inter_op) == (1, 1)
    assert "intra_op_num_threads" in shipped.source and "config.pbtxt" in shipped.source
    ort_backend = tmp_path / "ort"
    ort_backend.mkdir()
    (ort_backend / "config.pbtxt").write_text('backend: "onnxruntime"\n'
                                              'parameters { key: "intra_op_thread_count" value: { string_value: "2" } }\n'
                                              'parameters { key: "inter_op_thread_count" value: { string_value: "0" } }\n')  # fmt: skip
    backend = threads_from_model_dir(ort_backend)
    assert (backend.intra_op, backend.inter_op) == (2, None)  # 0: ONNX Runtime's default, as the backend reads it
    assert "intra_op_thread_count" in backend.source
    none = threads_from_model_dir(tmp_path)
    assert (none.intra_op, none.inter_op) == (None, None) and "defaults" in none.source


def test_a_model_that_fails_when_run_is_a_usage_error():
    """It loads, but no run succeeds: Reshape of 24 elements to the shape its second input gives (0s and 1s)."""
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad_reshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UsageError, match="ONNX Runtime cannot run the model: .*Reshape"):
        time_model(model, threads=OrtThreads(1, 1, "test"), warmup_ms=0, iterations=1, duration_s=0)
