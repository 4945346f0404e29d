"""Triton's Prometheus metrics: a /metrics page parsed, and one level's figures from its scrapes."""

from __future__ import annotations

import weakref
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from loadgen.server_stats import ServerFigures

GPU_UTILIZATION = "nv_gpu_utilization"
GPU_POWER = "nv_gpu_power_usage"
GPU_MEMORY_USED = "nv_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "nv_gpu_memory_total_bytes"
GPU_ENERGY = "nv_energy_consumption"
CPU_UTILIZATION = "nv_cpu_utilization"
CPU_MEMORY_USED = "nv_cpu_memory_used_bytes"
CPU_MEMORY_TOTAL = "nv_cpu_memory_total_bytes"
PENDING = "nv_inference_pending_request_count"
SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"

GPU_METRICS = (GPU_UTILIZATION, GPU_POWER, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_ENERGY)
SERVER_METRICS = (CPU_UTILIZATION, CPU_MEMORY_USED, CPU_MEMORY_TOTAL)
MODEL_METRICS = (PENDING, SUCCESS, FAILURE)

# A series: the metric's name and its labels, sorted so that equal series compare equal.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class _Layout:
    """The series of a scrape, in order, shared by every scrape that has the same ones."""

    __slots__ = ("keys", "index", "__weakref__")

    def __init__(self, keys: tuple[SeriesKey, ...]) -> None:
        self.keys = keys
        self.index = {key: i for i, key in enumerate(keys)}


# Live layouts by their keys. A run's pages nearly always have the same series, so its scrapes
# share one or a few layouts; one is dropped with the last scrape that uses it.
_layouts: weakref.WeakValueDictionary[tuple[SeriesKey, ...], _Layout] = weakref.WeakValueDictionary()


def _layout(keys: tuple[SeriesKey, ...]) -> _Layout:
    layout = _layouts.get(keys)
    if layout is None:
        layout = _layouts[keys] = _Layout(keys)
    return layout


