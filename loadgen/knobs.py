"""The knobs `loadgen tune` turns on each composing model of an ensemble, and the space of values
it may give them: read from a model's configuration, narrowed or widened by `--knobs FILE.yaml`,
applied to a configuration without touching anything else in it.

A configuration is Triton's ModelConfig protobuf (tritonclient's model_config_pb2): parsed from a
config.pbtxt, or from the JSON the server answers for /v2/models/NAME/config, and written back as
either. Pure: no server, no files.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from loadgen.errors import UsageError

ModelConfig = model_config_pb2.ModelConfig

DEFAULT_MAX_INSTANCES = 4
# A few queue delays: none, about one fast stage's compute, and a longer wait that fills batches
# at low rates; more with --knobs.
DEFAULT_QUEUE_DELAYS_US = (0, 1000, 5000)


@dataclass(frozen=True, order=True)
class StageSettings:
    """What tune sets on one composing model. Without dynamic batching the queue delay and the
    preferred batch sizes mean nothing: they are 0 and () then; with it, a preferred size of the
    maximum batch size alone is what Triton fills in for none: () too (`normalized`)."""

    instances: int
    dynamic_batching: bool
    max_queue_delay_us: int
    preferred_batch_size: tuple[int, ...]
    max_batch_size: int  # 0: the model does not batch

    def normalized(self) -> StageSettings:
        if not self.dynamic_batching:
            return replace(self, max_queue_delay_us=0, preferred_batch_size=())
        if self.preferred_batch_size == (self.max_batch_size,):
            return replace(self, preferred_batch_size=())
        return self

    def describe(self) -> str:
        """Short text for tables: "2 inst, dyn q=1000us pref=[4,8] mbs=8"."""
        parts = [f"{self.instances} inst"]
        if self.dynamic_batching:
            parts.append(f"dyn q={self.max_queue_delay_us}us")
            if self.preferred_batch_size:
                parts.append(f"pref=[{','.join(map(str, self.preferred_batch_size))}]")
        elif self.max_batch_size:
            parts.append("no dyn")
        if self.max_batch_size:
            parts.append(f"mbs={self.max_batch_size}")
        return " ".join(parts)


# A candidate: every composing model's settings, in the ensemble's step order.
Candidate = tuple[tuple[str, StageSettings], ...]


def candidate_key(candidate: Candidate) -> str:
    """A stable text naming a candidate (for resuming and for tune.json)."""
    return "; ".join(f"{model}: {settings.describe()}" for model, settings in candidate)


@dataclass(frozen=True)
class KnobSpace:
    """The values tune may give one model's knobs; each tuple in the order tried."""

    instances: tuple[int, ...]
    dynamic_batching: tuple[bool, ...]
    max_queue_delay_us: tuple[int, ...]
    preferred_batch_size: tuple[tuple[int, ...], ...]
    max_batch_size: tuple[int, ...]

    def settings(self) -> list[StageSettings]:
        """Every distinct (normalized) setting of the space, in a fixed order."""
        seen: dict[StageSettings, None] = {}
        for instances in self.instances:
            for batching in self.dynamic_batching:
                for delay in self.max_queue_delay_us:
                    for preferred in self.preferred_batch_size:
                        for max_batch in self.max_batch_size:
                            if preferred and max(preferred) > max_batch:
                                continue  # Triton refuses a preferred size above the maximum
                            seen.setdefault(StageSettings(instances, batching, delay, preferred, max_batch).normalized(), None)
        return list(seen)


KNOBS = tuple(field.name for field in fields(KnobSpace))


def parse_pbtxt(text: str, where: str) -> ModelConfig:
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as exc:
        raise UsageError(f"{where} is not a model configuration Triton reads ({exc}): fix the file") from None


def from_json(data: Mapping[str, Any]) -> ModelConfig:
    """The configuration a server answers (/v2/models/NAME/config); fields newer than
    tritonclient's copy of the protobuf are left out."""
    return json_format.ParseDict(data, ModelConfig(), ignore_unknown_fields=True)


def to_json(config: ModelConfig) -> dict[str, Any]:
    """The JSON Triton's load request takes as a `config` override (proto field names)."""
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def to_pbtxt(config: ModelConfig) -> str:
    return text_format.MessageToString(config)


def ensemble_steps(config: ModelConfig) -> list[str]:
    """The composing models of an ensemble, each once, in step order."""
    return list(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))


def settings_of(config: ModelConfig) -> StageSettings:
    """What a configuration sets now. Instances: the first instance group's count (Triton's
    default of one group of one instance when there is none)."""
    groups = config.instance_group
    batching = config.HasField("dynamic_batching")
    return StageSettings(
        instances=groups[0].count if groups and groups[0].count else 1,
        dynamic_batching=batching,
        max_queue_delay_us=int(config.dynamic_batching.max_queue_delay_microseconds) if batching else 0,
        preferred_batch_size=tuple(config.dynamic_batching.preferred_batch_size) if batching else (),
        max_batch_size=config.max_batch_size,
    ).normalized()


