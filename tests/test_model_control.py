"""Loading configurations into a real embedded Triton in explicit model control (tune's candidates),
the best repository written from one, and the check for a server that takes no load requests."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from loadgen.best_repository import write_best_repository
from loadgen.errors import ModelLoadError, ServerError, UsageError
from loadgen.knobs import StageSettings, apply_settings, from_json, parse_pbtxt, settings_of, to_json
from loadgen.model_control import _settings_difference, check_model_control, current_configs, load_configs
from loadgen.server import EmbeddedServer
from loadgen.transport import open_transport
from loadgen.transport.base import InputTensor

TUNABLE_REPOSITORY = Path(__file__).resolve().parent / "model_repos" / "tunable"
PROTOCOLS = ("http", "grpc")
LOAD_TIMEOUT_S = 120.0

# The candidate every test loads: batcher batching with a queue delay, two instances of worker.
BATCHER = StageSettings(instances=1, dynamic_batching=True, max_queue_delay_us=2000, preferred_batch_size=(), max_batch_size=8)
WORKER = StageSettings(instances=2, dynamic_batching=False, max_queue_delay_us=0, preferred_batch_size=(), max_batch_size=8)


def run(coroutine):
    return asyncio.run(coroutine)


def url_of(endpoints, protocol: str) -> str:
    return endpoints.http if protocol == "http" else endpoints.grpc


def own_configs() -> dict:
    """The repository's own configurations of the composing models, from their files."""
    return {model: parse_pbtxt((TUNABLE_REPOSITORY / model / "config.pbtxt").read_text(), model) for model in ("batcher", "worker")}


def candidate_configs() -> dict:
    own = own_configs()
    return {"batcher": apply_settings(own["batcher"], BATCHER), "worker": apply_settings(own["worker"], WORKER)}


async def infer_once(transport, model: str = "tunable") -> None:
    prepared = transport.prepare(model, "", [InputTensor("IN", "FP32", (1, 1), struct.pack("<f", 3.0))], ["OUT"])
    outcome = await transport.infer(prepared)
    assert outcome.error is None, outcome.error


@pytest.fixture(scope="module")
def explicit_triton(tmp_path_factory):
    """The embedded server on the tunable repository in explicit model control, the ensemble loaded."""
    server = EmbeddedServer(TUNABLE_REPOSITORY, tmp_path_factory.mktemp("explicit") / "server.log", explicit_models=("tunable",))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_explicit_start_loads_the_ensemble_with_its_composing_models(explicit_triton, protocol):
    async def index():
        async with open_transport(protocol, url_of(explicit_triton, protocol)) as transport:
            return await transport.repository_index()

    entries = run(index())
    assert {entry["name"]: entry["state"] for entry in entries} == {"tunable": "READY", "batcher": "READY", "worker": "READY"}
    assert all(set(entry) == {"name", "version", "state", "reason"} and entry["version"] == "1" for entry in entries)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unloaded_ensemble_loads_again(explicit_triton, protocol):
    async def scenario():
        async with open_transport(protocol, url_of(explicit_triton, protocol)) as transport:
            await transport.unload_model("tunable")  # answered at once: the model unloads after
            for _ in range(100):
                unloaded = {entry["name"]: entry for entry in await transport.repository_index()}
                if unloaded["tunable"]["state"] != "UNLOADING":
                    break
                await asyncio.sleep(0.1)
            prepared = transport.prepare("tunable", "", [InputTensor("IN", "FP32", (1, 1), struct.pack("<f", 3.0))], ["OUT"])
            refused = await transport.infer(prepared)
            await transport.load_model("tunable")
            await infer_once(transport)
            return unloaded, refused

    unloaded, refused = run(scenario())
    assert (unloaded["tunable"]["state"], unloaded["tunable"]["reason"]) == ("UNAVAILABLE", "unloaded")
    assert unloaded["worker"]["state"] == "READY"  # an ensemble's unload leaves its composing models
    assert refused.error is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_candidate_loads_reads_back_and_serves(explicit_triton, protocol):
    async def scenario():
        async with open_transport(protocol, url_of(explicit_triton, protocol)) as transport:
            loaded = await load_configs(transport, "tunable", candidate_configs(), LOAD_TIMEOUT_S)
            ensemble, current = await current_configs(transport, "tunable")
            await infer_once(transport)
            back = await load_configs(transport, "tunable", own_configs(), LOAD_TIMEOUT_S)
            await infer_once(transport)
            return loaded, ensemble, current, back

    loaded, ensemble, current, back = run(scenario())
    assert list(loaded) == ["batcher", "worker"]
    # Triton gives dynamic batching without a preferred size the maximum batch size as one.
    assert settings_of(from_json(loaded["batcher"])) == StageSettings(1, True, 2000, (), 8)  # Triton fills in [8]: the same setting
    assert settings_of(from_json(loaded["worker"])) == WORKER
    assert len(loaded["worker"]["instance_group"]) == 1 and loaded["worker"]["instance_group"][0]["count"] == 2
    assert ensemble.name == "tunable" and ensemble.max_batch_size == 8
    assert list(current) == ["batcher", "worker"]  # step order
    assert {model: settings_of(config) for model, config in current.items()} == {
        model: settings_of(from_json(config)) for model, config in loaded.items()
    }
    assert not from_json(back["batcher"]).HasField("dynamic_batching")
    assert settings_of(from_json(back["worker"])).instances == 1


