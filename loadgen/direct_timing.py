"""Times an ONNX model directly in ONNX Runtime, without a server, as trtexec times an engine.

Semantics are trtexec's: run for `warmup_ms` (trtexec --warmUp, default 200 ms) untimed, then
time one `session.run` after another until at least `iterations` have run (--iterations, default
10) AND at least `duration_s` of wall time has passed (--duration, default 3 s). Each run's latency
is from the call to its return with the outputs in host memory, so a run is complete when timed.
Throughput is inferences (batch items) per second of that timed wall time. Inputs are random, of
each input's dtype and shape, from a fixed seed, made once before the warm-up.

Session settings follow what the server gives the model: the thread counts of its config.pbtxt
(`threads_from_model_dir`), sequential execution, all graph optimizations, and no spinning
between runs, as the shipped centernet's model.py sets them (kept in step by hand: a model
repository must run on a server without loadgen installed, so model.py cannot import this).

CPU only. On a GPU the kernels run asynchronously: a call returns once they are enqueued unless
something waits for the device. ONNX Runtime's CUDA and TensorRT providers wait at the end of a
run by default, but not with the run option `disable_synchronize_execution_providers=1` (async
pipelines), and a timer around such a call measures only the launch; with host inputs and
outputs, `session.run` also times the PCIe copies. Honest GPU timing binds device inputs and
outputs once (IOBinding, so no copies are timed), calls run_with_iobinding, and waits for the
device (`synchronize_outputs`, or CUDA events around the run) before reading the clock. That path
is not here: this machine has no GPU to check it on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from loadgen.errors import UsageError
from loadgen.knobs import parse_pbtxt
from loadgen.model_cost import input_shapes, load_onnx
from loadgen.stats import percentile_of_sorted

INPUT_SEED = 20240521
# What InferenceSession raises for a model it cannot load or run: separate classes, with no common base but Exception.
ORT_LOAD_ERRORS = (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.InvalidProtobuf,
                   ort_errors.NotImplemented, ort_errors.RuntimeException)  # fmt: skip
# (intra-op, inter-op) parameter names: our Python-backend models' (centernet), then Triton's onnxruntime backend's.
THREAD_PARAMETERS = (("intra_op_num_threads", "inter_op_num_threads"), ("intra_op_thread_count", "inter_op_thread_count"))
ORT_DEFAULTS = "ONNX Runtime defaults"
LATENCY_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "max")


@dataclass(frozen=True)
class OrtThreads:
    intra_op: int | None  # None: ONNX Runtime's default
    inter_op: int | None
    source: str  # where the figures came from


def model_dir_of(onnx_path: Path) -> Path | None:
    """The Triton model directory holding `<dir>/<version>/model.onnx`, when it has a config.pbtxt."""
    version = onnx_path.resolve().parent
    if version.name.isdigit() and (version.parent / "config.pbtxt").is_file():
        return version.parent
    return None


def threads_for_file(onnx_path: Path) -> OrtThreads:
    """The thread settings of the Triton model directory holding this file; ONNX Runtime's defaults outside one."""
    model_dir = model_dir_of(onnx_path)
    if model_dir is None:
        return OrtThreads(None, None, f"{ORT_DEFAULTS} (no Triton model directory with a config.pbtxt around {onnx_path})")
    return threads_from_model_dir(model_dir)


