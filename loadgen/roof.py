"""The machine's roof: peak compute and memory bandwidth of the device a server runs on, and where each came from.

A CPU on this host is measured (a large fp32 GEMM in ONNX Runtime, a streaming copy in numpy) and the
figures are cached per machine; an NVIDIA GPU's figures come from its datasheet, chosen by the name NVML
gives it; --peak-tflops and --peak-bandwidth-gbs override either figure. The roofline arithmetic is here too.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

from loadgen.errors import RoofUnknown, UsageError
from loadgen.machine_cache import (
    cpu_model_name,
    default_cache_dir,
    machine_key,
    read_entries,
    write_entries,
)
from loadgen.metrics import GPU_MEMORY_TOTAL, parse_metrics

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")

# 1024² fp32 takes ~25 ms a run on one core of the 2-core EPYC VM we test on (~90 GFLOP/s); ten runs are robust
# to a busy moment and, with the copy, take ~1 s. Larger GEMMs spill out of the caches and run slower (2048²:
# ~82 GFLOP/s), below what a model's convolutions reach here: the roof is the fastest the kernel gets.
GEMM_SIZE = 1024
GEMM_RUNS = 10
# Well above any last-level cache (32 MiB here), so the copy streams from and to DRAM.
COPY_BYTES = 256 << 20
COPY_RUNS = 5
CACHE_FILE = "cpu-roof.json"


# --- The roofline arithmetic -------------------------------------------------------------------------


def intensity(flops: float, bytes_moved: float) -> float:
    """Arithmetic intensity, FLOPs per byte; 0.0 when nothing moves."""
    return flops / bytes_moved if bytes_moved else 0.0


def ridge_point(peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """The arithmetic intensity (FLOPs/byte) where the bandwidth roof meets the compute roof."""
    return peak_flops_per_s / bandwidth_bytes_per_s


def attainable(peak_flops_per_s: float, bandwidth_bytes_per_s: float, intensity: float) -> float:
    """The roof at `intensity` FLOPs/byte: the bandwidth limit below the ridge point, the peak above it."""
    return min(peak_flops_per_s, intensity * bandwidth_bytes_per_s)


def share_of_roof(achieved_flops_per_s: float, attainable_flops_per_s: float) -> float:
    """Achieved FLOP/s as a fraction of the roof at the same intensity (1.0 = on the roof)."""
    return achieved_flops_per_s / attainable_flops_per_s if attainable_flops_per_s > 0 else 0.0


@dataclass(frozen=True)
class Roof:
    """The two roofs of a device. For int8, peak_flops_per_s is integer operations per second."""

    device: str  # "CPU: <model name>, N threads" or "GPU: NVIDIA A100-SXM4-80GB (fp32)"
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    flops_source: str
    bandwidth_source: str

    @property
    def ridge_intensity(self) -> float:
        return ridge_point(self.peak_flops_per_s, self.bandwidth_bytes_per_s)

    def attainable_flops_per_s(self, intensity: float) -> float:
        return attainable(self.peak_flops_per_s, self.bandwidth_bytes_per_s, intensity)

    def share(self, achieved_flops_per_s: float, intensity: float) -> float:
        """Achieved FLOP/s at `intensity` as a fraction of the roof there."""
        return share_of_roof(achieved_flops_per_s, self.attainable_flops_per_s(intensity))


# --- NVIDIA GPUs: datasheet peaks ---------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    """One datasheet row. Peaks are dense (without 2:4 structured sparsity, which the datasheets since
    Ampere print first: those figures are halved here), in TFLOPS (TOPS for int8); None where the
    datasheet gives no figure (no such tensor-core precision)."""

    name: str
    names: tuple[frozenset[str], ...]  # token sets an NVML name must contain, after _tokens()
    tflops: Mapping[str, float | None]
    bandwidth_gbs: float
    datasheet: str


def _peaks(fp32: float, tf32: float | None, fp16: float | None, bf16: float | None, int8: float | None) -> dict[str, float | None]:
    return {"fp32": fp32, "tf32": tf32, "fp16": fp16, "bf16": bf16, "int8": int8}


def _names(*token_sets: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(tokens.split()) for tokens in token_sets)


GPU_TABLE: tuple[GpuSpec, ...] = (
    # NVIDIA Tesla V100 datasheet (Jan 2020): SXM2 15.7 FP32, 125 tensor (FP16); PCIe 14 / 112; 900 GB/s. No TF32/BF16; INT8 not given.
    GpuSpec("V100 SXM2", _names("V100 SXM2"), _peaks(15.7, None, 125, None, None), 900, "NVIDIA Tesla V100 datasheet"),
    GpuSpec("V100 PCIe", _names("V100 PCIE"), _peaks(14, None, 112, None, None), 900, "NVIDIA Tesla V100 datasheet"),
    # NVIDIA V100S datasheet: 16.4 FP32, 130 tensor, 1,134 GB/s.
    GpuSpec("V100S PCIe", _names("V100S"), _peaks(16.4, None, 130, None, None), 1134, "NVIDIA V100S datasheet"),
    # NVIDIA T4 datasheet: 8.1 FP32, 65 FP16 mixed precision, 130 INT8 TOPS, "320+ GB/s" (GDDR6).
    GpuSpec("T4", _names("T4"), _peaks(8.1, None, 65, None, 130), 320, "NVIDIA T4 datasheet"),
    # NVIDIA A100 datasheet (2021): 19.5 FP32, TF32 156, BF16/FP16 312, INT8 624 (dense);
    # 40GB 1,555 GB/s; 80GB PCIe 1,935 GB/s; 80GB SXM 2,039 GB/s.
    GpuSpec("A100 40GB SXM", _names("A100 SXM4 40GB"), _peaks(19.5, 156, 312, 312, 624), 1555, "NVIDIA A100 datasheet"),
    GpuSpec("A100 80GB SXM", _names("A100 SXM4 80GB"), _peaks(19.5, 156, 312, 312, 624), 2039, "NVIDIA A100 datasheet"),
    GpuSpec("A100 40GB PCIe", _names("A100 PCIE 40GB"), _peaks(19.5, 156, 312, 312, 624), 1555, "NVIDIA A100 datasheet"),
    GpuSpec("A100 80GB PCIe", _names("A100 PCIE 80GB"), _peaks(19.5, 156, 312, 312, 624), 1935, "NVIDIA A100 datasheet"),
    # NVIDIA A10 datasheet: 31.2 FP32, TF32 62.5, BF16/FP16 125, INT8 250 (dense), 600 GB/s. (AWS's A10G is another part.)
    GpuSpec("A10", _names("A10"), _peaks(31.2, 62.5, 125, 125, 250), 600, "NVIDIA A10 datasheet"),
    # NVIDIA A30 datasheet: 10.3 FP32, TF32 82, BF16/FP16 165, INT8 330 (dense), 933 GB/s.
    GpuSpec("A30", _names("A30"), _peaks(10.3, 82, 165, 165, 330), 933, "NVIDIA A30 datasheet"),
    # NVIDIA A40 datasheet: 37.4 FP32, TF32 74.8, BF16/FP16 149.7, INT8 299.3 (dense), 696 GB/s.
    GpuSpec("A40", _names("A40"), _peaks(37.4, 74.8, 149.7, 149.7, 299.3), 696, "NVIDIA A40 datasheet"),
    # NVIDIA L4 datasheet (figures printed with sparsity: TF32 120, FP16/BF16 242, INT8 485): 30.3 FP32, 300 GB/s.
    GpuSpec("L4", _names("L4"), _peaks(30.3, 60, 121, 121, 242.5), 300, "NVIDIA L4 datasheet"),
    # NVIDIA L40 datasheet: 90.5 FP32, TF32 90.5, BF16/FP16 181.05, INT8 362 (dense), 864 GB/s.
    GpuSpec("L40", _names("L40"), _peaks(90.5, 90.5, 181.05, 181.05, 362), 864, "NVIDIA L40 datasheet"),
    # NVIDIA L40S datasheet: 91.6 FP32, TF32 183, BF16/FP16 362.05, INT8 733 (dense; FP8 733), 864 GB/s.
    GpuSpec("L40S", _names("L40S"), _peaks(91.6, 183, 362.05, 362.05, 733), 864, "NVIDIA L40S datasheet"),
    # NVIDIA H100 datasheet (printed with sparsity; halved here): SXM 67 FP32, TF32 989, BF16/FP16 1,979, INT8 3,958, 3.35 TB/s;
    # PCIe 51, 756, 1,513, 3,026, 2 TB/s; NVL 60, 835, 1,671, 3,341, 3.9 TB/s.
    GpuSpec("H100 SXM", _names("H100 HBM3", "H100 SXM5"), _peaks(67, 494.5, 989.5, 989.5, 1979), 3350, "NVIDIA H100 datasheet"),
    GpuSpec("H100 PCIe", _names("H100 PCIE"), _peaks(51, 378, 756.5, 756.5, 1513), 2000, "NVIDIA H100 datasheet"),
    GpuSpec("H100 NVL", _names("H100 NVL"), _peaks(60, 417.5, 835.5, 835.5, 1670.5), 3900, "NVIDIA H100 datasheet"),
    # NVIDIA H200 datasheet (printed with sparsity; halved here): SXM as H100 SXM, 4.8 TB/s; NVL as H100 NVL, 4.8 TB/s.
    GpuSpec("H200 SXM", _names("H200"), _peaks(67, 494.5, 989.5, 989.5, 1979), 4800, "NVIDIA H200 datasheet"),
    GpuSpec("H200 NVL", _names("H200 NVL"), _peaks(60, 417.5, 835.5, 835.5, 1670.5), 4800, "NVIDIA H200 datasheet"),
    # NVIDIA HGX B200 specifications, per GPU (the 8-GPU figures / 8, sparsity halved): 75 FP32, TF32 1,125,
    # BF16/FP16 2,250, INT8 4,500, 8 TB/s.
    GpuSpec("B200", _names("B200"), _peaks(75, 1125, 2250, 2250, 4500), 8000, "NVIDIA HGX B200 specifications"),
    # NVIDIA RTX A6000 datasheet: 38.7 FP32, 309.7 tensor TFLOPS with sparsity, 768 GB/s; dense TF32 77.4,
    # FP16/BF16 154.8, INT8 309.7 from the NVIDIA Ampere GA102 whitepaper.
    GpuSpec("RTX A6000", _names("RTX A6000"), _peaks(38.7, 77.4, 154.8, 154.8, 309.7), 768, "NVIDIA RTX A6000 datasheet, GA102 whitepaper"),
    # NVIDIA RTX 6000 Ada datasheet: 91.1 FP32, 1,457 tensor TFLOPS (FP8 with sparsity), 960 GB/s; dense
    # TF32 182.1, FP16/BF16 364.2, INT8 728.5 from the NVIDIA Ada Lovelace whitepaper.
    GpuSpec("RTX 6000 Ada", _names("RTX 6000 ADA"), _peaks(91.1, 182.1, 364.2, 364.2, 728.5), 960, "NVIDIA RTX 6000 Ada datasheet, Ada whitepaper"),
)


def _tokens(name: str) -> frozenset[str]:
    """An NVML name as upper-case tokens: "NVIDIA A100-SXM4-80GB" -> {NVIDIA, A100, SXM4, 80GB}."""
    return frozenset(name.upper().replace("-", " ").replace("_", " ").split())


def _override_hint() -> str:
    return "pass --peak-tflops and --peak-bandwidth-gbs"


def gpu_spec(name: str) -> GpuSpec:
    """The datasheet row of a GPU by its NVML name, the most specific match first ("H200 NVL" before "H200")."""
    tokens = _tokens(name)
    matches = [(len(pattern), spec) for spec in GPU_TABLE for pattern in spec.names if pattern <= tokens]
    if not matches:
        raise RoofUnknown(f"GPU {name!r} is not in loadgen's datasheet table: {_override_hint()}")
    return max(matches, key=lambda match: match[0])[1]


def gpu_roof(name: str, precision: str = "fp32") -> Roof:
    """The datasheet roof of a GPU by its NVML name, at `precision`."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    spec = gpu_spec(name)
    tflops = spec.tflops[precision]
    if tflops is None:
        raise RoofUnknown(f"the {spec.name} datasheet gives no {precision} peak: {_override_hint()}")
    unit = "TOPS" if precision == "int8" else "TFLOPS"
    return Roof(
        device=f"GPU: {name} ({precision})",
        peak_flops_per_s=tflops * 1e12,
        bandwidth_bytes_per_s=spec.bandwidth_gbs * 1e9,
        flops_source=f"datasheet: {spec.datasheet}, {spec.name} {precision} {tflops:g} {unit} dense (without sparsity)",
        bandwidth_source=f"datasheet: {spec.datasheet}, {spec.name} memory bandwidth {spec.bandwidth_gbs:g} GB/s",
    )


