"""Statistics deltas and perf_analyzer's server breakdown, from recorded-shape documents."""

import asyncio

import pytest

from loadgen.errors import ServerError
from loadgen.server_stats import (
    ModelTree,
    model_tree,
    parse_statistics,
    resolve_version,
    server_figures,
)


def stats_entry(name, version, count, success_ns, queue_ns, compute_ns, executions=None, as_strings=False):
    cast = str if as_strings else int
    def d(c, ns):
        return {"count": cast(c), "ns": cast(ns)}
    return {
        "name": name,
        "version": version,
        "inference_count": cast(count),
        "execution_count": cast(executions if executions is not None else count),
        "inference_stats": {
            "success": d(count, success_ns),
            "fail": d(0, 0),
            "queue": d(count, queue_ns),
            "compute_input": d(count, compute_ns[0]),
            "compute_infer": d(count, compute_ns[1]),
            "compute_output": d(count, compute_ns[2]),
            "cache_hit": d(0, 0),
            "cache_miss": d(0, 0),
        },
    }


def documents(as_strings=False):
    before = {"model_stats": [
        stats_entry("ens", "1", 10, 10_000, 500, (0, 0, 0), as_strings=as_strings),
        stats_entry("a", "1", 10, 4_000, 100, (100, 3_000, 100), as_strings=as_strings),
        stats_entry("b", "1", 10, 4_000, 100, (100, 3_000, 100), as_strings=as_strings),
    ]}
    # 100 more requests: ens 1000 us each end to end; a: queue 20, compute 10+600+30; b: queue 40, compute 20+200+10.
    after = {"model_stats": [
        stats_entry("ens", "1", 110, 10_000 + 100 * 1_000_000, 500 + 100 * 5_000, (0, 0, 0), executions=60, as_strings=as_strings),
        stats_entry("a", "1", 110, 4_000 + 100 * 700_000, 100 + 100 * 20_000, (100 + 100 * 10_000, 3_000 + 100 * 600_000, 100 + 100 * 30_000), as_strings=as_strings),
        stats_entry("b", "1", 110, 4_000 + 100 * 280_000, 100 + 100 * 40_000, (100 + 100 * 20_000, 3_000 + 100 * 200_000, 100 + 100 * 10_000), as_strings=as_strings),
    ]}
    return parse_statistics(before), parse_statistics(after)


TREE = ModelTree("ens", "", (ModelTree("a", ""), ModelTree("b", "")))


@pytest.mark.parametrize("as_strings", [False, True])
def test_plain_model_delta(as_strings):
    before, after = documents(as_strings)
    a = server_figures(ModelTree("a", ""), before, after)
    assert (a.inference_count, a.execution_count, a.success_count) == (100, 100, 100)
    assert a.avg_request_latency_us == pytest.approx(700)
    assert a.queue_us == pytest.approx(20)
    assert (a.compute_input_us, a.compute_infer_us, a.compute_output_us) == pytest.approx((10, 600, 30))
    assert a.overhead_us == pytest.approx(700 - 20 - 640)


def test_ensemble_sums_its_composing_models():
    before, after = documents()
    ens = server_figures(TREE, before, after)
    assert ens.execution_count == 50
    assert ens.avg_request_latency_us == pytest.approx(1000)
    assert ens.queue_us == pytest.approx(20 + 40)  # the composing models' queues, not its own 5 us
    assert ens.compute_us == pytest.approx(640 + 230)
    assert ens.overhead_us == pytest.approx(1000 - 60 - 870)
    assert [c.name for c in ens.composing] == ["a", "b"]


def test_overhead_is_floored_at_zero():
    before, after = documents()
    b = server_figures(ModelTree("b", ""), before, after)
    assert b.avg_request_latency_us == pytest.approx(280)
    assert b.overhead_us == pytest.approx(280 - 40 - 230)
    # queue alone (20 us) longer than the whole request (10 us): overhead would be negative.
    fast = {"model_stats": [stats_entry("b", "1", 1, 10_000, 20_000, (0, 0, 0))]}
    zero = {"model_stats": [stats_entry("b", "1", 0, 0, 0, (0, 0, 0))]}
    assert server_figures(ModelTree("b", ""), parse_statistics(zero), parse_statistics(fast)).overhead_us == 0


def test_latest_version_and_missing_models():
    snapshot = parse_statistics({"model_stats": [stats_entry("m", "1", 0, 0, 0, (0, 0, 0)), stats_entry("m", "10", 0, 0, 0, (0, 0, 0))]})
    assert resolve_version(snapshot, "m", "") == "10"
    assert resolve_version(snapshot, "m", "-1") == "10"
    assert resolve_version(snapshot, "m", "1") == "1"
    with pytest.raises(ServerError):
        resolve_version(snapshot, "m", "3")
    with pytest.raises(ServerError):
        resolve_version(snapshot, "other", "")


def test_model_tree_recurses_into_nested_ensembles():
    configs = {
        "outer": {"platform": "ensemble", "ensemble_scheduling": {"step": [
            {"model_name": "inner", "model_version": -1}, {"model_name": "c", "model_version": 2}]}},
        "inner": {"platform": "ensemble", "ensemble_scheduling": {"step": [{"model_name": "a", "model_version": -1}]}},
        "a": {"backend": "python"},
        "c": {"backend": "python"},
    }

    async def fetch(name, version):
        return configs[name]

    tree = asyncio.run(model_tree(fetch, "outer"))
    assert tree == ModelTree("outer", "", (ModelTree("inner", "", (ModelTree("a", ""),)), ModelTree("c", "2")))
