"""loadgen.tune_search: the grid and the guided search on a synthetic ensemble whose throughput is a
known function of its settings, the noise rule, and the table helpers. Pure: no server."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.errors import UsageError
from loadgen.knobs import KnobSpace, StageSettings, candidate_key
from loadgen.tune_result import LOAD_FAILED, MEASURED, NO_LEVEL, RUN_FAILED, CandidateResult
from loadgen.tune_search import (
    START_REASON,
    GridSearch,
    GuidedSearch,
    best_index,
    improves,
    leaders,
    pareto_front,
    ranking,
    relieving_changes,
    stage_ranking,
)

BATCHER, WORKER = "batcher", "worker"
# Both stages batch (max_batch_size 8), as in tests/model_repos/tunable.
SPACE = KnobSpace(instances=(1, 2, 3, 4), dynamic_batching=(False, True), max_queue_delay_us=(0, 1000, 5000),
                  preferred_batch_size=((),), max_batch_size=(8,))  # fmt: skip
SPACES = {BATCHER: SPACE, WORKER: SPACE}
OFF = StageSettings(1, False, 0, (), 8)
START = ((BATCHER, OFF), (WORKER, OFF))


def result(index, candidate, throughput, *, outcome=MEASURED, spread=0.0, stage_time_us=None, remeasured=()):
    return CandidateResult(
        index=index, settings=candidate, configs={}, outcome=outcome,
        throughput_infer_per_s=throughput if outcome == MEASURED else None,
        p99_ms=10.0 if outcome == MEASURED else None, spread=spread,
        stage_time_us=stage_time_us or {}, remeasured_infer_per_s=remeasured,
    )  # fmt: skip


def tunable_stages(candidate) -> dict[str, float]:
    """Each stage's throughput (infer/s): the batcher sleeps 20 ms per batch (its maximum batch
    size with dynamic batching on, 1 otherwise), the worker 5 ms per request."""
    batcher, worker = dict(candidate)[BATCHER], dict(candidate)[WORKER]
    batch = batcher.max_batch_size if batcher.dynamic_batching else 1
    return {BATCHER: batcher.instances * batch / 0.020, WORKER: worker.instances / 0.005}


class Pipeline:
    """Measures a candidate: the ensemble's throughput is its slowest stage's, each stage's time
    per request the inverse of its throughput. `noise` scales each candidate's figures by a factor
    fixed per candidate (so a replay measures the same) and reports it as the spread."""

    def __init__(self, stages=tunable_stages, noise=0.0, seed=0, outcome_of=lambda candidate: MEASURED):
        self.stages, self.noise, self.seed, self.outcome_of = stages, noise, seed, outcome_of

    def __call__(self, index, candidate) -> CandidateResult:
        factor = 1 + random.Random(f"{self.seed}:{candidate_key(candidate)}").uniform(-self.noise, self.noise)
        stages = {model: throughput * factor for model, throughput in self.stages(candidate).items()}
        outcome = self.outcome_of(candidate)
        times = {model: 1e6 / throughput for model, throughput in stages.items()} if outcome != LOAD_FAILED else {}
        return result(index, candidate, min(stages.values()), outcome=outcome, spread=2 * self.noise, stage_time_us=times)

    def truth(self, candidate) -> float:
        return min(self.stages(candidate).values())


def drive(search, measure, budget=10_000):
    """The orchestrator's loop; the proposals and results in the order measured."""
    history = []
    while len(history) < budget and (proposal := search.next()):
        measured = measure(len(history), proposal.candidate)
        search.record(measured)
        history.append((proposal, measured))
    return history


def best_of(history):
    return max(measured.throughput_infer_per_s or 0.0 for _, measured in history)


def needed(history, target):
    """How many candidates the search measured before one reached `target`."""
    return next(i + 1 for i, (_, measured) in enumerate(history) if (measured.throughput_infer_per_s or 0.0) >= target)


# The grid and the guided search on the synthetic ensemble.


