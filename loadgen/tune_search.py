"""Which configurations `loadgen tune` measures, in which order, and which one it names best.

A search hands out one `Proposal` at a time (`next()`) and is told what it measured
(`record()`); it never loads, measures or waits itself. Both searches are deterministic
functions of the results recorded, so a resumed tune replays its recorded results through the
same calls and gets the same proposals back.

- `GridSearch`: the repository's own configuration, then every combination of the spaces.
- `GuidedSearch`: from the repository's own configuration, relieve the stage that takes most of
  the ensemble's time, keep a change only when `improves` says it beat the noise.

The table helpers (`pareto_front`, `leaders`, `best_index`, `ranking`) are pure functions of the
results.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from loadgen.errors import UsageError
from loadgen.knobs import Candidate, KnobSpace, StageSettings, candidate_key
from loadgen.tune_result import LOAD_FAILED, MEASURED, NO_LEVEL, RUN_FAILED, CandidateResult

START_REASON = "the repository's own configuration"


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    reason: str  # what changed and why, for the table and the HTML page


class Search(Protocol):
    """The orchestrator's loop: `while (p := search.next()) and budget left: search.record(measure(p))`."""

    stop_reason: str | None  # why next() answered None; None until it has

    def next(self) -> Proposal | None: ...

    def record(self, result: CandidateResult) -> None: ...


class _Handout:
    """One proposal out at a time, and its result checked against it: a resumed tune whose
    recorded candidates differ from what the search proposes was started with other options."""

    def __init__(self) -> None:
        self._outstanding: Proposal | None = None
        self.recorded = 0

    def ensure_free(self) -> None:
        if self._outstanding is not None:
            raise RuntimeError("next() called again before the last proposal's result was recorded")

    def hand_out(self, proposal: Proposal) -> Proposal:
        self.ensure_free()
        self._outstanding = proposal
        return proposal

    def take(self, result: CandidateResult) -> None:
        proposal = self._outstanding
        if proposal is None:
            raise RuntimeError("record() called with no proposal handed out")
        if result.settings != proposal.candidate:
            raise UsageError(f"candidate {self.recorded} ({result.key}) is not the one the search proposes "
                             f"({candidate_key(proposal.candidate)}): "
                             "resume with the options the tune was started with")  # fmt: skip
        self._outstanding = None
        self.recorded += 1


def _check_spaces(spaces: Mapping[str, KnobSpace], start: Candidate) -> None:
    models = [model for model, _ in start]
    if sorted(models) != sorted(spaces):
        raise ValueError(f"the start names {models}, the spaces {list(spaces)}")


class GridSearch:
    """The start first, then every combination of each model's `space.settings()` in step order
    (itertools.product's order: the first model changes slowest), skipping the start, at most
    `max_candidates` in all."""

    def __init__(self, spaces: Mapping[str, KnobSpace], start: Candidate, max_candidates: int) -> None:
        _check_spaces(spaces, start)
        self._start = start
        self._max_candidates = max_candidates
        models = [model for model, _ in start]
        grids = [spaces[model].settings() for model in models]
        normalized_start = tuple((model, settings.normalized()) for model, settings in start)
        start_in_grid = all(settings in grid for (_, settings), grid in zip(normalized_start, grids, strict=True))
        self._size = math.prod(len(grid) for grid in grids) + (0 if start_in_grid else 1)  # candidates, the start included
        self._combinations: Iterator[Candidate] = (
            candidate for candidate in (tuple(zip(models, combination, strict=True)) for combination in itertools.product(*grids))
            if candidate != normalized_start
        )  # fmt: skip
        self._handout = _Handout()
        self._handed = 0
        self.stop_reason: str | None = None

    def next(self) -> Proposal | None:
        self._handout.ensure_free()
        total = min(self._size, self._max_candidates)
        if self._handed >= total:
            if self._handed >= self._size:
                self.stop_reason = f"every combination measured ({self._size} with the start)"
            else:
                self.stop_reason = f"--max-candidates {self._max_candidates} reached ({self._size} candidates in the grid)"
            return None
        if self._handed == 0:
            proposal = Proposal(self._start, START_REASON)
        else:
            proposal = Proposal(next(self._combinations), f"grid combination {self._handed + 1} of {total}")
        self._handout.hand_out(proposal)
        self._handed += 1
        return proposal

    def record(self, result: CandidateResult) -> None:
        self._handout.take(result)


