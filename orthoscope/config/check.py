"""The checks of a config and its run directory that ``orthoscope train`` makes before anything is written, and
``check_config``: those that need no weights, which the launching process runs before torchrun starts
(``orthoscope.config.launch``) and ``orthoscope train CONFIG --check`` runs alone."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from .format import ConfigError, _check_loss, apply_overrides, bounded, construct, method_classes, normalize
from .paths import config_folder, resolve_paths
from .rundir import extension_problem, latest_checkpoint, run_directory
from .yamlfile import read_config, shown_path, where


def read_checked(config_path, overrides, runs, name):
    """``(cfg, run_dir, located)``: the config file read, its paths resolved (``orthoscope.config.paths``: the
    file's relative to its folder, the overrides' to the working directory), overrides applied, the top level
    checked and the run directory named; ``located()`` is a context that turns a ``ConfigError`` raised inside it
    into the one line that says where the key came from (``FILE:LINE`` or the override)."""
    source = shown_path(config_path)
    data, lines = read_config(config_path)
    overridden = {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}

    @contextlib.contextmanager
    def located():
        try:
            yield
        except ConfigError as e:
            raise ConfigError(where(str(e), source, lines, overridden)) from None

    with located():
        data = resolve_paths(data, config_folder(config_path))
        cfg = normalize(resolve_paths(apply_overrides(data, overrides), Path.cwd()))
        run_dir = run_directory(runs, name, cfg["name"], config_path)
    return cfg, run_dir, located


def directory_problem(config_path, run_dir: Path, before: dict | None, cfg: dict) -> str | None:
    """Why ``cfg`` cannot go into ``run_dir``, whose saved config is ``before`` (``None``: a new run): another
    config, not an extension of it (``rundir.extension_problem``); ``None`` when it can."""
    if before is None or before == cfg:
        return None
    found = latest_checkpoint(run_dir)
    problem = extension_problem(before, cfg, found[0] if found else 0)
    if problem is None:
        return None
    return (f"{shown_path(config_path)}: {bounded(str(run_dir))} holds a run of another config: {problem}; pass "
            "--name for a new run directory")


def check_config(config_path, overrides, runs, name) -> None:
    """Every check ``prepare`` makes that needs no weights; raises the same one-line ``ConfigError``s."""
    from ..methods.schedules import check_schedule
    from .rundir import CONFIG
    from .shapes import check_model_fits_task
    from .specs import build_model, build_probes, build_task

    cfg, run_dir, located = read_checked(config_path, overrides, runs, name)
    with located():
        check_schedule(cfg["schedule"])
        _check_loss(cfg["loss"])
        task = build_task(cfg["task"], "cpu")
        construct(cfg["method"], method_classes(), "method")
        model = _structure(cfg, task, build_model)
        check_model_fits_task(model, task, cfg["model"])
        with torch.random.fork_rng():
            build_probes(cfg["probes"], model)
    saved = run_dir / CONFIG
    problem = directory_problem(config_path, run_dir, read_config(saved)[0] if saved.is_file() else None, cfg)
    if problem:
        raise ConfigError(problem)


def _structure(cfg: dict, task, build_model):
    """The config's model with no weights (built on the ``meta`` device: a 1B Llama costs nothing), or — for a model
    whose construction computes on its weights (a KAN's least-squares init reads values, which ``meta`` has not) —
    built for real on the CPU; the caller's random stream is left where it was either way."""
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                return build_model(cfg["model"], task, cfg["seed"], "meta")
        except ConfigError:
            raise
        except Exception:                   # not a config problem: the construction needs values
            return build_model(cfg["model"], task, cfg["seed"], "cpu")