def test_overrides_from_the_servers_own_configurations_load_too(explicit_triton):
    """The configurations the server answers (Triton's fill-ins included) are overrides it takes."""

    async def scenario():
        async with open_transport("http", explicit_triton.http) as transport:
            _, current = await current_configs(transport, "tunable")
            wanted = {"worker": apply_settings(current["worker"], WORKER)}
            loaded = await load_configs(transport, "tunable", wanted, LOAD_TIMEOUT_S)
            await infer_once(transport)
            await load_configs(transport, "tunable", {"worker": current["worker"]}, LOAD_TIMEOUT_S)
            return loaded

    assert settings_of(from_json(run(scenario())["worker"])) == WORKER


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_configuration_triton_refuses_is_a_model_load_error_and_the_server_keeps_serving(explicit_triton, protocol):
    own = own_configs()
    too_preferred = {"batcher": apply_settings(own["batcher"], StageSettings(1, True, 0, (16,), 8))}
    below_ensemble = {"worker": apply_settings(own["worker"], StageSettings(1, False, 0, (), 4))}

    async def scenario():
        async with open_transport(protocol, url_of(explicit_triton, protocol)) as transport:
            with pytest.raises(ModelLoadError) as preferred:
                await load_configs(transport, "tunable", too_preferred, LOAD_TIMEOUT_S)
            await infer_once(transport)  # the ensemble as it was: Triton kept the loaded batcher
            with pytest.raises(ModelLoadError) as smaller:
                await load_configs(transport, "tunable", below_ensemble, LOAD_TIMEOUT_S)
            await infer_once(transport, "batcher")
            assert await transport.server_live(5.0) is None
            await load_configs(transport, "tunable", own, LOAD_TIMEOUT_S)
            await infer_once(transport)
            return preferred.value, smaller.value

    preferred, smaller = run(scenario())
    # Rejected before loading: Triton's answer says only that; the reason is in its log.
    assert (preferred.model, preferred.status) == ("batcher", "INTERNAL")
    assert preferred.message == "failed to load 'batcher', failed to poll from model repository"
    # worker loads with 4, the ensemble is unloaded; loading it gives the reason.
    assert (smaller.model, smaller.status) == ("tunable", "INVALID_ARGUMENT")
    assert "ensemble tunable allows maximum batch size 8, but it contains model worker which only allows maximum batch size to be 4" in smaller.message
    assert " ".join(smaller.message.split()) in str(smaller)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_load_is_bounded(explicit_triton, protocol):
    async def scenario():
        async with open_transport(protocol, url_of(explicit_triton, protocol)) as transport:
            with pytest.raises(ServerError, match="did not answer loading worker within 0.01 s") as bounded:
                await transport.load_model("worker", to_json(candidate_configs()["worker"]), timeout_s=0.01)
            await load_configs(transport, "tunable", own_configs(), LOAD_TIMEOUT_S)
            await infer_once(transport)
            return bounded.value

    assert not isinstance(run(scenario()), ModelLoadError)


