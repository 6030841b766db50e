"""Paths in a run config are relative to the config file, not to the directory a command happens to run in.

    cfg = resolve_paths(data, config_dir)        # task.path: data/x.bin  ->  /home/me/proj/configs/data/x.bin
    resolve_path("weights/", config_dir)         # one value: what a new path key (model.pretrained) calls

``orthoscope train CONFIG`` and ``load_config(CONFIG)`` resolve the paths written in the file against the file's
folder; a path given as a ``key=value`` override was typed at the shell, so it resolves against the working
directory, as does a config given only as data (``Run.from_config(dict)``, which has no file). Absolute paths and
``~`` (the home folder) are kept as they are; resolved paths are absolute, so the config a run directory records
names the same files from wherever it is read.

Which keys are paths (``PATH_KEYS``, by name, in the ``task`` section — ``task.task`` under ``TokenTask`` — and the
``model`` section): ``path`` (TokenFile's token file, TinyLang's text file), ``pretrained`` (local Hugging Face
weights), and any key ending in ``_path``, ``_dir`` or ``_file``. An argument added to a task or model under such a
name is resolved with no change here.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

PATH_KEYS = ("path", "pretrained")
PATH_SUFFIXES = ("_path", "_dir", "_file")
SECTIONS = ("task", "model")


def is_path_key(key) -> bool:
    return isinstance(key, str) and (key in PATH_KEYS or key.endswith(PATH_SUFFIXES))


def resolve_path(value, base):
    """``value`` (a path string) made absolute against the folder ``base``; ``~`` expanded; an absolute path, an
    empty string and anything that is not a string (null: no file) are returned as they are."""
    if not isinstance(value, str) or not value:
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(os.path.join(os.path.abspath(base), expanded))


def resolve_paths(cfg, base):
    """A copy of the config data ``cfg`` with every path key of its sections (module docstring) resolved against
    ``base``; anything that is not a mapping is returned unchanged (the format's checks name it later)."""
    if not isinstance(cfg, dict):
        return cfg
    out = copy.deepcopy(cfg)
    for section in SECTIONS:
        spec = out.get(section)
        while isinstance(spec, dict):
            for key, value in spec.items():
                if is_path_key(key):
                    spec[key] = resolve_path(value, base)
            spec = spec.get("task") if section == "task" else None       # TokenTask nests the task it wraps
    return out


def config_folder(config_path) -> Path:
    """The folder a config file's relative paths start from."""
    return Path(os.path.abspath(config_path)).parent
