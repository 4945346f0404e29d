"""Splitting a level's load among workers, so that together they send exactly what one process would."""

from __future__ import annotations

import math

import numpy as np

from loadgen.schedule import (
    ConcurrencySchedule,
    IntervalSchedule,
    RateSchedule,
    ReplaySchedule,
    Schedule,
)
from loadgen.schedule.sequences import OpenLoopSequenceSchedule, SequenceSchedule
from loadgen.sequences import check_worker_split, split_ids


def split_count(total: int, weights: list[float]) -> list[int]:
    """`total` as whole shares in proportion to `weights` (largest remainders get the rest, the
    first ones on a tie): equal weights give shares that differ by at most one, the larger first."""
    quotas = [total * weight / sum(weights) for weight in weights]
    shares = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda index: shares[index] - quotas[index])
    for index in by_remainder[: total - sum(shares)]:
        shares[index] += 1
    return shares


def worker_seeds(seed: int | None, workers: int) -> list[int | None]:
    """Independent seeds from one: the workers' Poisson streams must not repeat each other,
    or their sum would not be Poisson. Without a seed, each worker draws fresh entropy."""
    if seed is None:
        return [None] * workers
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(workers)]


def split_intervals(intervals_us: list[int], workers: int) -> list[tuple[int, list[int]]]:
    """Deal --request-intervals' sends round robin: (first send after the start, then the gaps in
    a loop) for each worker; merged, they are the sends of the whole list, at the same times."""
    # Over lcm(len, workers) sends the dealing repeats; one more round closes each worker's loop.
    sends = math.lcm(len(intervals_us), workers)
    gaps = np.resize(np.asarray(intervals_us, dtype=np.int64), sends + workers)
    at_us = np.cumsum(gaps)  # send k leaves at at_us[k]
    shares = []
    for index in range(workers):
        mine = at_us[index : sends + workers : workers]
        shares.append((int(mine[0]), np.diff(mine).tolist()))
    return shares


def _firsts(shares: list[int]) -> list[int]:
    """Each worker's first stream: the sequences dealt to the workers before it."""
    return [sum(shares[:k]) for k in range(len(shares))]


def split_schedule(schedule: Schedule, workers: int) -> list[Schedule | None]:
    """Each worker's schedule for a level; None for a worker the level has no load for
    (concurrency 2 over 3 workers). A sequence load's sequences are dealt among the workers, each
    with a disjoint slice of the ids, so that a sequence never spans two; with streams of steps in the
    input data, each worker's first sequences replay the streams one process's would have given them."""
    if isinstance(schedule, SequenceSchedule):
        shares = split_count(schedule.concurrency, [1] * workers)
        plans, seeds = split_ids(schedule.plan, shares), worker_seeds(schedule.seed, workers)
        return [SequenceSchedule(share, plan, seed, schedule.streams, first) if share else None
                for share, plan, seed, first in zip(shares, plans, seeds, _firsts(shares))]  # fmt: skip
    if isinstance(schedule, OpenLoopSequenceSchedule):
        check_worker_split(schedule.sequences, workers)
        shares = split_count(schedule.sequences, [1] * workers)
        plans, seeds = split_ids(schedule.plan, shares), worker_seeds(schedule.seed, workers)
        pacings = split_schedule(schedule.pacing, workers)
        return [OpenLoopSequenceSchedule(pacing, share, schedule.serial, plan, seed, schedule.streams, first)
                for pacing, share, plan, seed, first in zip(pacings, shares, plans, seeds, _firsts(shares))]  # fmt: skip
    if isinstance(schedule, ConcurrencySchedule):
        return [ConcurrencySchedule(share) if share else None for share in split_count(schedule.concurrency, [1] * workers)]
    if isinstance(schedule, RateSchedule):
        return [
            RateSchedule(schedule.rate_per_s / workers, schedule.distribution, worker_seed)
            for worker_seed in worker_seeds(schedule.seed, workers)
        ]
    if isinstance(schedule, IntervalSchedule):
        return [IntervalSchedule(gaps_us, first_us) for first_us, gaps_us in split_intervals(schedule.intervals_us, workers)]
    if isinstance(schedule, ReplaySchedule):
        # Dealt round robin, each request at its own time (and the passes at the recording's period): merged, the recording.
        shares = [schedule.entries[index::workers] for index in range(workers)]
        return [ReplaySchedule(share, schedule.period_ns, schedule.speed, schedule.loop) if share else None for share in shares]
    raise TypeError(f"no way to split a {type(schedule).__name__} among workers")
