"""Request inputs from perf_analyzer's data formats: no server needed."""

import base64
import json

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor

from loadgen.options import build_config
from loadgen.errors import UsageError
from loadgen.inputs import build_request_inputs, model_inputs

IMAGE_MODEL = ({"name": "ens", "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}]}, {"max_batch_size": 8})
FP32_MODEL = ({"name": "add", "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]}, {"max_batch_size": 8})
VAR_MODEL = ({"name": "var", "inputs": [{"name": "X", "datatype": "INT32", "shape": [-1]}]}, {"max_batch_size": 0})


def build(model, **options):
    config = build_config({k.replace("_", "-"): v for k, v in options.items()})
    return build_request_inputs(model_inputs(*model, config.inputs.batch_size), config.inputs)


def elements(tensor):
    return deserialize_bytes_tensor(tensor.data).tolist()


def write_json(tmp_path, data):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"data": data}))
    return str(path)


def test_image_models_default_to_the_photograph():
    (request,) = build(IMAGE_MODEL)
    (tensor,) = request
    assert tensor.shape == (1, 1)
    assert elements(tensor)[0].startswith(b"\xff\xd8")  # a JPEG


def test_random_and_zero_data():
    (request,) = build(FP32_MODEL, input_data="zero", batch_size=2)
    assert request[0].shape == (2, 4) and request[0].data == bytes(32)
    (request,) = build(FP32_MODEL, input_data="random")
    values = np.frombuffer(request[0].data, dtype=np.float32)
    assert values.size == 4 and values.any()


def test_bytes_random_strings_have_the_string_length():
    (request,) = build(IMAGE_MODEL, input_data="random", string_length=7)
    assert [len(e) for e in elements(request[0])] == [7]


def test_json_forms(tmp_path):
    serialized = (3).to_bytes(4, "little") + b"abc" + (1).to_bytes(4, "little") + b"d"
    path = write_json(tmp_path, [
        {"IMAGE": ["plain"]},
        {"IMAGE": {"content": ["given"], "shape": [1]}},
        {"IMAGE": {"b64": base64.b64encode(serialized[:7]).decode()}},
    ])
    requests = build(IMAGE_MODEL, input_data=path)
    assert [elements(r[0]) for r in requests] == [[b"plain"], [b"given"], [b"abc"]]


def test_json_numeric_b64_and_batches_of_consecutive_entries(tmp_path):
    path = write_json(tmp_path, [
        {"X": {"b64": base64.b64encode(np.arange(4, dtype=np.float32).tobytes()).decode()}},
        {"X": [4, 5, 6, 7]},
        {"X": [8, 9, 10, 11]},
    ])
    requests = build(FP32_MODEL, input_data=path, batch_size=2)
    batches = [np.frombuffer(r[0].data, dtype=np.float32).reshape(r[0].shape) for r in requests]
    assert [b[:, 0].tolist() for b in batches] == [[0, 4], [8, 0]]  # wraps around to fill the last batch


def test_variable_shapes_need_a_shape(tmp_path):
    with pytest.raises(UsageError, match="--shape X"):
        build(VAR_MODEL)
    (request,) = build(VAR_MODEL, shape=["X:3"], input_data="zero")
    assert request[0].shape == (3,)
    path = write_json(tmp_path, [{"X": {"content": [1, 2, 3, 4, 5], "shape": [5]}}])
    (request,) = build(VAR_MODEL, input_data=path)
    assert request[0].shape == (5,)


def test_directory_of_files_per_input_and_of_images(tmp_path):
    (tmp_path / "IMAGE").write_text("first\nsecond\n")
    with pytest.raises(UsageError, match="elements"):
        build(IMAGE_MODEL, input_data=str(tmp_path))  # two lines are two elements, the shape wants one
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"\x89PNG-a")
    (photos / "b.jpg").write_bytes(b"\xff\xd8-b")
    requests = build(IMAGE_MODEL, input_data=str(photos))
    assert [elements(r[0]) for r in requests] == [[b"\x89PNG-a"], [b"\xff\xd8-b"]]


@pytest.mark.parametrize("content,message", [
    ("{", "not valid JSON"),
    ('{"data": []}', "non-empty"),
    ('{"data": [{}]}', "lacks input 'X'"),
    ('{"data": [{"Y": [1]}]}', "has input 'Y', which the model does not have: its inputs are X"),
    ('{"data": [{"X": [1, 2]}]}', "has 2 elements"),
    ('{"data": [{"X": ["a", "b", "c", "d"]}]}', "not FP32"),
    ('{"data": [{"X": {"b64": "***"}}]}', "not valid base64"),
])
def test_bad_json(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        build(FP32_MODEL, input_data=str(path))


def test_bad_bytes_b64_names_the_format(tmp_path):
    path = write_json(tmp_path, [{"IMAGE": {"b64": base64.b64encode(b"\xff\xff\xff\x7fjpeg").decode()}}])
    with pytest.raises(UsageError, match="serialized BYTES"):
        build(IMAGE_MODEL, input_data=path)


def test_batch_limits():
    with pytest.raises(UsageError, match="max_batch_size 8"):
        build(FP32_MODEL, batch_size=9)
    with pytest.raises(UsageError, match="does not support batching"):
        build(VAR_MODEL, batch_size=2, shape=["X:3"])
    with pytest.raises(UsageError, match="not zero, random"):
        build(FP32_MODEL, input_data="/no/such/file")
