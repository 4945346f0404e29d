"""`loadgen export-schedule`: a run's per-request export (--profile-export-file, docs/profile_export.md)
turned into a --schedule-file (loadgen.replay), so that replaying it sends what the run sent, when it sent it.

Each request of every experiment becomes one line, in time order: `offset_ms` from the first
request's time, where a request's time is when it was due (`intended_timestamp`, open loop) or,
without one (closed loop, or perf_analyzer's own export), when it was sent (`timestamp`). Failed
requests were sent too and are kept. A mix's export names each experiment's model, and each line
names it; one model's export has no model or batch size: from a report folder, its summary.json
gives them (`model`, and `batch_size` when it is not 1; a mix's, each model's batch size); from the
export file alone, the lines name neither, and the replaying run's apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError


def export_source(source: Path) -> tuple[Path, dict[str, int]]:
    """(the export file, each of the run's models' batch size) for a report folder (one model's
    run, or each model of a mix) or an export file (no model known); a folder's run must have
    written an export (its summary.json records where)."""
    source = Path(source)
    if not source.is_dir():
        return source, {}
    # Imported here: it brings in the plotting, which an export file does not need.
    from loadgen.report.render import load_summary

    run = load_summary(source)
    config = run.config
    recorded = config.outputs.profile_export_file
    if recorded is None:
        raise UsageError(f"the run in {source} wrote no --profile-export-file: run it with --profile-export-file FILE.json, "
                         "then give that file or the report folder")  # fmt: skip
    # The path as the run was given it, from wherever it ran: else the file of that name in the folder.
    candidates = [Path(recorded), source / Path(recorded).name]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise UsageError(f"the run in {source} wrote its export to {recorded}, which is not there (nor in {source}): "
                         "give the export file itself")  # fmt: skip
    return found, {part.config.target.model_name: part.config.inputs.batch_size for part in run.parts}


def schedule_lines(export: Any, source: str, batch_sizes: Mapping[str, int] | None = None) -> Iterator[str]:
    """The schedule file's lines for a profile export's parsed JSON (module docstring): each line's
    model is its experiment's (a mix's export), else the run's if `batch_sizes` has one model;
    its batch size is that model's in `batch_sizes`, when not 1."""
    batch_sizes = batch_sizes or {}
    run_model = next(iter(batch_sizes)) if len(batch_sizes) == 1 else None
    requests = sorted(_request_times_ns(export, source), key=lambda request: request[0])
    if not requests:
        raise UsageError(f"{source} holds no requests: export a run that measured at least one window")
    first_ns = requests[0][0]
    for at_ns, model in requests:
        line: dict[str, Any] = {"offset_ms": (at_ns - first_ns) / 1e6}
        model = model or run_model
        if model is not None:
            line["model"] = model
        if batch_sizes.get(model) not in (None, 1):
            line["batch_size"] = batch_sizes[model]
        yield json.dumps(line)


def _request_times_ns(export: Any, source: str) -> Iterator[tuple[int, str | None]]:
    """Each request's time and its experiment's model (None: it names none)."""
    experiments = export.get("experiments") if isinstance(export, dict) else None
    if not isinstance(experiments, list):
        raise UsageError(f"{source} is not a profile export: it has no \"experiments\" list (docs/profile_export.md)")
    for number, experiment in enumerate(experiments):
        requests = experiment.get("requests") if isinstance(experiment, dict) else None
        if not isinstance(requests, list):
            raise UsageError(f"{source}: experiment {number} has no \"requests\" list: is it a profile export?")
        model = experiment.get("model")
        if model is not None and not (isinstance(model, str) and model):
            raise UsageError(f"{source}: experiment {number}'s \"model\" is not a model's name: is it a profile export?")
        for request in requests:
            at_ns = request.get("intended_timestamp") if isinstance(request, dict) else None
            if at_ns is None and isinstance(request, dict):
                at_ns = request.get("timestamp")
            if not isinstance(at_ns, int) or isinstance(at_ns, bool):
                raise UsageError(f"{source}: a request of experiment {number} has no timestamp in ns: is it a profile export?")
            yield at_ns, model


def export_schedule(source: Path) -> list[str]:
    """`loadgen export-schedule RUN_DIR_OR_EXPORT.json`: the schedule file's lines."""
    path, batch_sizes = export_source(source)
    try:
        export = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}: give a report folder or its --profile-export-file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: give a --profile-export-file JSON") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not whole JSON (line {exc.lineno}): a run killed with SIGKILL leaves its export "
                         "cut short; give a finished run's") from None  # fmt: skip
    return list(schedule_lines(export, str(path), batch_sizes))