def threads_from_model_dir(model_dir: Path) -> OrtThreads:
    """The ONNX Runtime thread counts `<model_dir>/config.pbtxt` gives the model; ONNX Runtime's
    defaults where it gives none (0 means the default too, as for Triton's onnxruntime backend)."""
    path = Path(model_dir) / "config.pbtxt"
    if not path.is_file():
        return OrtThreads(None, None, f"{ORT_DEFAULTS} ({path} not found)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    parameters = {key: value.string_value for key, value in parse_pbtxt(text, str(path)).parameters.items()}
    for intra_key, inter_key in THREAD_PARAMETERS:
        if intra_key in parameters or inter_key in parameters:
            intra, inter = (_thread_count(parameters.get(key, ""), key, path) for key in (intra_key, inter_key))
            return OrtThreads(intra, inter, f"{path} parameters {intra_key}/{inter_key}")
    return OrtThreads(None, None, f"{ORT_DEFAULTS} ({path} sets no thread parameters)")


def _thread_count(text: str, key: str, path: Path) -> int | None:
    if text.strip() == "":
        return None
    try:
        count = int(text)
    except ValueError:
        raise UsageError(f"{path}: parameter {key} is {text!r}, not a whole number of threads") from None
    if count < 0:
        raise UsageError(f"{path}: parameter {key} is {count}: give 0 (the default) or more threads")
    return count or None


def session_options(threads: OrtThreads) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads.intra_op is not None:
        options.intra_op_num_threads = threads.intra_op
    if threads.inter_op is not None:
        options.inter_op_num_threads = threads.inter_op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting: a server's cores are shared (as model.py); spinning would also flatter the latency.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


@dataclass(frozen=True)
class DirectTiming:
    batch_size: int
    threads: OrtThreads
    warmup_ms: float
    latencies_ms: tuple[float, ...]  # one per timed iteration
    wall_s: float  # the timed iterations' wall time, first call to last return

    @property
    def iterations(self) -> int:
        return len(self.latencies_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_ms)

    @property
    def latency_ms(self) -> dict[str, float]:
        return latency_summary_ms(self.latencies_ms)

    @property
    def throughput_per_s(self) -> float:
        return self.batch_size * self.iterations / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cov_percent(self) -> float:
        return cov_percent(self.latencies_ms)

    def stable(self, cov_warn_percent: float) -> bool:
        return self.cov_percent <= cov_warn_percent


def latency_summary_ms(latencies_ms: Sequence[float]) -> dict[str, float]:
    """min, mean, median, p90, p95, p99 and max; percentiles by perf_analyzer's rank (loadgen.stats)."""
    ordered = np.sort(np.asarray(latencies_ms, dtype=float))
    at = {key: percentile_of_sorted(ordered, p) for key, p in (("min", 0), ("median", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("max", 100))}
    return {key: float(ordered.mean()) if key == "mean" else at[key] for key in LATENCY_KEYS}


def cov_percent(latencies_ms: Sequence[float]) -> float:
    """Coefficient of variation (population standard deviation over mean), in percent, as trtexec's."""
    mean = statistics.fmean(latencies_ms)
    return statistics.pstdev(latencies_ms) / mean * 100 if mean > 0 else 0.0


def random_inputs(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], seed: int = INPUT_SEED) -> dict[str, np.ndarray]:
    """Each input filled from `seed`: floats standard normal, integers 0 or 1 (safe as indices), booleans either."""
    rng = np.random.default_rng(seed)
    elem_types = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    feeds = {}
    for name, shape in shapes.items():
        dtype = helper.tensor_dtype_to_np_dtype(elem_types[name])
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            raise UsageError(f"input {name} is of type {dtype}: profile-model fills numeric and boolean inputs only")
    return feeds


def time_model(model: onnx.ModelProto | str | Path, *, batch_size: int = 1, shapes: Mapping[str, Sequence[int]] | None = None,
               threads: OrtThreads, warmup_ms: float = 200, iterations: int = 10, duration_s: float = 3.0) -> DirectTiming:
    """Warm up for `warmup_ms`, then time runs until at least `iterations` and `duration_s` (trtexec's rules)."""
    if warmup_ms < 0 or iterations < 1 or duration_s < 0:
        raise UsageError(f"warm-up {warmup_ms:g} ms, {iterations} iterations, {duration_s:g} s: give a warm-up and a duration "
                         "of 0 or more and at least 1 iteration")  # fmt: skip
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    feeds = random_inputs(model, input_shapes(model, batch_size, shapes))
    try:
        session = ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])
    except ORT_LOAD_ERRORS as exc:
        raise UsageError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from None
    try:
        latencies_ms, wall_s = _timed_runs(session.run, feeds, warmup_ms, iterations, duration_s)
    except ORT_LOAD_ERRORS as exc:  # a kernel that fails on these inputs: a model error, not loadgen's
        raise UsageError(f"ONNX Runtime cannot run the model: {str(exc).splitlines()[0]}") from None
    return DirectTiming(batch_size, threads, warmup_ms, latencies_ms, wall_s)


def _timed_runs(run, feeds: dict[str, np.ndarray], warmup_ms: float, iterations: int, duration_s: float) -> tuple[tuple[float, ...], float]:
    warmup_end = time.perf_counter() + warmup_ms / 1e3
    while time.perf_counter() < warmup_end:
        run(None, feeds)
    latencies_ms: list[float] = []
    start = time.perf_counter()
    end = start + duration_s
    now = start
    while len(latencies_ms) < iterations or now < end:
        before = time.perf_counter()
        run(None, feeds)
        now = time.perf_counter()
        latencies_ms.append((now - before) * 1e3)
    return tuple(latencies_ms), now - start