# --- Which GPUs a server has ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerGpu:
    uuid: str
    name: str | None  # None: not a GPU of this host (a remote server's): its metrics page carries only the uuid
    memory_total_bytes: float | None


def nvml_devices() -> list[dict]:
    """This host's GPUs from NVML as {index, name, uuid, memory_total_bytes}; [] without pynvml
    (nvidia-ml-py, not a dependency) or without a GPU driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name, uuid = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetUUID(handle)
            devices.append({
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else name,  # bytes before nvidia-ml-py 11.5
                "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                "memory_total_bytes": pynvml.nvmlDeviceGetMemoryInfo(handle).total,
            })  # fmt: skip
        return devices
    finally:
        pynvml.nvmlShutdown()


def server_gpus(metrics_text: str, devices: Sequence[Mapping]) -> tuple[ServerGpu, ...]:
    """The GPUs on a Triton /metrics page, named from NVML-like `devices` by uuid.

    Triton labels its nv_gpu_* series with gpu_uuid only (core/src/metrics.cc: the DCGM device name goes
    to its log, not to a label), so a remote server's GPUs cannot be named from its metrics page.
    """
    names = {device["uuid"]: device["name"] for device in devices}
    memory: dict[str, float] = {}
    uuids: set[str] = set()
    # Every series with a gpu_uuid: a model's instances on a GPU label its counters so even where DCGM
    # (the nv_gpu_* families) is unavailable.
    for (metric, labels), value in parse_metrics(metrics_text).items():
        uuid = dict(labels).get("gpu_uuid")
        if uuid is not None:
            uuids.add(uuid)
            if metric == GPU_MEMORY_TOTAL:
                memory[uuid] = value
    return tuple(ServerGpu(uuid, names.get(uuid), memory.get(uuid)) for uuid in sorted(uuids))


def server_gpu_name(gpus: Sequence[ServerGpu]) -> str | None:
    """The one kind of GPU a server has; None for a CPU-only server."""
    if not gpus:
        return None
    unnamed = [gpu.uuid for gpu in gpus if gpu.name is None]
    if unnamed:
        raise RoofUnknown(
            f"the server's GPU {unnamed[0]} is not on this host, and Triton's metrics name GPUs by uuid only: {_override_hint()}"
        )
    kinds = sorted({gpu.name for gpu in gpus if gpu.name is not None})
    if len(kinds) > 1:
        raise RoofUnknown(f"the server has GPUs of different kinds ({', '.join(kinds)}): {_override_hint()}")
    return kinds[0]


# --- The CPU of this host, measured ----------------------------------------------------------------------


def _matmul_model(size: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper  # see measure_gemm_flops_per_s

    # B is a weight (an initializer), as a served model's are: ONNX Runtime prepacks it, which a second
    # input would not allow, and a roof below what the model's own layers reach would be no roof.
    b = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [size, size])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [size, size])
    weights = numpy_helper.from_array(b, "B")
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"])], "roof_gemm", [a], [y], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # loadable by every onnxruntime >= 1.10, as centernet's
    return model.SerializeToString()


def measure_gemm_flops_per_s(threads: int, size: int = GEMM_SIZE, runs: int = GEMM_RUNS) -> float:
    """Best FLOP/s of a size x size fp32 MatMul in ONNX Runtime over `runs` timed runs after one warm-up.

    The best run, not the mean: a peak is what the machine can reach, and a shared VM only ever slows a run down.
    """
    # Imported here: ONNX Runtime takes ~0.2 s to import, and every report reads a Roof but few measure one.
    import onnxruntime as ort

    from loadgen.direct_timing import OrtThreads, session_options

    # The session options the served models run with (as centernet's), so the GEMM runs as theirs do.
    options = session_options(OrtThreads(threads, 1, "roof benchmark"))
    session = ort.InferenceSession(_matmul_model(size), options, providers=["CPUExecutionProvider"])
    feeds = {"A": np.random.default_rng(1).random((size, size), dtype=np.float32)}
    session.run(None, feeds)
    best_s = min(_timed(lambda: session.run(None, feeds)) for _ in range(runs))
    return 2 * size**3 / best_s


def measure_copy_bytes_per_s(threads: int, nbytes: int = COPY_BYTES, runs: int = COPY_RUNS) -> float:
    """Best bytes/s (read + written) of numpy copies of `nbytes`, split over `threads` threads, over `runs` runs.

    numpy releases the GIL in copyto, so the threads copy their slices at once, as a model's intra-op threads would.
    """
    source = np.ones(nbytes // 8, dtype=np.float64)
    target = np.zeros_like(source)  # written once by the warm-up, so page faults stay out of the timed runs
    slices = [slice(start, stop) for start, stop in _bounds(len(source), threads)]

    def copy_all(pool: ThreadPoolExecutor) -> None:
        for done in [pool.submit(np.copyto, target[part], source[part]) for part in slices]:
            done.result()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        copy_all(pool)
        best_s = min(_timed(lambda: copy_all(pool)) for _ in range(runs))
    return 2 * source.nbytes / best_s


def _bounds(length: int, parts: int) -> list[tuple[int, int]]:
    edges = [length * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _cache_key(threads: int, gemm_size: int, gemm_runs: int, copy_bytes: int, copy_runs: int) -> str:
    # Everything that changes the figures: the machine, the threads, the libraries, the benchmark itself.
    return (f"{machine_key()}|{threads} threads|numpy {np.__version__}|gemm {gemm_size} x{gemm_runs}"
            f"|copy {copy_bytes} x{copy_runs}")  # fmt: skip


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    figures = (entry.get("peak_flops_per_s"), entry.get("bandwidth_bytes_per_s"))
    return all(isinstance(v, (int, float)) and v > 0 for v in figures) and isinstance(entry.get("measured_at"), str)


def cpu_roof(
    threads: int,
    *,
    cache_dir: Path | None = None,
    gemm_size: int = GEMM_SIZE,
    gemm_runs: int = GEMM_RUNS,
    copy_bytes: int = COPY_BYTES,
    copy_runs: int = COPY_RUNS,
) -> Roof:
    """This host's CPU roof for `threads` threads: from the cache when measured before, else measured and cached."""
    if threads < 1:
        raise UsageError(f"threads must be at least 1, not {threads}")
    path = (cache_dir if cache_dir is not None else default_cache_dir()) / CACHE_FILE
    key = _cache_key(threads, gemm_size, gemm_runs, copy_bytes, copy_runs)
    entries = read_entries(path)
    entry = entries.get(key)
    if _valid_entry(entry):
        cached = f"cached {path}"
    else:
        start = time.perf_counter()
        entry = {
            "peak_flops_per_s": measure_gemm_flops_per_s(threads, gemm_size, gemm_runs),
            "bandwidth_bytes_per_s": measure_copy_bytes_per_s(threads, copy_bytes, copy_runs),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        entry["took_s"] = round(time.perf_counter() - start, 3)
        entries[key] = entry
        try:
            write_entries(path, entries)
            cached = f"cached {path}"
        except OSError as error:  # a read-only home: the figures stand, measured again next time
            cached = f"not cached: {error.strerror or error}"
    plural = "thread" if threads == 1 else "threads"
    took = f" in {entry['took_s']:g} s" if isinstance(entry.get("took_s"), (int, float)) else ""
    when = f"{cached}, measured {entry['measured_at']}{took}"
    return Roof(
        device=f"CPU: {cpu_model_name()}, {threads} {plural}",
        peak_flops_per_s=float(entry["peak_flops_per_s"]),
        bandwidth_bytes_per_s=float(entry["bandwidth_bytes_per_s"]),
        flops_source=(
            f"measured: ONNX Runtime {version('onnxruntime')} MatMul {gemm_size}x{gemm_size} fp32, {threads} {plural}, "
            f"best of {gemm_runs} runs after a warm-up ({when})"
        ),
        bandwidth_source=(
            f"measured: numpy copy of {copy_bytes / (1 << 20):g} MiB, {threads} {plural}, bytes read + written, "
            f"best of {copy_runs} runs ({when})"
        ),
    )


# --- Putting it together -------------------------------------------------------------------------------


def resolve_roof(
    *,
    threads: int,
    local: bool,
    peak_tflops: float | None = None,
    peak_bandwidth_gbs: float | None = None,
    gpu_name: str | None = None,
    precision: str = "fp32",
    cache_dir: Path | None = None,
) -> Roof:
    """The roof of the server's device. Each override wins over its figure; a GPU name picks its datasheet
    row; else this host's CPU is measured (cached). A remote CPU server cannot be measured from here."""
    if threads < 1:
        raise UsageError(f"threads must be at least 1, not {threads}")
    for flag, value in (("--peak-tflops", peak_tflops), ("--peak-bandwidth-gbs", peak_bandwidth_gbs)):
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be a positive number, not {value}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    plural = "thread" if threads == 1 else "threads"
    both = peak_tflops is not None and peak_bandwidth_gbs is not None
    if gpu_name is not None:
        device = f"GPU: {gpu_name} ({precision})"
        base = None if both else gpu_roof(gpu_name, precision)
    elif not local:
        if not both:
            raise RoofUnknown(f"the peak of a remote CPU server cannot be measured from this host: {_override_hint()}")
        device, base = f"CPU: remote server, {threads} {plural}", None
    else:
        if precision != "fp32" and peak_tflops is None:
            raise RoofUnknown(f"the CPU's peak is measured for fp32 only, not {precision}: pass --peak-tflops")
        base = None if both else cpu_roof(threads, cache_dir=cache_dir)
        device = base.device if base is not None else f"CPU: {cpu_model_name()}, {threads} {plural}"
    return Roof(
        device=device,
        peak_flops_per_s=peak_tflops * 1e12 if peak_tflops is not None else base.peak_flops_per_s,
        bandwidth_bytes_per_s=peak_bandwidth_gbs * 1e9 if peak_bandwidth_gbs is not None else base.bandwidth_bytes_per_s,
        flops_source="--peak-tflops" if peak_tflops is not None else base.flops_source,
        bandwidth_source="--peak-bandwidth-gbs" if peak_bandwidth_gbs is not None else base.bandwidth_source,
    )