def test_the_guided_search_reaches_the_grids_best_in_fewer_candidates():
    pipeline = Pipeline()
    grid = drive(GridSearch(SPACES, START, max_candidates=1000), pipeline)
    guided = drive(GuidedSearch(SPACES, START), pipeline)
    assert len(grid) == 16 * 16  # each stage: 4 instance counts x (off, on with 3 delays)
    assert best_of(grid) == pytest.approx(800.0)  # the worker's 4 instances, behind a batching batcher
    assert guided[0][1].throughput_infer_per_s == pytest.approx(50.0)  # the default: one unbatched batcher
    assert best_of(guided) >= 0.95 * best_of(grid)
    target = 0.95 * best_of(grid)
    assert needed(guided, target) < needed(grid, target) and len(guided) < len(grid) / 10
    best = dict(guided[best_index([measured for _, measured in guided])][0].candidate)
    assert best[BATCHER].dynamic_batching and best[WORKER].instances == 4


def test_two_stages_limiting_together_are_relieved_together():
    # Batching batcher (400/s) and two workers (400/s): neither stage alone can raise the throughput.
    balanced = ((BATCHER, StageSettings(1, True, 0, (), 8)), (WORKER, StageSettings(2, False, 0, (), 8)))
    history = drive(GuidedSearch(SPACES, balanced), Pipeline())
    assert best_of(history) == pytest.approx(800.0)
    # The batcher's second instance held 400/s and moved the bottleneck to the worker: relieved on top of it.
    pair, measured = next((p, r) for p, r in history if r.throughput_infer_per_s > 400)
    assert dict(pair.candidate) == {BATCHER: StageSettings(2, True, 0, (), 8), WORKER: StageSettings(3, False, 0, (), 8)}
    assert pair.reason == ("after batcher: one more instance (1 -> 2), worker took 67% of the ensemble's time "
                           "(2.5 ms per request): one more instance (2 -> 3) as well")  # fmt: skip
    assert measured.throughput_infer_per_s == pytest.approx(600.0)


@pytest.mark.parametrize("seed", range(6))
def test_the_guided_search_gets_there_through_noise(seed):
    pipeline = Pipeline(noise=0.03, seed=seed)
    grid = drive(GridSearch(SPACES, START, max_candidates=1000), pipeline)
    guided = drive(GuidedSearch(SPACES, START), pipeline)
    best = max(pipeline.truth(proposal.candidate) for proposal, _ in grid)
    assert max(pipeline.truth(proposal.candidate) for proposal, _ in guided) >= 0.95 * best
    assert len(guided) < len(grid) / 5


def test_the_first_rounds_relieve_the_dominant_stage_and_say_why():
    history = drive(GuidedSearch(SPACES, START), Pipeline())
    reasons = [proposal.reason for proposal, _ in history]
    assert reasons[0] == START_REASON and history[0][0].candidate == START
    assert reasons[1:3] == [
        "batcher took 80% of the ensemble's time (20.0 ms per request): dynamic batching on (queue delay 0 us)",
        "batcher took 80% of the ensemble's time (20.0 ms per request): one more instance (1 -> 2)",
    ]
    # Batching made the batcher 8x faster (kept), so the worker dominates now.
    assert reasons[3] == "worker took 67% of the ensemble's time (5.0 ms per request): dynamic batching on (queue delay 0 us)"
    assert dict(history[3][0].candidate)[BATCHER] == StageSettings(1, True, 0, (), 8)


def test_the_grid_is_deterministic_bounded_and_in_product_order():
    first = [proposal.candidate for proposal, _ in drive(GridSearch(SPACES, START, max_candidates=10), Pipeline())]
    again = [proposal.candidate for proposal, _ in drive(GridSearch(SPACES, START, max_candidates=10), Pipeline())]
    assert first == again and len(first) == 10 and len(set(first)) == 10
    order = SPACE.settings()
    assert first[0] == START and order[0] == OFF
    # The start is (order[0], order[0]): skipped; the batcher (first model) changes slowest.
    assert first[1:] == [((BATCHER, order[0]), (WORKER, order[j])) for j in range(1, 10)]
    search = GridSearch(SPACES, START, max_candidates=10)
    drive(search, Pipeline())
    assert search.stop_reason == "--max-candidates 10 reached (256 candidates in the grid)"
    assert search.next() is None


