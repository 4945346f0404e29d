"""The deployable result of `loadgen tune`: best/model_repository, the user's repository with the
winning configurations written out as config.pbtxt files and everything else linked.

A changed model's config.pbtxt is the user's own file given the winning settings
(loadgen.knobs.apply_settings), so what Triton fills in when it loads a model (default fields,
instance group names) is not written into it; the file's comments are not kept (the protobuf text
format drops them), a first comment line says where it came from instead. Every other file and
folder is an absolute symbolic link into the user's repository, or a copy where links cannot be
made. Without a repository (a server given with -u) only the configurations are written, one
folder per model, as the server had them loaded.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from loadgen.errors import UsageError
from loadgen.knobs import ModelConfig, apply_settings, parse_pbtxt, settings_of, to_pbtxt

BEST_REPOSITORY = "model_repository"
CONFIG_FILE = "config.pbtxt"


def best_config_text(config: ModelConfig, own_file: Path | None) -> str:
    """The config.pbtxt for a model loaded with `config`: its own file (`own_file`) given the same
    settings, or `config` whole when there is no file."""
    settings = settings_of(config)
    if own_file is None:
        origin, written = "the configuration the server loaded", config
    else:
        origin, written = str(own_file), apply_settings(parse_pbtxt(own_file.read_text(), str(own_file)), settings)
    return f"# Written by loadgen tune from {origin}, with {settings.describe()}\n{to_pbtxt(written)}"


def _link_or_copy(target: Path, link: Path) -> None:
    try:
        link.symlink_to(target, target_is_directory=target.is_dir())
    except OSError:  # a file system without symbolic links
        if target.is_dir():
            shutil.copytree(target, link, symlinks=True)
        else:
            shutil.copy2(target, link)


def _write(source: Path | None, staging: Path, configs: Mapping[str, ModelConfig]) -> None:
    if source is None:
        for model, config in configs.items():
            (staging / model).mkdir()
            (staging / model / CONFIG_FILE).write_text(best_config_text(config, None))
        return
    missing = [model for model in configs if not (source / model).is_dir()]
    if missing:
        raise UsageError(f"model {missing[0]!r} is not in the model repository {source}: check --model-repository")
    for entry in sorted(source.iterdir()):
        if entry.name not in configs:
            _link_or_copy(entry, staging / entry.name)
            continue
        (staging / entry.name).mkdir()
        for item in sorted(entry.iterdir()):
            if item.name != CONFIG_FILE:
                _link_or_copy(item, staging / entry.name / item.name)
        own = entry / CONFIG_FILE
        text = best_config_text(configs[entry.name], own if own.is_file() else None)
        (staging / entry.name / CONFIG_FILE).write_text(text)


def write_best_repository(source: Path | None, dest: Path, configs: Mapping[str, ModelConfig]) -> Path:
    """Writes dest/model_repository from the user's repository `source` (None: only the
    configurations) with `configs` (model -> its winning configuration) and returns its path.
    An earlier one is replaced only once the new one is complete (written beside, then swapped)."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / BEST_REPOSITORY
    staging = Path(tempfile.mkdtemp(prefix=f".{BEST_REPOSITORY}.new-", dir=dest))
    old = None
    try:
        _write(Path(source).resolve() if source is not None else None, staging, configs)
        if final.exists():
            old = final.rename(dest / f".{BEST_REPOSITORY}.old-{uuid.uuid4().hex[:8]}")
        staging.rename(final)
    except BaseException:
        if old is not None and not final.exists():
            old.rename(final)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)  # removes the links, never what they point to
    return final