def _throughput(result: CandidateResult) -> float:
    """What the searches compare: the first measurement within the bounds (re-measurements of the
    leaders come after the search and must not change a replay); 0 for any other outcome."""
    if result.outcome != MEASURED or result.throughput_infer_per_s is None:
        return 0.0
    return result.throughput_infer_per_s


def improves(new: CandidateResult, current: CandidateResult, min_gain: float) -> bool:
    """The noise rule: `new` beats `current` when its throughput within the bounds exceeds
    current's by more than the larger of `min_gain` and the two measurements' window-to-window
    spreads, relatively: new > current x (1 + max(min_gain, spread_new, spread_current)).
    A result that failed to load, failed to run or met no level counts as throughput 0: it never
    beats anything, and any measured throughput beats it."""
    new_throughput, current_throughput = _throughput(new), _throughput(current)
    if new_throughput <= 0:
        return False
    if current_throughput <= 0:
        return True
    threshold = max(min_gain, new.spread or 0.0, current.spread or 0.0)
    return new_throughput > current_throughput * (1 + threshold)


def stage_ranking(result: CandidateResult, models: Sequence[str]) -> list[str]:
    """The composing models by their share of the ensemble's time in `result`, the largest first;
    ties, and models without figures (after those with), in step order."""
    times = result.stage_time_us
    return sorted(models, key=lambda model: (model not in times, -times.get(model, 0.0), models.index(model)))


def _share_text(model: str, result: CandidateResult) -> str:
    times = result.stage_time_us
    if model not in times:
        return f"{model} (no per-stage figures)"
    total = sum(times.values())
    share = times[model] / total if total > 0 else 0.0
    return f"{model} took {share:.0%} of the ensemble's time ({times[model] / 1000:.1f} ms per request)"


def _next_larger(values: Sequence[int], current: int) -> int | None:
    return min((value for value in values if value > current), default=None)


def relieving_changes(settings: StageSettings, space: KnobSpace) -> list[tuple[StageSettings, str]]:
    """The changes that relieve one model, each one knob away from `settings`, in the order tried:
    for a model that batches, dynamic batching on (the space's smallest queue delay, no preferred
    size) or, when on, the next larger queue delay, the next preferred batch size and the next
    larger maximum batch size; then more instances. Only those inside the space."""
    changes: list[tuple[StageSettings, str]] = []
    if settings.max_batch_size > 0 and not settings.dynamic_batching:
        preferred = () if () in space.preferred_batch_size else space.preferred_batch_size[0]
        delay = min(space.max_queue_delay_us)
        changes.append((replace(settings, dynamic_batching=True, max_queue_delay_us=delay, preferred_batch_size=preferred),
                        f"dynamic batching on (queue delay {delay} us)"))  # fmt: skip
    elif settings.max_batch_size > 0:
        delay = _next_larger(space.max_queue_delay_us, settings.max_queue_delay_us)
        if delay is not None:
            changes.append((replace(settings, max_queue_delay_us=delay),
                            f"a longer queue delay ({settings.max_queue_delay_us} -> {delay} us)"))  # fmt: skip
        sizes = space.preferred_batch_size
        if len(sizes) > 1:
            after = sizes.index(settings.preferred_batch_size) + 1 if settings.preferred_batch_size in sizes else 0
            if after < len(sizes):
                text = f"preferred batch size {list(settings.preferred_batch_size)} -> {list(sizes[after])}"
                changes.append((replace(settings, preferred_batch_size=sizes[after]), text))
        if len(space.max_batch_size) > 1:
            larger = _next_larger(space.max_batch_size, settings.max_batch_size)
            if larger is not None:
                changes.append((replace(settings, max_batch_size=larger),
                                f"a larger max batch size ({settings.max_batch_size} -> {larger})"))  # fmt: skip
    instances = _next_larger(space.instances, settings.instances)
    if instances is not None:
        more = "one more instance" if instances == settings.instances + 1 else "more instances"
        changes.append((replace(settings, instances=instances), f"{more} ({settings.instances} -> {instances})"))
    allowed = set(space.settings())
    return [(changed.normalized(), text) for changed, text in changes if changed.normalized() in allowed]