def test_a_start_outside_the_grid_comes_first_and_every_combination_follows():
    outside = ((BATCHER, StageSettings(6, False, 0, (), 8)), (WORKER, OFF))
    search = GridSearch(SPACES, outside, max_candidates=1000)
    history = drive(search, Pipeline())
    assert len(history) == 257 and history[0][0].candidate == outside
    assert search.stop_reason == "every combination measured (257 with the start)"


# The noise rule.


def test_the_noise_rule_rejects_a_3_percent_gain_and_keeps_a_20_percent_one():
    current = result(0, START, 100.0, spread=0.02)
    assert not improves(result(1, START, 103.0, spread=0.02), current, min_gain=0.05)
    assert improves(result(1, START, 120.0, spread=0.02), current, min_gain=0.05)
    # The spreads widen the threshold: 20% is noise when one measurement moved 25% window to window.
    assert not improves(result(1, START, 120.0, spread=0.25), current, min_gain=0.05)
    assert not improves(result(1, START, 120.0), result(0, START, 100.0, spread=0.25), min_gain=0.05)
    assert not improves(result(1, START, 105.0), current, min_gain=0.05)  # "more than": exactly 5% is not
    # No throughput within the bounds is 0: beaten by any measured throughput, beating nothing.
    for outcome in (NO_LEVEL, LOAD_FAILED, RUN_FAILED):
        assert improves(result(1, START, 1.0), result(0, START, None, outcome=outcome), min_gain=0.05)
        assert not improves(result(1, START, None, outcome=outcome), current, min_gain=0.05)
    # Re-measurements of a leader do not move what the search compares (a replay must decide alike).
    assert not improves(result(1, START, 103.0, remeasured=(200.0,)), current, min_gain=0.05)


@pytest.mark.parametrize(("second", "adopted"), [(103.0, False), (120.0, True)])
def test_the_search_keeps_a_change_only_past_the_noise(second, adopted):
    space = KnobSpace((1, 2, 3), (False,), (0,), ((),), (0,))
    throughputs = {1: 100.0, 2: second, 3: 200.0}
    pipeline = Pipeline(stages=lambda candidate: {"only": throughputs[candidate[0][1].instances]})
    start = (("only", StageSettings(1, False, 0, (), 0)),)
    search = GuidedSearch({"only": space}, start)
    history = drive(search, pipeline)
    assert [proposal.candidate[0][1].instances for proposal, _ in history] == ([1, 2, 3] if adopted else [1, 2])
    assert search.stop_reason == ("nothing untried is left" if adopted else
                                  "no change to any model raised the throughput by more than the noise")  # fmt: skip


# Failures, no level within the bounds, replay.


def test_failed_and_no_level_candidates_do_not_stop_the_search():
    def outcome_of(candidate):
        batcher, worker = dict(candidate)[BATCHER], dict(candidate)[WORKER]
        if batcher.dynamic_batching and batcher.instances >= 3:
            return LOAD_FAILED  # as if out of memory
        return NO_LEVEL if worker.instances == 1 and not batcher.dynamic_batching else MEASURED

    history = drive(GuidedSearch(SPACES, START), Pipeline(outcome_of=outcome_of))
    assert history[0][1].outcome == NO_LEVEL and history[0][1].stage_time_us  # figures at the first level
    assert best_of(history) == pytest.approx(800.0)
    # A start that does not even load: every model is relieved in step order, from nothing.
    history = drive(GuidedSearch(SPACES, START), Pipeline(outcome_of=lambda c: LOAD_FAILED if c == START else MEASURED))
    assert history[0][1].outcome == LOAD_FAILED and not history[0][1].stage_time_us
    assert history[1][0].reason == "batcher (no per-stage figures): dynamic batching on (queue delay 0 us)"
    assert best_of(history) == pytest.approx(800.0)