def apply_settings(config: ModelConfig, settings: StageSettings) -> ModelConfig:
    """A copy of `config` with `settings`; everything else (inputs, parameters, other batching
    fields) kept. Turning batching off removes the dynamic_batching block."""
    changed = ModelConfig()
    changed.CopyFrom(config)
    if changed.instance_group:
        changed.instance_group[0].count = settings.instances
    else:
        changed.instance_group.add(count=settings.instances)
    changed.max_batch_size = settings.max_batch_size
    if settings.dynamic_batching:
        changed.dynamic_batching.max_queue_delay_microseconds = settings.max_queue_delay_us
        del changed.dynamic_batching.preferred_batch_size[:]
        changed.dynamic_batching.preferred_batch_size.extend(settings.preferred_batch_size)
    else:
        changed.ClearField("dynamic_batching")
    return changed


def default_space(config: ModelConfig, ensemble_max_batch_size: int, max_instances: int = DEFAULT_MAX_INSTANCES) -> KnobSpace:
    """The space tune searches for a model without --knobs: 1..max_instances instances and, for a
    model that batches, dynamic batching off and on with DEFAULT_QUEUE_DELAYS_US, no preferred
    size, and its own maximum batch size (never below the ensemble's)."""
    own = settings_of(config)
    if own.max_batch_size == 0:
        return KnobSpace(tuple(range(1, max_instances + 1)), (False,), (0,), ((),), (0,))
    delays = tuple(sorted({*DEFAULT_QUEUE_DELAYS_US, own.max_queue_delay_us}))
    preferred = tuple(dict.fromkeys(((), own.preferred_batch_size)))
    return KnobSpace(tuple(range(1, max_instances + 1)), (False, True), delays, preferred,
                     (max(own.max_batch_size, ensemble_max_batch_size),))  # fmt: skip


def _values(model: str, knob: str, given: Any) -> tuple:
    values = given if isinstance(given, list) else [given]
    if not values:
        raise UsageError(f"--knobs: {model}.{knob} is an empty list: give at least one value")
    checked = []
    for value in values:
        if knob == "dynamic_batching":
            ok = isinstance(value, bool)
        elif knob == "preferred_batch_size":
            value = value if isinstance(value, list) else [value]
            ok = all(isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in value)
            value = tuple(value)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= (1 if knob == "instances" else 0)
        if not ok:
            kinds = {"dynamic_batching": "true or false", "preferred_batch_size": "lists of positive integers",
                     "instances": "integers from 1"}  # fmt: skip
            raise UsageError(f"--knobs: {model}.{knob} has {value!r}: give {kinds.get(knob, 'integers from 0')}")
        checked.append(value)
    return tuple(dict.fromkeys(checked))


def narrow_space(
    spaces: Mapping[str, KnobSpace], knobs: Mapping[str, Any], configs: Mapping[str, ModelConfig], ensemble_max_batch_size: int
) -> dict[str, KnobSpace]:
    """The spaces with --knobs' values in place of the defaults, checked: every model named is a
    composing model, every knob one of KNOBS, batching knobs only on a model that batches, and no
    maximum batch size below the ensemble's."""
    narrowed = dict(spaces)
    for model, given in knobs.items():
        if model not in spaces:
            close = difflib.get_close_matches(str(model), list(spaces), n=1)
            hint = f"did you mean {close[0]}?" if close else f"the ensemble's models are {', '.join(spaces)}"
            raise UsageError(f"--knobs: {model!r} is not a composing model of the ensemble: {hint}")
        if not isinstance(given, Mapping):
            raise UsageError(f"--knobs: {model} must map knob names to values (e.g. instances: [1, 2])")
        values: dict[str, tuple] = {}
        for knob, value in given.items():
            if knob not in KNOBS:
                close = difflib.get_close_matches(str(knob), KNOBS, n=1)
                hint = f"did you mean {close[0]}?" if close else f"the knobs are {', '.join(KNOBS)}"
                raise UsageError(f"--knobs: {model}.{knob} is not a knob: {hint}")
            values[knob] = _values(model, knob, value)
        batches = configs[model].max_batch_size > 0
        if not batches and any(knob != "instances" and values[knob] not in ((False,), (0,), ((),)) for knob in values):
            raise UsageError(f"--knobs: {model} does not batch (max_batch_size 0): only its instances can be tuned")
        too_small = [size for size in values.get("max_batch_size", ()) if batches and size < ensemble_max_batch_size]
        if too_small:
            raise UsageError(f"--knobs: {model}.max_batch_size {too_small[0]} is below the ensemble's {ensemble_max_batch_size}: "
                             "a composing model must take the ensemble's batches")  # fmt: skip
        narrowed[model] = replace(spaces[model], **values)
    return narrowed


def apply_candidate(configs: Mapping[str, ModelConfig], candidate: Candidate) -> dict[str, ModelConfig]:
    return {model: apply_settings(configs[model], settings) for model, settings in candidate}


def default_candidate(configs: Mapping[str, ModelConfig], models: Iterable[str]) -> Candidate:
    """The repository's own configuration, as a candidate."""
    return tuple((model, settings_of(configs[model])) for model in models)
