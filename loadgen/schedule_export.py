"""`loadgen export-schedule`: a run's per-request export (--profile-export-file, docs/profile_export.md)
turned into a --schedule-file (loadgen.replay), so that replaying it sends what the run sent, when it sent it.

Each request of every experiment becomes one line, in time order: `offset_ms` from the first
request's time, where a request's time is when it was due (`intended_timestamp`, open loop) or,
without one (closed loop, or perf_analyzer's own export), when it was sent (`timestamp`). Failed
requests were sent too and are kept. The export has no model or batch size: from a report folder,
its summary.json gives them (`model`, and `batch_size` when it is not 1); from the export file
alone, the lines name neither, and the replaying run's apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError


def export_source(source: Path) -> tuple[Path, str | None, int | None]:
    """(the export file, the run's model, its batch size) for a report folder or an export file;
    a folder's run must have written an export (its summary.json records where)."""
    source = Path(source)
    if not source.is_dir():
        return source, None, None
    # Imported here: it brings in the plotting, which an export file does not need.
    from loadgen.report.render import load_summary

    config = load_summary(source).config
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
    return found, config.target.model_name, config.inputs.batch_size


def schedule_lines(export: Any, source: str, model: str | None = None, batch_size: int | None = None) -> Iterator[str]:
    """The schedule file's lines for a profile export's parsed JSON (module docstring)."""
    times_ns = sorted(_request_times_ns(export, source))
    if not times_ns:
        raise UsageError(f"{source} holds no requests: export a run that measured at least one window")
    extra = {}
    if model is not None:
        extra["model"] = model
    if batch_size not in (None, 1):
        extra["batch_size"] = batch_size
    first_ns = times_ns[0]
    for at_ns in times_ns:
        yield json.dumps({"offset_ms": (at_ns - first_ns) / 1e6, **extra})


def _request_times_ns(export: Any, source: str) -> Iterator[int]:
    experiments = export.get("experiments") if isinstance(export, dict) else None
    if not isinstance(experiments, list):
        raise UsageError(f"{source} is not a profile export: it has no \"experiments\" list (docs/profile_export.md)")
    for number, experiment in enumerate(experiments):
        requests = experiment.get("requests") if isinstance(experiment, dict) else None
        if not isinstance(requests, list):
            raise UsageError(f"{source}: experiment {number} has no \"requests\" list: is it a profile export?")
        for request in requests:
            at_ns = request.get("intended_timestamp") if isinstance(request, dict) else None
            if at_ns is None and isinstance(request, dict):
                at_ns = request.get("timestamp")
            if not isinstance(at_ns, int) or isinstance(at_ns, bool):
                raise UsageError(f"{source}: a request of experiment {number} has no timestamp in ns: is it a profile export?")
            yield at_ns


def export_schedule(source: Path) -> list[str]:
    """`loadgen export-schedule RUN_DIR_OR_EXPORT.json`: the schedule file's lines."""
    path, model, batch_size = export_source(source)
    try:
        export = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}: give a report folder or its --profile-export-file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: give a --profile-export-file JSON") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not whole JSON (line {exc.lineno}): a run killed with SIGKILL leaves its export "
                         "cut short; give a finished run's") from None  # fmt: skip
    return list(schedule_lines(export, str(path), model, batch_size))