def test_a_round_of_failures_moves_on_to_the_next_model():
    # Nothing the batcher can change loads: the worker is tried next, from the same current.
    def outcome_of(candidate):
        return LOAD_FAILED if dict(candidate)[BATCHER] != OFF else MEASURED

    search = GuidedSearch(SPACES, START)
    history = drive(search, Pipeline(outcome_of=outcome_of))
    assert [r.outcome for _, r in history[1:3]] == [LOAD_FAILED, LOAD_FAILED]
    assert history[3][0].reason.startswith("worker took 20% of the ensemble's time")
    assert best_of(history) == pytest.approx(50.0) and search.stop_reason is not None


@pytest.mark.parametrize("search_of", [lambda: GuidedSearch(SPACES, START), lambda: GridSearch(SPACES, START, 40)])
def test_replaying_the_recorded_results_gives_the_same_proposals(search_of):
    history = drive(search_of(), Pipeline(noise=0.05, seed=3))
    cut = len(history) * 2 // 3
    resumed = search_of()
    for proposal, measured in history[:cut]:
        # As --resume reads them back from tune.json.
        assert resumed.next() == proposal
        resumed.record(CandidateResult.from_dict(measured.to_dict()))
    rest = drive(resumed, lambda index, candidate: Pipeline(noise=0.05, seed=3)(index + cut, candidate))
    assert [proposal for proposal, _ in rest] == [proposal for proposal, _ in history[cut:]]


def test_a_replay_that_differs_and_calls_out_of_order_are_refused():
    search = GuidedSearch(SPACES, START)
    search.next()
    with pytest.raises(RuntimeError):
        search.next()  # the start's result was not recorded
    with pytest.raises(UsageError, match="resume with the options the tune was started with"):
        search.record(result(0, ((BATCHER, OFF), (WORKER, StageSettings(2, False, 0, (), 8))), 50.0))
    with pytest.raises(RuntimeError):
        GridSearch(SPACES, START, 5).record(result(0, START, 50.0))
    with pytest.raises(ValueError):
        GuidedSearch({BATCHER: SPACE}, START)


# The changes that relieve one model.


def test_the_changes_that_relieve_a_model_stay_inside_its_space():
    space = KnobSpace((1, 2, 4), (False, True), (0, 500, 2000), ((), (4,), (16,)), (8, 16))
    assert relieving_changes(StageSettings(1, False, 0, (), 8), space) == [
        (StageSettings(1, True, 0, (), 8), "dynamic batching on (queue delay 0 us)"),
        (StageSettings(2, False, 0, (), 8), "one more instance (1 -> 2)"),
    ]
    assert relieving_changes(StageSettings(2, True, 500, (4,), 8), space) == [
        (StageSettings(2, True, 2000, (4,), 8), "a longer queue delay (500 -> 2000 us)"),
        # (16,) is the next preferred size but above the maximum of 8: Triton refuses it.
        (StageSettings(2, True, 500, (4,), 16), "a larger max batch size (8 -> 16)"),
        (StageSettings(4, True, 500, (4,), 8), "more instances (2 -> 4)"),
    ]
    assert relieving_changes(StageSettings(4, True, 2000, (16,), 16), space) == []
    # A model that does not batch: only instances.
    assert relieving_changes(StageSettings(1, False, 0, (), 0), KnobSpace((1, 2), (False,), (0,), ((),), (0,))) == [
        (StageSettings(2, False, 0, (), 0), "one more instance (1 -> 2)")
    ]
    # Batching not in the space: not proposed.
    assert relieving_changes(OFF, KnobSpace((1,), (False,), (0,), ((),), (8,))) == []


def test_the_stages_are_ranked_by_their_time_then_step_order():
    models = ["a", "b", "c"]
    assert stage_ranking(result(0, START, 1.0, stage_time_us={"a": 5.0, "b": 9.0, "c": 5.0}), models) == ["b", "a", "c"]
    assert stage_ranking(result(0, START, 1.0, stage_time_us={"c": 1.0}), models) == ["c", "a", "b"]


small_pipelines = st.lists(
    st.tuples(st.floats(1.0, 50.0), st.booleans(), st.sampled_from([0, 2, 8])), min_size=1, max_size=3
)  # per stage: ms per execution, whether an execution takes a whole batch, max batch size