def test_the_settings_difference_leaves_out_what_triton_fills_in():
    batching = StageSettings(1, True, 100, (), 8)
    assert _settings_difference(batching, StageSettings(1, True, 100, (8,), 8)) == ""
    assert _settings_difference(WORKER, StageSettings(1, False, 0, (), 8)) == "instances 1 (wanted 2)"
    assert _settings_difference(batching, StageSettings(1, True, 100, (4,), 8)) == "preferred_batch_size (4,) (wanted ())"


# -- the best repository ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    """A best repository written from the candidate, twice (the second replaces the first)."""
    dest = tmp_path_factory.mktemp("best")
    write_best_repository(TUNABLE_REPOSITORY, dest, {"worker": own_configs()["worker"]})
    return write_best_repository(TUNABLE_REPOSITORY, dest, candidate_configs())


@pytest.fixture(scope="module")
def best_triton(best, tmp_path_factory):
    """The embedded server, in its default model control, on the best repository."""
    server = EmbeddedServer(best, tmp_path_factory.mktemp("best_triton") / "server.log")
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_best_repository_links_all_but_the_written_configurations(best):
    assert sorted(path.name for path in best.parent.iterdir()) == ["model_repository"]  # nothing left beside
    for model in ("batcher", "worker"):
        folder = best / model
        assert folder.is_dir() and not folder.is_symlink()
        assert (folder / "1").is_symlink() and (folder / "1").readlink() == TUNABLE_REPOSITORY / model / "1"
        text = (folder / "config.pbtxt").read_text()
        first, rest = text.split("\n", 1)
        assert first == f"# Written by loadgen tune from {TUNABLE_REPOSITORY / model / 'config.pbtxt'}, with " + (
            BATCHER if model == "batcher" else WORKER
        ).describe()
        written = parse_pbtxt(rest, model)
        assert settings_of(written) == (BATCHER if model == "batcher" else WORKER)
        # The user's own file with the settings: nothing Triton fills in at load time.
        assert written.ListFields() and not written.HasField("optimization") and not written.instance_group[0].name
    assert (best / "tunable").readlink() == TUNABLE_REPOSITORY / "tunable"
    assert (best / "README.md").is_symlink()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_best_repository_loads_with_the_candidates_settings(best_triton, protocol):
    async def scenario():
        async with open_transport(protocol, url_of(best_triton, protocol)) as transport:
            _, configs = await current_configs(transport, "tunable")
            await infer_once(transport)
            return configs

    configs = run(scenario())
    assert _settings_difference(BATCHER, settings_of(configs["batcher"])) == ""
    assert settings_of(configs["worker"]) == WORKER


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_check_model_control_wants_explicit_mode(explicit_triton, best_triton, protocol):
    async def check(endpoints):
        async with open_transport(protocol, url_of(endpoints, protocol)) as transport:
            await check_model_control(transport, "tunable")

    async def unload(endpoints):
        async with open_transport(protocol, url_of(endpoints, protocol)) as transport:
            await transport.unload_model("tunable")

    run(check(explicit_triton))
    with pytest.raises(UsageError, match="start it with --model-control-mode=explicit") as refused:
        run(check(best_triton))
    assert "explicit model load / unload is not allowed if polling is enabled" in str(refused.value)
    with pytest.raises(ModelLoadError) as unload_refused:
        run(unload(best_triton))
    assert (unload_refused.value.model, unload_refused.value.status) == ("tunable", "UNAVAILABLE")
    assert unload_refused.value.message == "explicit model load / unload is not allowed if polling is enabled"


def test_without_a_repository_only_the_configurations_are_written(tmp_path):
    best = write_best_repository(None, tmp_path, candidate_configs())
    assert sorted(path.name for path in best.iterdir()) == ["batcher", "worker"]
    for model, settings in (("batcher", BATCHER), ("worker", WORKER)):
        assert [path.name for path in (best / model).iterdir()] == ["config.pbtxt"]
        text = (best / model / "config.pbtxt").read_text()
        assert text.startswith("# Written by loadgen tune from the configuration the server loaded, with ")
        assert settings_of(parse_pbtxt(text, model)) == settings


def test_a_model_missing_from_the_repository_is_a_usage_error_and_nothing_is_written(tmp_path):
    with pytest.raises(UsageError, match="'nosuch' is not in the model repository"):
        write_best_repository(TUNABLE_REPOSITORY, tmp_path, {"nosuch": own_configs()["worker"]})
    assert list(tmp_path.iterdir()) == []
