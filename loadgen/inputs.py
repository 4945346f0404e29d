"""Request inputs: the model's tensors filled from zeros, random data, perf_analyzer JSON, files or images,
or a text model's prompts (loadgen.prompts) with --max-tokens; and, from the JSON's `validation_data`
(or a directory's files named after outputs), what each request's responses must hold (loadgen.validation)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from loadgen.config import Inputs
from loadgen.errors import UsageError
from loadgen.prompts import is_prompts_file, read_prompts, repository_tokenizer, synthetic_prompts
from loadgen.transport.base import InputTensor, RequestInputs
from loadgen.validation import ExpectedOutputs, WireError, expected_output, from_wire, json_value_fits, to_wire

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
RANDOM_SEED = 0
STRING_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .?!"
# The names --max-tokens recognises (any case): Triton's TensorRT-LLM ensemble and the shipped
# llm-ensemble take max_tokens, TensorRT-LLM's tensorrt_llm model request_output_len, others max_new_tokens.
MAX_TOKENS_INPUTS = ("max_tokens", "max_new_tokens", "request_output_len")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the model declares it, without the batch dimension (-1 = variable)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    batched: bool
    optional: bool = False  # an input its config marks `optional`: a request may leave it out


@dataclass(frozen=True)
class ModelTensors:
    """The model's tensors as requests use them: its inputs, and its outputs (which validation_data may check)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _specs(entries: Sequence[Mapping[str, Any]], batched: bool, optional: frozenset[str] = frozenset()) -> tuple[TensorSpec, ...]:
    specs = []
    for entry in entries:
        shape = tuple(int(d) for d in entry["shape"])
        specs.append(TensorSpec(entry["name"], entry["datatype"], shape[1:] if batched else shape, batched, entry["name"] in optional))
    return tuple(specs)


def model_inputs(metadata: Mapping[str, Any], config: Mapping[str, Any], batch_size: int) -> ModelTensors:
    """The model's inputs and outputs; checks the batch size against what the model accepts."""
    max_batch_size = int(config.get("max_batch_size", 0))
    batched = max_batch_size > 0
    name = metadata.get("name", "the model")
    if not batched and batch_size > 1:
        raise UsageError(f"model {name!r} does not support batching: use -b 1")
    if batched and batch_size > max_batch_size:
        raise UsageError(f"-b {batch_size} exceeds the max_batch_size {max_batch_size} of model {name!r}: use -b {max_batch_size} or less")
    # The metadata does not say which inputs are optional; the configuration does.
    optional = frozenset(str(entry.get("name")) for entry in config.get("input", []) if entry.get("optional"))
    inputs = _specs(metadata.get("inputs", []), batched, optional)
    if not inputs:
        raise UsageError(f"model {name!r} declares no inputs")
    # An output the metadata gives no datatype or shape (not Triton's metadata) cannot be validated.
    outputs = [entry for entry in metadata.get("outputs", []) if "datatype" in entry and "shape" in entry]
    return ModelTensors(inputs, _specs(outputs, batched))