@settings(max_examples=60, deadline=None)
@given(small_pipelines, st.floats(0.0, 0.05), st.integers(0, 10))
def test_the_guided_search_ends_proposes_each_candidate_once_stays_in_the_spaces_and_finds_the_best(stages, noise, seed):
    models = [f"m{i}" for i in range(len(stages))]

    def throughputs(candidate):
        out = {}
        for (model, chosen), (ms, per_batch, _) in zip(candidate, stages, strict=True):
            batch = chosen.max_batch_size if chosen.dynamic_batching and per_batch else 1
            out[model] = chosen.instances * batch * 1000 / ms
        return out

    spaces = {model: KnobSpace((1, 2, 3), (False, True) if mbs else (False,), (0, 1000), ((),), (mbs,))
              for model, (_, _, mbs) in zip(models, stages, strict=True)}  # fmt: skip
    start = tuple((model, StageSettings(1, False, 0, (), mbs)) for model, (_, _, mbs) in zip(models, stages, strict=True))
    pipeline = Pipeline(stages=throughputs, noise=noise, seed=seed)
    search = GuidedSearch(spaces, start)
    history = drive(search, pipeline)
    candidates = [proposal.candidate for proposal, _ in history]
    grid = drive(GridSearch(spaces, start, 10_000), pipeline)
    assert search.stop_reason is not None and len(candidates) <= len(grid)
    # Stages that only get faster with more instances or batching: climbing finds the grid's best.
    truth = max(pipeline.truth(candidate) for candidate in candidates)
    assert truth >= 0.95 * max(pipeline.truth(proposal.candidate) for proposal, _ in grid)
    assert len(set(candidates)) == len(candidates)
    assert all(chosen in spaces[model].settings() for candidate in candidates for model, chosen in candidate)
    assert best_of(history) >= history[0][1].throughput_infer_per_s
    assert [proposal for proposal, _ in drive(GuidedSearch(spaces, start), pipeline)] == [p for p, _ in history]


# The table helpers.


def dominated(points, i):
    return any(t >= points[i][0] and p <= points[i][1] and (t, p) != points[i] for t, p in points)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8).map(float), st.integers(0, 8).map(float)), max_size=25))
def test_the_pareto_front_is_the_points_nothing_dominates(points):
    front = pareto_front(points)
    assert front == sorted((i for i in range(len(points)) if not dominated(points, i)), key=lambda i: (points[i][0], i))


def test_the_pareto_front_by_example():
    points = [(100.0, 20.0), (200.0, 30.0), (150.0, 40.0), (200.0, 30.0), (50.0, 5.0), (200.0, 35.0)]
    assert pareto_front(points) == [4, 0, 1, 3]
    assert pareto_front([]) == []


def test_leaders_best_and_the_table_order():
    results = [
        result(0, START, 100.0),
        result(1, START, None, outcome=LOAD_FAILED),
        result(2, START, 300.0, remeasured=(200.0, 220.0)),  # first 300, mean 240
        result(3, START, None, outcome=NO_LEVEL),
        result(4, START, 250.0),
        result(5, START, 250.0),
        result(6, START, None, outcome=RUN_FAILED),
    ]
    assert leaders(results) == [2, 4, 5] and leaders(results, k=5) == [2, 4, 5, 0]
    assert best_index(results) == 4  # 250 beats 240 once the leader was measured again; the earlier of equals
    assert ranking(results) == [4, 5, 2, 0, 3, 1, 6]
    assert best_index(results[1:2]) is None and leaders([]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([MEASURED, NO_LEVEL, LOAD_FAILED, RUN_FAILED]), st.integers(1, 5).map(float))))
def test_the_table_order_lists_every_candidate_best_first(rows):
    results = [result(i, START, throughput, outcome=outcome) for i, (outcome, throughput) in enumerate(rows)]
    order = ranking(results)
    assert sorted(order) == list(range(len(results)))
    if (best := best_index(results)) is not None:
        assert order[0] == best
    groups = [{MEASURED: 0, NO_LEVEL: 1, LOAD_FAILED: 2, RUN_FAILED: 2}[results[i].outcome] for i in order]
    assert groups == sorted(groups)