def _with(candidate: Candidate, model: str, settings: StageSettings) -> Candidate:
    return tuple((name, settings if name == model else own) for name, own in candidate)


@dataclass(frozen=True)
class _Planned:
    proposal: Proposal
    change: str  # "centernet: one more instance (1 -> 2)", for a follow-up's reason


class GuidedSearch:
    """Hill climbing on the stage that dominates the ensemble's time.

    The start first. Then rounds: the composing models are ranked by their stage time in the
    current best result (queue + compute per request, the largest first); a round proposes the
    untried `relieving_changes` of one model, each applied alone to the current best. When the
    round is measured, its best result (failed or no level: throughput 0; ties: the first
    proposed) becomes the current best if it `improves` on it, and the next round starts again
    from the top of the new ranking. Otherwise the next round relieves the next model in the
    ranking, with the same current best; the search stops when no model is left.

    Two stages that limit together (their times equal) defeat single changes: relieving either
    leaves the other one limiting, so nothing improves. So when no result of a round improves,
    the search follows the best one that held the current throughput (the current does not
    `improve` on it) and moved the dominant stage to a model not yet relieved in this chain: it
    relieves that model on top of it (two changes or more at once), judged against the current
    best like any round. At most one follow-up per round, so a chain is shorter than the number
    of models.
    """

    def __init__(self, spaces: Mapping[str, KnobSpace], start: Candidate, min_gain: float = 0.05) -> None:
        _check_spaces(spaces, start)
        self._spaces = spaces
        self._start = start
        self._models = [model for model, _ in start]
        self._min_gain = min_gain
        self._handout = _Handout()
        self._tried: set[Candidate] = set()
        self._current: CandidateResult | None = None
        self._ranking: list[str] = []
        self._position = 0  # the model of _ranking the next round relieves
        self._pending: list[_Planned] = []  # the round's proposals not yet handed out
        self._measured: list[tuple[_Planned, CandidateResult]] = []  # the round's results so far
        self._round_size = 0
        self._chain: tuple[str, ...] = ()  # the changes a follow-up builds on ("model: change")
        self._chain_models: tuple[str, ...] = ()
        self._follow: CandidateResult | None = None  # the result the next round builds on, when following
        self._proposed_since_current = 0
        self._in_flight: _Planned | None = None
        self.stop_reason: str | None = None

    def next(self) -> Proposal | None:
        self._handout.ensure_free()
        if not self._tried:
            return self._hand_out(_Planned(Proposal(self._start, START_REASON), ""))
        while not self._pending:
            if self.stop_reason is not None or not self._plan_round():
                return None
        return self._hand_out(self._pending.pop(0))

    def _hand_out(self, planned: _Planned) -> Proposal:
        self._handout.hand_out(planned.proposal)
        self._tried.add(planned.proposal.candidate)
        self._in_flight = planned
        return planned.proposal

    def record(self, result: CandidateResult) -> None:
        self._handout.take(result)
        if self._current is None:
            self._set_current(result)
            return
        self._measured.append((self._in_flight, result))
        if len(self._measured) == self._round_size:
            self._close_round()

    def _set_current(self, result: CandidateResult) -> None:
        self._current = result
        self._ranking = stage_ranking(result, self._models)
        self._position = 0
        self._proposed_since_current = 0

    def _plan_round(self) -> bool:
        """The next round's proposals into _pending; False (and stop_reason) when nothing is left."""
        assert self._current is not None
        if self._follow is not None:
            base, self._follow = self._follow, None
            model = stage_ranking(base, self._models)[0]
            after = "; ".join(self._chain)
            planned = self._round(base, model, f"after {after}, {_share_text(model, base)}", " as well")
            if planned:
                self._start_round(planned, chain_models=(*self._chain_models, model))
                return True
            self._position += 1
        while self._position < len(self._ranking):
            model = self._ranking[self._position]
            planned = self._round(self._current, model, _share_text(model, self._current), "")
            if planned:
                self._chain = ()
                self._start_round(planned, chain_models=(model,))
                return True
            self._position += 1
        self.stop_reason = ("no change to any model raised the throughput by more than the noise"
                            if self._proposed_since_current else "nothing untried is left")  # fmt: skip
        return False

    def _round(self, base: CandidateResult, model: str, why: str, tail: str) -> list[_Planned]:
        """The untried relieving changes of `model`, each applied to `base` alone."""
        planned = []
        for changed, change in relieving_changes(dict(base.settings)[model], self._spaces[model]):
            candidate = _with(base.settings, model, changed)
            if candidate not in self._tried:
                planned.append(_Planned(Proposal(candidate, f"{why}: {change}{tail}"), f"{model}: {change}"))
        return planned

    def _start_round(self, planned: list[_Planned], chain_models: tuple[str, ...]) -> None:
        self._pending = planned
        self._round_size = len(planned)
        self._measured = []
        self._chain_models = chain_models
        self._proposed_since_current += len(planned)

    def _close_round(self) -> None:
        assert self._current is not None
        current = self._current
        best = max(self._measured, key=lambda pair: _throughput(pair[1]))[1]  # max keeps the first of equals
        if improves(best, current, self._min_gain):
            self._chain, self._chain_models = (), ()
            self._set_current(best)
            return
        followable = [
            (planned, result) for planned, result in self._measured
            if result.stage_time_us and not improves(current, result, self._min_gain)
            and stage_ranking(result, self._models)[0] not in self._chain_models
        ]  # fmt: skip
        if followable:
            planned, self._follow = max(followable, key=lambda pair: _throughput(pair[1]))
            self._chain = (*self._chain, planned.change)
        else:
            self._chain, self._chain_models = (), ()
            self._position += 1


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (throughput, p99_ms) points no other point dominates (at least the
    throughput and at most the p99, better in one), sorted by throughput then index."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], points[i][1]))
    front: list[int] = []
    lowest_above = math.inf  # the lowest p99 among points of a strictly higher throughput
    for _, group in itertools.groupby(order, key=lambda i: points[i][0]):
        members = list(group)
        lowest = points[members[0]][1]  # the group's lowest p99 (sorted by p99 within it)
        front.extend(i for i in members if points[i][1] == lowest and lowest < lowest_above)
        lowest_above = min(lowest_above, lowest)
    return sorted(front, key=lambda i: (points[i][0], i))