class ScrapeValues(Mapping[SeriesKey, float]):
    """A scrape's values as a read-only mapping from series to value."""

    __slots__ = ("_layout", "_values")

    def __init__(self, layout: _Layout, values: array) -> None:
        self._layout = layout
        self._values = values

    def __getitem__(self, key: SeriesKey) -> float:
        return self._values[self._layout.index[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._layout.index

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self._layout.keys)

    def __len__(self) -> int:
        return len(self._layout.keys)

    def items(self):  # type: ignore[override]  # the pairs, without a lookup per key
        return zip(self._layout.keys, self._values)


class Scrape:
    """The kept series of one /metrics page, read at `t_ns` (monotonic clock); `values` maps series to value.

    A run keeps every scrape (one per --metrics-interval and one at each window boundary), so each is stored
    compactly: the series keys are shared with the other scrapes that have the same series, and
    the values are one array of doubles. A scrape of the centernet ensemble's page (27 series)
    takes about 0.4 KB this way, against about 15 KB as a dict of fresh key tuples and floats.
    """

    __slots__ = ("t_ns", "_layout", "_values")

    def __init__(self, t_ns: int, values: Mapping[SeriesKey, float]) -> None:
        self.t_ns = t_ns
        self._layout = _layout(tuple(values))
        self._values = array("d", values.values())

    @property
    def values(self) -> ScrapeValues:
        return ScrapeValues(self._layout, self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scrape):
            return NotImplemented
        return self.t_ns == other.t_ns and dict(self.values.items()) == dict(other.values.items())

    __hash__ = None  # type: ignore[assignment]  # like the dict it stands for

    def __repr__(self) -> str:
        return f"Scrape(t_ns={self.t_ns}, values={dict(self.values.items())!r})"


def parse_metrics(text: str, models: Iterable[str] | None = None) -> dict[SeriesKey, float]:
    """The series loadgen reports on, from Prometheus text. With `models`, per-model series of other models are dropped.

    Only these families are kept, so a long run's scrapes stay small whatever else the server exposes.
    """
    wanted_models = set(models) if models is not None else None
    values: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in GPU_METRICS + SERVER_METRICS + MODEL_METRICS:
            continue
        for sample in family.samples:
            if family.name in MODEL_METRICS and wanted_models is not None and sample.labels.get("model") not in wanted_models:
                continue
            values[(family.name, tuple(sorted(sample.labels.items())))] = sample.value
    if values.get((CPU_MEMORY_USED, ())) == 0:  # Triton publishes zeros until its first poll of the host
        for name in SERVER_METRICS:
            values.pop((name, ()), None)
    return values


def series_name(key: SeriesKey) -> str:
    """The series as Prometheus writes it: name{label="value",...}."""
    name, labels = key
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


@dataclass(frozen=True)
class GpuFigures:
    uuid: str
    avg_utilization: float | None
    avg_power_w: float | None
    max_memory_used_bytes: float | None
    total_memory_bytes: float | None
    energy_j: float | None  # nv_energy_consumption's change over the level


@dataclass(frozen=True)
class ModelMetrics:
    """A model's counters over the level, beside the statistics API's count for the same model."""

    name: str
    version: str
    success: int
    failure: dict[str, int]
    max_pending: int
    statistics_success: int
    tolerance: int

    @property
    def mismatch(self) -> bool:
        return abs(self.success - self.statistics_success) > self.tolerance


@dataclass(frozen=True)
class MetricsFigures:
    """One level's server metrics. `gpus` is empty when the server exposes no GPU metrics."""

    scrape_count: int
    gpus: tuple[GpuFigures, ...]
    energy_per_inference_j: float | None
    avg_cpu_utilization: float | None
    max_cpu_memory_used_bytes: float | None
    cpu_memory_total_bytes: float | None
    models: tuple[ModelMetrics, ...]


def _readings(scrapes: Sequence[Scrape], name: str, **labels: str) -> list[float]:
    """The value of one series in each scrape that has it."""
    key = (name, tuple(sorted(labels.items())))
    return [s.values[key] for s in scrapes if key in s.values]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _change(values: list[float]) -> float | None:
    return values[-1] - values[0] if len(values) >= 2 else None


def gpu_uuids(scrapes: Iterable[Scrape]) -> list[str]:
    return sorted({dict(labels)["gpu_uuid"] for s in scrapes for (name, labels) in s.values if name in GPU_METRICS})


def _model_sums(scrape: Scrape, name: str) -> dict[tuple[str, str, str], float]:
    """A per-model metric summed over its other labels (a model on two GPUs has a series per GPU), by (model, version, reason)."""
    sums: dict[tuple[str, str, str], float] = defaultdict(float)
    for (metric, labels), value in scrape.values.items():
        if metric == name:
            label = dict(labels)
            sums[(label.get("model", ""), label.get("version", ""), label.get("reason", ""))] += value
    return sums


def _model_metrics(scrapes: Sequence[Scrape], server: ServerFigures, tolerance: int) -> tuple[ModelMetrics, ...]:
    first, last = scrapes[0], scrapes[-1]
    success_before, success_after = _model_sums(first, SUCCESS), _model_sums(last, SUCCESS)
    failure_before, failure_after = _model_sums(first, FAILURE), _model_sums(last, FAILURE)
    pending = [_model_sums(s, PENDING) for s in scrapes]
    models = []
    for figures in (server, *server.walk()):
        model = (figures.name, figures.version)
        key = (*model, "")
        failures = {
            reason: int(value - failure_before.get((name, version, reason), 0.0))
            for (name, version, reason), value in failure_after.items()
            if (name, version) == model
        }
        models.append(
            ModelMetrics(
                name=figures.name,
                version=figures.version,
                success=int(success_after.get(key, 0.0) - success_before.get(key, 0.0)),
                failure=dict(sorted(failures.items())),
                max_pending=int(max((p.get(key, 0.0) for p in pending), default=0.0)),
                statistics_success=figures.success_count,
                tolerance=tolerance,
            )
        )
    return tuple(models)


def level_metrics(scrapes: Sequence[Scrape], server: ServerFigures, tolerance: int) -> MetricsFigures | None:
    """A level's figures from the scrapes taken during it, in time order; None if there are none.

    The first and last scrapes are taken at the level's outer window boundaries, so counter
    changes cover exactly the reported windows; gauges are averaged (or maxed) over all of them.
    `tolerance` is how far the success counters may differ from the statistics API's, as the
    two are read at slightly different moments.
    """
    if not scrapes:
        return None
    gpus = []
    for uuid in gpu_uuids(scrapes):
        memory_used = _readings(scrapes, GPU_MEMORY_USED, gpu_uuid=uuid)
        memory_total = _readings(scrapes, GPU_MEMORY_TOTAL, gpu_uuid=uuid)
        gpus.append(
            GpuFigures(
                uuid=uuid,
                avg_utilization=_mean(_readings(scrapes, GPU_UTILIZATION, gpu_uuid=uuid)),
                avg_power_w=_mean(_readings(scrapes, GPU_POWER, gpu_uuid=uuid)),
                max_memory_used_bytes=max(memory_used) if memory_used else None,
                total_memory_bytes=memory_total[-1] if memory_total else None,
                energy_j=_change(_readings(scrapes, GPU_ENERGY, gpu_uuid=uuid)),
            )
        )
    energies = [g.energy_j for g in gpus]
    energy_per_inference_j = (
        sum(energies) / server.inference_count  # type: ignore[arg-type]
        if gpus and None not in energies and server.inference_count > 0
        else None
    )
    cpu_memory_used = _readings(scrapes, CPU_MEMORY_USED)
    cpu_memory_total = _readings(scrapes, CPU_MEMORY_TOTAL)
    return MetricsFigures(
        scrape_count=len(scrapes),
        gpus=tuple(gpus),
        energy_per_inference_j=energy_per_inference_j,
        avg_cpu_utilization=_mean(_readings(scrapes, CPU_UTILIZATION)),
        max_cpu_memory_used_bytes=max(cpu_memory_used) if cpu_memory_used else None,
        cpu_memory_total_bytes=cpu_memory_total[-1] if cpu_memory_total else None,
        models=_model_metrics(scrapes, server, tolerance),
    )
