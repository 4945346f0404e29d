"""Loading an ensemble's composing models with given configurations, through Triton's model
repository API (explicit model control), and checking that they came up as asked.

Triton 2.51 (the bundled server), as seen here:
- A load request is answered once the model is loaded or has failed. A `config` override replaces
  the whole config.pbtxt (a partial one loses the rest) and leaves the files untouched.
- Loading a composing model reloads the ensembles that use it. When the new configuration does
  not fit an ensemble (a max_batch_size below the ensemble's), the composing model's load is
  still answered 200 and the ensemble is unloaded (state UNAVAILABLE, reason "unloaded"); loading
  the ensemble then is refused with the reason (400). So the ensemble is loaded after its
  composing models: a candidate that does not fit is refused in Triton's words.
- Loading the ensemble again without an override keeps the composing models' overrides while
  their files are unchanged; after a file in a composing model's folder changed (its config.pbtxt
  or model.py touched), the ensemble's load reloads that model from its files and the override is
  gone. A load without an override of a model whose files did not change is a no-op. Hence the
  configurations are read back after the ensemble's load.
- A configuration Triton rejects before loading (a preferred batch size above the maximum) is
  answered 500 "failed to load 'M', failed to poll from model repository", the reason only in the
  server's log; a backend that fails to initialize answers 400 with the backend's message.
- Triton fills in what a configuration leaves out: dynamic batching without a preferred batch
  size reads back with [max_batch_size] (StageSettings.normalized takes the two as one).
- A server not in explicit model control refuses every load with 503 / gRPC UNAVAILABLE
  ("explicit model load / unload is not allowed if polling is enabled").
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from loadgen.errors import ModelLoadError, ServerError, UsageError
from loadgen.knobs import ModelConfig, StageSettings, ensemble_steps, from_json, settings_of, to_json
from loadgen.transport.base import Transport

# How often the repository index is asked while a model is not READY yet.
_POLL_INTERVAL_S = 0.1
_LOADING_STATES = ("LOADING", "UNLOADING", "UNKNOWN")


def _settings_difference(wanted: StageSettings, loaded: StageSettings) -> str:
    """What differs, as "instances 1 (wanted 2), ..."; "" when nothing does (Triton's fill-ins aside)."""
    wanted, loaded = wanted.normalized(), loaded.normalized()
    return ", ".join(
        f"{field.name} {getattr(loaded, field.name)!r} (wanted {getattr(wanted, field.name)!r})"
        for field in dataclasses.fields(StageSettings)
        if getattr(loaded, field.name) != getattr(wanted, field.name)
    )


def _remaining_s(deadline: float) -> float:
    return max(deadline - asyncio.get_running_loop().time(), 0.0)


async def _wait_ready(transport: Transport, models: list[str], deadline: float, timeout_s: float) -> None:
    """Until every one of `models` has a READY version; ModelLoadError for one that became
    UNAVAILABLE, ServerError when one is still loading at `deadline`."""
    while True:
        states: dict[str, list[dict[str, str]]] = {model: [] for model in models}
        for entry in await transport.repository_index():
            if entry["name"] in states:
                states[entry["name"]].append(entry)
        waiting = []
        for model, entries in states.items():
            if any(entry["state"] == "READY" for entry in entries):
                continue
            failed = [entry for entry in entries if entry["state"] not in _LOADING_STATES]
            if failed:
                reason = failed[0]["reason"] or "no reason given"
                raise ModelLoadError(f"{model} is {failed[0]['state']} after loading: {reason}", model, reason)
            waiting.append(model)
        if not waiting:
            return
        if _remaining_s(deadline) == 0:
            raise ServerError(f"{', '.join(waiting)} not READY within {timeout_s:g} s of starting to load")
        await asyncio.sleep(min(_POLL_INTERVAL_S, _remaining_s(deadline)))


async def load_configs(transport: Transport, ensemble: str, configs: Mapping[str, ModelConfig], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Loads each composing model of `ensemble` with its configuration in `configs` (as an
    override: the repository's files are not touched), then the ensemble, waits until all are
    READY, and reads each configuration back: a model whose settings (loadgen.knobs) came back
    otherwise than asked is a ModelLoadError naming the difference. Returns the configurations
    as the server answers them (JSON), by model.

    Everything together is bounded by `timeout_s`. A refused load is a ModelLoadError with
    Triton's answer; the models loaded before it keep their new configuration and the ensemble
    may be left unloaded (the next load_configs loads it again)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    for model, config in configs.items():
        await transport.load_model(model, to_json(config), timeout_s=_remaining_s(deadline))
    await transport.load_model(ensemble, timeout_s=_remaining_s(deadline))
    await _wait_ready(transport, [*configs, ensemble], deadline, timeout_s)
    loaded: dict[str, dict[str, Any]] = {}
    for model, config in configs.items():
        loaded[model] = await transport.model_config(model)
        difference = _settings_difference(settings_of(config), settings_of(from_json(loaded[model])))
        if difference:
            raise ModelLoadError(f"{model} loaded with {difference}", model, f"loaded with {difference}")
    return loaded


async def current_configs(transport: Transport, ensemble: str) -> tuple[ModelConfig, dict[str, ModelConfig]]:
    """The ensemble's configuration and its composing models', in step order, as the server has
    them now (Triton's fill-ins included). UsageError when `ensemble` is not an ensemble."""
    config = from_json(await transport.model_config(ensemble))
    steps = ensemble_steps(config)
    if not steps:
        raise UsageError(f"model '{ensemble}' is not an ensemble (it has no ensemble_scheduling steps): give an ensemble with -m")
    return config, {model: from_json(await transport.model_config(model)) for model in steps}


async def check_model_control(transport: Transport, ensemble: str) -> None:
    """UsageError unless the server takes load requests (explicit model control). Asks it to load
    `ensemble` without an override: a no-op for a loaded ensemble whose files did not change, and
    an ensemble has no instances to restart otherwise. A server in another mode refuses every load
    with UNAVAILABLE; another refusal (the ensemble does not load) stays a ModelLoadError."""
    try:
        await transport.load_model(ensemble)
    except ModelLoadError as exc:
        if exc.status != "UNAVAILABLE":
            raise
        raise UsageError(f"the server does not take model load requests ({exc}): start it with --model-control-mode=explicit") from None