def leaders(results: Sequence[CandidateResult], k: int = 3) -> list[int]:
    """Indices of the k measured candidates of the highest throughput (ties: the earlier first):
    the ones the orchestrator measures again before naming the best."""
    measured = [i for i, result in enumerate(results) if _throughput(result) > 0]
    return sorted(measured, key=lambda i: (-_throughput(results[i]), i))[:k]


def best_index(results: Sequence[CandidateResult]) -> int | None:
    """The measured candidate of the highest mean throughput (its first measurement and the
    re-measurements); the earlier of equals; None when none was measured."""
    measured = [i for i, result in enumerate(results) if _throughput(result) > 0]
    return min(measured, key=lambda i: (-(results[i].mean_throughput_infer_per_s or 0.0), i), default=None)


_TABLE_GROUP = {MEASURED: 0, NO_LEVEL: 1, LOAD_FAILED: 2, RUN_FAILED: 2}


def ranking(results: Sequence[CandidateResult]) -> list[int]:
    """Every candidate's index in table order: measured by mean throughput descending, then those
    with no level within the bounds, then those that failed to load or run; each by index."""

    def key(i: int) -> tuple[int, float, int]:
        result = results[i]
        group = _TABLE_GROUP[result.outcome]
        throughput = result.mean_throughput_infer_per_s if group == 0 else None
        return (group, -(throughput or 0.0), i)

    return sorted(range(len(results)), key=key)