def _fits(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    """The model's dims accept `shape` (-1 takes any size)."""
    return len(shape) == len(spec.shape) and all(d == -1 or d == g for d, g in zip(spec.shape, shape))


def check_shapes(specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every --shape names an input of the model, in a shape its dims accept."""
    by_name = {s.name: s for s in specs}
    for name, given in shapes.items():
        spec = by_name.get(name)
        if spec is None:
            raise UsageError(f"--shape {name}: the model has no input {name!r}; its inputs are {', '.join(by_name)}")
        if not _fits(spec, given):
            raise UsageError(
                f"--shape {name}:{','.join(map(str, given))} does not fit input {name!r} of shape {list(spec.shape)} (-1: any size): fix --shape"
            )


def _resolve_shape(spec: TensorSpec, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    if spec.name in shapes:
        return shapes[spec.name]
    if any(d < 0 for d in spec.shape):
        raise UsageError(f"input {spec.name!r} has a variable shape {list(spec.shape)}: give it with --shape {spec.name}:d1,d2,...")
    return spec.shape


def _numpy_dtype(datatype: str) -> Any:
    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise UsageError(f"datatype {datatype} is not supported for generated input data")
    return dtype


def _synthetic(spec: TensorSpec, shape: tuple[int, ...], kind: str, string_length: int, rng: np.random.Generator) -> np.ndarray:
    """perf_analyzer's zero/random data. BYTES gets one random string of string_length characters
    in every element for both kinds, as perf_analyzer sends."""
    if spec.datatype == "BYTES":
        alphabet = np.frombuffer(STRING_ALPHABET, dtype=np.uint8)
        text = alphabet[rng.integers(0, alphabet.size, size=string_length)].tobytes()
        return np.full(shape, text, dtype=np.object_)
    dtype = _numpy_dtype(spec.datatype)
    if kind == "zero":
        return np.zeros(shape, dtype=dtype)
    if spec.datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
    return rng.random(size=shape).astype(dtype)


def _from_raw(spec: TensorSpec, raw: bytes, what: str) -> np.ndarray:
    """A non-BYTES tensor from its raw bytes."""
    try:
        return from_wire(spec.datatype, raw)
    except WireError as exc:
        raise UsageError(f"{what} {exc}: fix the data") from None


def _decode_b64(spec: TensorSpec, text: Any, where: str) -> np.ndarray:
    """A b64 value is the tensor's raw bytes; for BYTES that is the serialized form (each element
    a 4-byte little-endian length and its bytes), as perf_analyzer reads it."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise UsageError(f"{where}: {spec.name}.b64 is not valid base64") from None
    if spec.datatype != "BYTES":
        return _from_raw(spec, raw, f"{where}: {spec.name}.b64")
    try:
        return from_wire("BYTES", raw)
    except WireError:
        raise UsageError(
            f"{where}: {spec.name}.b64 is not a serialized BYTES tensor (4-byte length before each element): "
            'for one raw file use {"content": ...} or an image directory'
        ) from None


def _from_json_value(spec: TensorSpec, value: Any, where: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """One tensor of perf_analyzer's JSON: a flat list, {"content": [...], "shape": [...]}, or {"b64": ...}.
    Its elements flat, and the shape given with them (None: none given)."""
    shape = None
    if isinstance(value, Mapping):
        if "shape" in value:
            shape = _json_shape(spec, value["shape"], where)
        if "b64" in value:
            array = _decode_b64(spec, value["b64"], where)
        elif "content" in value:
            array = _content_array(spec, value["content"], where)
        else:
            raise UsageError(f"{where}: {spec.name} needs a list, or an object with 'content' or 'b64'")
    else:
        array = _content_array(spec, value, where)
    return array, shape


def _input_value(spec: TensorSpec, value: Any, shapes: Mapping[str, tuple[int, ...]], where: str) -> np.ndarray:
    array, shape = _from_json_value(spec, value, where)
    return _shaped(array, shape if shape is not None else _resolve_shape(spec, shapes), f"{where}: {spec.name}")


def _expected_value(spec: TensorSpec, array: np.ndarray, shape: tuple[int, ...] | None, what: str) -> tuple[np.ndarray, bool]:
    """An output's expected elements, and whether its shape is known: given, or the model's when it
    has no variable dimension (then its element count is checked here, before any load)."""
    if shape is None and all(d >= 0 for d in spec.shape):
        shape = spec.shape
    if shape is None:
        return array, False
    return _shaped(array, shape, what), True


def _json_shape(spec: TensorSpec, value: Any, where: str) -> tuple[int, ...]:
    whole = isinstance(value, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
    if not whole:
        raise UsageError(f"{where}: {spec.name}.shape {value!r} is not a list of sizes, e.g. {[max(d, 1) for d in spec.shape]}")
    if not _fits(spec, tuple(value)):
        raise UsageError(f"{where}: {spec.name}.shape {value} does not fit the model's shape {list(spec.shape)} (-1: any size): fix the data")
    return tuple(value)


def _shaped(array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    needed = int(np.prod(shape))
    if array.size != needed:
        raise UsageError(f"{what} has {array.size} elements, shape {list(shape)} needs {needed}")
    return array.reshape(shape)


def _element_kind(datatype: str, dtype: np.dtype) -> str:
    if datatype == "BYTES":
        return 'a string; raw bytes go in {"b64": ...}'
    if datatype == "BOOL":
        return "true or false"
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return f"a whole number from {info.min} to {info.max}"
    return "a number"


def _shown(value: Any) -> str:
    """A JSON value in a message: as JSON, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _content_array(spec: TensorSpec, content: Any, where: str) -> np.ndarray:
    try:
        flat = np.asarray(content, dtype=np.object_).reshape(-1) if isinstance(content, list) else np.array([content], dtype=np.object_)
    except ValueError:  # lists of uneven lengths
        flat = np.array([content], dtype=np.object_)
    dtype = np.dtype(np.object_ if spec.datatype == "BYTES" else _numpy_dtype(spec.datatype))
    bad = [v for v in flat if not json_value_fits(v, spec.datatype)]
    if bad:
        raise UsageError(
            f"{where}: {spec.name} holds {_shown(bad[0])}, which is not {spec.datatype} ({_element_kind(spec.datatype, dtype)}): fix the data"
        )
    if spec.datatype == "BYTES":
        return np.array([v.encode() for v in flat], dtype=np.object_)
    return flat.astype(dtype)


# A data entry's tensors by input name; an entry's expected outputs by output name, each with
# whether its shape is known (loadgen.validation checks only the element count of one that is not).
Entry = dict[str, np.ndarray]
Expected = dict[str, tuple[np.ndarray, bool]]


def _json_entries(
    path: Path, model: ModelTensors, shapes: Mapping[str, tuple[int, ...]], flagged: str | None
) -> tuple[list[Entry], list[Expected] | None, tuple[int, ...] | None]:
    """perf_analyzer's JSON; an entry may leave out the input `flagged` (--max-tokens fills it). In
    its sequence form (each entry a stream: a list of steps), the steps one after the other, and
    each stream's step count."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read --input-data {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input-data {path} is not valid JSON (line {exc.lineno}): fix the file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--input-data {path} is not UTF-8 text: give a perf_analyzer JSON file, or a directory for raw tensors") from None
    data = document.get("data") if isinstance(document, Mapping) else None
    if not isinstance(data, list) or not data:
        raise UsageError(f'--input-data {path} needs a non-empty "data" list, as perf_analyzer reads it')
    specs = model.inputs
    known = {s.name for s in specs}
    names = ", ".join(s.name for s in specs)
    streams = None
    if any(isinstance(entry, list) for entry in data):  # perf_analyzer's sequence data: one list of steps per stream
        if not all(isinstance(entry, list) and entry for entry in data):
            raise UsageError(f"--input-data {path} mixes streams of steps with other entries: make every data entry a "
                             "non-empty list of steps (a sequence model's streams), or none")
        if "validation_data" in document:
            raise UsageError(f"--input-data {path}: validation_data is not read with streams of steps: drop it")
        streams = tuple(len(stream) for stream in data)
        data = [(f"data[{index}][{step}]", entry) for index, stream in enumerate(data) for step, entry in enumerate(stream)]
    else:
        data = [(f"data[{index}]", entry) for index, entry in enumerate(data)]
    entries = []
    for place, entry in data:
        where = f"--input-data {path}, {place}"
        if not isinstance(entry, Mapping):
            raise UsageError(f"{where} is not an object of input name: value")
        unknown = [name for name in entry if name not in known]
        if unknown:
            raise UsageError(f"{where} has input {unknown[0]!r}, which the model does not have: its inputs are {names}")
        missing = [s.name for s in specs if s.name not in entry and s.name != flagged]
        if missing:
            raise UsageError(f"{where} lacks input {missing[0]!r}: give every input of the model ({names})")
        entries.append({s.name: _input_value(s, entry[s.name], shapes, where) for s in specs if s.name in entry})
    if "validation_data" not in document:
        return entries, None, streams
    return entries, _validation_entries(path, document["validation_data"], len(data), model.outputs), None


def _validation_entries(path: Path, validation: Any, count: int, outputs: Sequence[TensorSpec]) -> list[Expected]:
    """perf_analyzer's `validation_data`: one entry per `data` entry, each naming some of the
    model's outputs in the forms `data` takes."""
    if not isinstance(validation, list) or len(validation) != count:
        given = f"{len(validation)} entries" if isinstance(validation, list) else "not a list"
        raise UsageError(f'--input-data {path}: "validation_data" is {given}: give one entry per "data" entry ({count}), as perf_analyzer reads it')
    by_name = {s.name: s for s in outputs}
    names = ", ".join(by_name) or "none"
    expected = []
    for index, entry in enumerate(validation):
        where = f"--input-data {path}, validation_data[{index}]"
        if not isinstance(entry, Mapping):
            raise UsageError(f"{where} is not an object of output name: value")
        unknown = [name for name in entry if name not in by_name]
        if unknown:
            raise UsageError(f"{where} has output {unknown[0]!r}, which the model does not have: its outputs are {names}")
        checked = {}
        for name, value in entry.items():
            array, shape = _from_json_value(by_name[name], value, where)
            checked[name] = _expected_value(by_name[name], array, shape, f"{where}: {name}")
        expected.append(checked)
    return expected


def _directory_entries(path: Path, model: ModelTensors, shapes: Mapping[str, tuple[int, ...]]) -> tuple[list[Entry], list[Expected] | None]:
    """perf_analyzer's directory form: one file per input, named after it, holding the raw tensor
    (for BYTES: text, one element per line); and a file named after an output holds what it must be."""
    entry = {}
    for spec in model.inputs:
        array = _directory_tensor(path, spec)
        shape = _resolve_shape(spec, shapes) if spec.name in shapes or all(d > 0 for d in spec.shape) else (array.size,)
        entry[spec.name] = _shaped(array, shape, f"--input-data {path / spec.name}")
    expected = {spec.name: _expected_value(spec, _directory_tensor(path, spec), None, f"--input-data {path / spec.name}")
                for spec in model.outputs if (path / spec.name).is_file()}  # fmt: skip
    return [entry], [expected] if expected else None


def _directory_tensor(path: Path, spec: TensorSpec) -> np.ndarray:
    try:
        raw = (path / spec.name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --input-data {path / spec.name}: {exc.strerror}") from None
    if spec.datatype == "BYTES":
        return np.array(raw.splitlines(), dtype=np.object_)
    return _from_raw(spec, raw, f"--input-data {path / spec.name}")


def image_input(specs: Sequence[TensorSpec]) -> TensorSpec | None:
    """The input that takes encoded images: the model's only input, BYTES, one element per item."""
    if len(specs) == 1 and specs[0].datatype == "BYTES" and int(np.prod([abs(d) for d in specs[0].shape] or [1])) == 1:
        return specs[0]
    return None


def sample_photographs() -> list[Path]:
    """Real photographs that are on every machine loadgen installs on: matplotlib's sample data."""
    import matplotlib

    return [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


def _image_entries(spec: TensorSpec, images: Sequence[Path]) -> list[Entry]:
    shape = tuple(1 for _ in spec.shape) or (1,)
    return [{spec.name: np.array([image.read_bytes()], dtype=np.object_).reshape(shape)} for image in images]


def _described(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({s.datatype}{', optional' if s.optional else ''})" for s in specs) or "none"


def prompt_input(specs: Sequence[TensorSpec], source: str) -> TensorSpec:
    """The input a prompt goes to: the model's only BYTES input, or its only required one."""
    texts = [s for s in specs if s.datatype == "BYTES"]
    if len(texts) > 1:
        texts = [s for s in texts if not s.optional]
    if len(texts) == 1:
        return texts[0]
    if not texts:
        raise UsageError(f"{source} gives prompts, and the model has no text (BYTES) input: its inputs are {_described(specs)}")
    names = ", ".join(s.name for s in texts)
    raise UsageError(f"{source} gives one text a request, and the model has several text inputs ({names}): give the data as "
                     f'perf_analyzer JSON, which names each input, e.g. {{"data": [{{"{texts[0].name}": ["..."], ...}}]}}')


def max_tokens_input(specs: Sequence[TensorSpec]) -> TensorSpec:
    """The input --max-tokens fills: the model's input named one of MAX_TOKENS_INPUTS."""
    named = [s for s in specs if s.name.lower() in MAX_TOKENS_INPUTS]
    if len(named) == 1:
        return named[0]
    flag = f"--max-tokens fills an input named {', '.join(MAX_TOKENS_INPUTS[:-1])} or {MAX_TOKENS_INPUTS[-1]}"
    if not named:
        raise UsageError(f"{flag}, and the model has none: its inputs are {_described(specs)}; drop --max-tokens")
    raise UsageError(f"{flag}, and the model has several ({', '.join(s.name for s in named)}): drop --max-tokens and give "
                     "them in perf_analyzer JSON --input-data")


def _single_element_shape(spec: TensorSpec, shapes: Mapping[str, tuple[int, ...]], what: str) -> tuple[int, ...]:
    """The shape of an input that carries one value (a prompt, --max-tokens): its dims with -1 as 1, or --shape."""
    shape = shapes.get(spec.name, tuple(1 if d < 0 else d for d in spec.shape))
    if int(np.prod(shape)) != 1:
        raise UsageError(f"input {spec.name!r} of shape {list(shape)} holds {int(np.prod(shape))} elements, and {what} is one: "
                         "give the data as perf_analyzer JSON")
    return shape


def _prompt_entries(
    model: ModelTensors, prompts: Sequence[str], shapes: Mapping[str, tuple[int, ...]], max_tokens: int | None, source: str
) -> list[Entry]:
    """One entry a prompt, in the model's text input. Optional inputs are left out (the model's
    defaults apply); the max-tokens input is --max-tokens'; another required input has no data here."""
    text = prompt_input(model.inputs, source)
    for spec in model.inputs:
        if spec is text or spec.optional:
            continue
        if spec.name.lower() not in MAX_TOKENS_INPUTS:
            raise UsageError(f"input {spec.name!r} is required, and {source} gives only the prompt: give every input "
                             "as perf_analyzer JSON --input-data")
        if max_tokens is None:
            raise UsageError(f"input {spec.name!r} is required: give --max-tokens N, the tokens to generate")
    shape = _single_element_shape(text, shapes, "a prompt")
    return [{text.name: np.array([prompt.encode()], dtype=np.object_).reshape(shape)} for prompt in prompts]


def _max_tokens_array(model: ModelTensors, max_tokens: int, shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, np.ndarray]:
    """--max-tokens as the tensor of the model's max-tokens input: (its name, the tensor)."""
    spec = max_tokens_input(model.inputs)
    dtype = _numpy_dtype(spec.datatype)
    if not np.issubdtype(dtype, np.integer):
        raise UsageError(f"input {spec.name!r} is {spec.datatype}, not an integer: --max-tokens fills an integer input")
    if max_tokens > np.iinfo(dtype).max:
        raise UsageError(f"--max-tokens {max_tokens} does not fit input {spec.name!r} ({spec.datatype}, at most {np.iinfo(dtype).max})")
    return spec.name, np.full(_single_element_shape(spec, shapes, "--max-tokens"), max_tokens, dtype=dtype)


def _entries(
    model: ModelTensors, config: Inputs, repository: Path | None
) -> tuple[list[Entry], list[Expected] | None, tuple[int, ...] | None]:
    """The data entries, the outputs each expects (None: nothing is checked), and the step count of
    each stream when the entries are a sequence model's streams (None: they are not)."""
    specs = model.inputs
    input_data, shapes, string_length = config.input_data, config.shapes, config.string_length
    check_shapes(specs, shapes)
    if config.prompt_tokens is not None:
        prompts = synthetic_prompts(config.prompt_tokens, RANDOM_SEED, repository_tokenizer(repository))
        return _prompt_entries(model, prompts, shapes, config.max_tokens, "--prompt-tokens"), None, None
    image_spec = image_input(specs)
    if input_data is None and image_spec is not None:
        return _image_entries(image_spec, sample_photographs()), None, None
    if input_data in (None, "random", "zero"):
        kind = input_data or "random"
        rng = np.random.default_rng(RANDOM_SEED)
        # A random count of tokens to generate (negative, or up to 2^31) is no load: an optional
        # max-tokens input is left to the model's default, or to --max-tokens.
        made = [s for s in specs if not (s.optional and s.name.lower() in MAX_TOKENS_INPUTS)]
        return [{s.name: _synthetic(s, _resolve_shape(s, shapes), kind, string_length, rng) for s in made}], None, None
    path = Path(input_data)
    if path.is_dir():
        if all((path / s.name).is_file() for s in specs):
            return (*_directory_entries(path, model, shapes), None)
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if image_spec is not None and images:
            return _image_entries(image_spec, images), None, None
        names = ", ".join(s.name for s in specs)
        raise UsageError(f"--input-data {path} holds neither one file per input ({names}) nor images for an image model")
    if path.is_file() and is_prompts_file(input_data):
        return _prompt_entries(model, read_prompts(path), shapes, config.max_tokens, f"--input-data {path}"), None, None
    if path.is_file():
        return _json_entries(path, model, shapes, max_tokens_input(specs).name if config.max_tokens is not None else None)
    raise UsageError(f"--input-data {input_data!r} is not zero, random, a JSON or prompts file (.txt, .jsonl) or a directory: check the path")


def _expected_outputs(outputs: Sequence[TensorSpec], picked: Sequence[Expected], config: Inputs) -> ExpectedOutputs | None:
    """What the responses to one request must hold, from its batch's entries (None: nothing)."""
    names = sorted(picked[0])
    if any(sorted(entry) != names for entry in picked[1:]):
        raise UsageError(f"validation_data entries batched together (-b {config.batch_size}) check different outputs: "
                         "give each the same outputs")  # fmt: skip
    checks = []
    for spec in outputs:
        if spec.name not in picked[0]:
            continue
        arrays = [entry[spec.name][0] for entry in picked]
        known = all(entry[spec.name][1] for entry in picked)
        if not known:  # a variable shape left open: the whole response's elements, in order
            array = np.concatenate([a.reshape(-1) for a in arrays])
        elif any(a.shape != arrays[0].shape for a in arrays):
            raise UsageError(f"output {spec.name!r} has validation_data entries of different shapes: they cannot form a batch of {config.batch_size}")
        else:
            array = np.stack(arrays) if spec.batched else arrays[0]
        checks.append(expected_output(spec.name, spec.datatype, array, known))
    return ExpectedOutputs(tuple(checks), config.validation_rtol, config.validation_atol) if checks else None


def build_request_inputs(model: ModelTensors, config: Inputs, repository: Path | None = None) -> list[RequestInputs]:
    """Every distinct request the run sends, in order, each with what its responses must hold. With
    -b N, each request batches N consecutive data entries (wrapping around), so every entry is used.
    --max-tokens fills the model's max-tokens input in every request. `repository`: a model
    repository whose tokenizer/tokenizer.json counts --prompt-tokens (None: the shipped tokenizer's count)."""
    return build_stream_inputs(model, config, repository)[0]


def build_stream_inputs(
    model: ModelTensors, config: Inputs, repository: Path | None = None
) -> tuple[list[RequestInputs], tuple[int, ...] | None]:
    """build_request_inputs' requests, and with a sequence model's streams of steps as input data,
    each stream's step count (its steps are the requests one after the other; None: no streams)."""
    entries, expected, streams = _entries(model, config, repository)
    if streams is not None and config.batch_size != 1:
        raise UsageError(f"--input-data's streams of steps are sent one step a request: drop -b {config.batch_size}")
    if config.max_tokens is not None:
        name, array = _max_tokens_array(model, config.max_tokens, config.shapes)
        entries = [{**entry, name: array} for entry in entries]
    batch = config.batch_size
    requests = []
    for first in range(0, len(entries), batch):
        indexes = [(first + i) % len(entries) for i in range(batch)]
        tensors = []
        for spec in model.inputs:
            if spec.name not in entries[first]:  # an optional input the data leaves out
                continue
            arrays = [entries[i][spec.name] for i in indexes]
            if any(a.shape != arrays[0].shape for a in arrays):
                raise UsageError(f"input {spec.name!r} has entries of different shapes: they cannot form a batch of {batch}")
            array = np.stack(arrays) if spec.batched else arrays[0]
            tensors.append(InputTensor(spec.name, spec.datatype, tuple(int(d) for d in array.shape), to_wire(spec.datatype, array)))
        checks = None if expected is None else _expected_outputs(model.outputs, [expected[i] for i in indexes], config)
        requests.append(RequestInputs(tensors, checks))
    return requests, streams
