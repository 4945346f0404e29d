"""A sweep of several models at once: each model's Sweep, driven level by level on one clock."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic_ns

from loadgen.errors import WorkerLost
from loadgen.listener import RunListener
from loadgen.measurement import measure_levels
from loadgen.mix import MixConfig
from loadgen.profile_export import epoch_offset_ns
from loadgen.result import COMPLETE, RUNNING, RunResult
from loadgen.sweep import Sweep, _now, environment
from loadgen.transport.base import Transport


class MixSweep:
    """The models of a mix, each with its Sweep (its prepared requests, its levels); the run's levels
    step every model's range together, and each level's windows close together for all of them, so
    the server's statistics and metrics describe the same interval for each model.

    It offers what the runner asks of a Sweep: `result()` at any time holds the levels finished.
    """

    def __init__(self, mix: MixConfig, sweeps: Sequence[Sweep]) -> None:
        self.config = mix.first
        self.mix = mix
        self.sweeps = tuple(sweeps)
        self.stop_reason: str | None = None
        self.measuring: str | None = None
        self.warnings: list[str] = []
        self.started_at = _now()
        self.started_ns = monotonic_ns()
        offset_ns = epoch_offset_ns()
        for sweep in self.sweeps:  # one clock: every model's times count from the run's start, exported by one offset
            sweep.started_at, sweep.started_ns = self.started_at, self.started_ns
            sweep.load.use_epoch_offset(offset_ns)

    @classmethod
    async def open(cls, mix: MixConfig, transports: Sequence[Transport]) -> MixSweep:
        """Read each model and build every request it will send, over its own transport. With
        --workers, each model's load is split over N workers of its own, each asking Ray for 1/M of
        a CPU (M models): the mix takes the N CPUs one model's workers would."""
        sweeps: list[Sweep] = []
        try:
            for run, transport in zip(mix.runs, transports):
                sweeps.append(await Sweep.open(run, transport, worker_cpus=1 / len(mix.runs)))
        except BaseException:
            await cls._close(sweeps)
            raise
        return cls(mix, sweeps)

    @property
    def levels(self) -> list:
        """The run's finished levels (each model has measured as many)."""
        return self.sweeps[0].levels

    async def start_metrics(self, url: str, listener: RunListener) -> None:
        """One scraper for the server, shared by every model's levels."""
        first = self.sweeps[0]
        await first.start_metrics(url, listener, self._model_configs(self.sweeps))
        for sweep in self.sweeps[1:]:
            sweep.scraper = first.scraper

    async def stop_metrics(self) -> None:
        first = self.sweeps[0]
        await first.stop_metrics()
        self.warnings += first.warnings
        first.warnings.clear()

    async def start_tracing(self, listener: RunListener) -> None:
        """A mix is not traced (loadgen.mix refuses the options)."""

    async def stop_tracing(self, listener: RunListener) -> None:
        """A mix is not traced."""

    async def close(self) -> None:
        await self._close(self.sweeps)

    @staticmethod
    async def _close(sweeps: Sequence[Sweep]) -> None:
        """The last opened first: the first model's workers started Ray (with --workers), and stop it."""
        for sweep in reversed(sweeps):
            await sweep.close()

    async def run(self, listener: RunListener) -> None:
        """Measure every level of the mix, each model at its value of the level; stop after the first
        level where a model's latency is over its -l."""
        first = self.sweeps[0]
        for index in range(self.mix.level_count):
            schedules = [sweep.schedule(value) for sweep, value in zip(self.sweeps, self.mix.values(index))]
            self.measuring = f"level {index + 1} (" + ", ".join(
                f"{sweep.config.target.model_name} at {schedule.label.lower()} {schedule.value:g}"
                for sweep, schedule in zip(self.sweeps, schedules)) + ")"  # fmt: skip
            for sweep, schedule in zip(self.sweeps, schedules):
                listener.level_started(schedule, sweep.load)
            parts = [sweep.part(schedule, listener) for sweep, schedule in zip(self.sweeps, schedules)]
            measured = await measure_levels(parts, self.config.windows, first.snapshot, first.scraper)
            levels = [sweep.judged(level) for sweep, level in zip(self.sweeps, measured)]
            during, self.measuring = self.measuring, None
            so_far = self.result(RUNNING)
            for level in levels:
                listener.level_finished(level, so_far)
            if levels[0].incomplete is not None:
                raise WorkerLost(f"{levels[0].incomplete} during {during}: the level is kept, marked incomplete")
            for sweep, level in zip(self.sweeps, levels):
                if (breach := sweep.latency_breach(level)) is not None:
                    self.stop_reason = f"{sweep.config.target.model_name}: {breach} at level {index + 1}"
                    return

    @staticmethod
    def _model_configs(parts: Sequence[Sweep | RunResult]) -> dict[str, dict]:
        """Every model's configuration, and its composing models'."""
        return {name: config for part in parts for name, config in part.model_configs.items()}

    def result(self, status: str = COMPLETE) -> RunResult:
        """The run: each model's part (its config, model and levels) in `mix`; the top level holds what
        they share (the first model's config and model stand for the run's options)."""
        parts = tuple(sweep.result(status) for sweep in self.sweeps)
        first = parts[0]
        return RunResult(
            config=self.config,
            model=first.model,
            server_metadata=first.server_metadata,
            model_configs=self._model_configs(parts),
            levels=(),
            started_at=self.started_at,
            finished_at=_now(),
            started_ns=self.started_ns,
            stop_reason=self.stop_reason,
            status=status,
            warnings=tuple(self.warnings),
            environment=environment(),
            metrics_series=first.metrics_series,
            mix=parts,
        )
