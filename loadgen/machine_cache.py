"""Figures measured once per machine and kept between runs (the CPU roof, a model's direct timing): a JSON
file of entries by key under `$XDG_CACHE_HOME/loadgen` (or `~/.cache/loadgen`). A missing, corrupt or
unwritable file is never an error: what it would have held is measured again.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib.metadata import version
from pathlib import Path


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key() -> str:
    """What a measured figure depends on besides its own settings: the CPU, its cores, the runtime that ran it."""
    return f"{cpu_model_name()}|{os.cpu_count()} logical cores|onnxruntime {version('onnxruntime')}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loadgen"


def read_entries(path: Path) -> dict:
    """The cache's entries; {} when missing or unreadable (it is measured again and rewritten, not an error)."""
    try:
        entries = json.loads(path.read_text()).get("entries")
    except (OSError, ValueError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def write_entries(path: Path, entries: dict) -> None:
    """Atomically, so that two runs measuring at once leave a whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"entries": entries}, out, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
