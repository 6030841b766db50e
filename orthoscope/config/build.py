"""A ``Run`` from its config and back: ``build_run(cfg)``, ``from_config(cfg, overrides)`` and ``run_config(run)``
(the format: ``orthoscope.config.format``; the task, model and probe sections: ``orthoscope.config.specs``).

``Run.from_config`` and ``run.config`` call these. They live here, one floor above ``Run``, because describing and
rebuilding a run needs every task, model and method; the package root hands them to ``Run``
(``orthoscope/__init__.py``), so ``orthoscope.training.run`` never imports this module."""
from __future__ import annotations

import copy
import json

from ..methods.losses import LOSSES
from ..methods.schedules import LRSchedule, add_schedule, check_schedule
from ..training.run import Run
from .format import (DEFAULTS, ConfigError, _check_loss, apply_overrides, bounded, construct, method_classes,
                     normalize)
from .exact import describe_method, verify
from .shapes import check_model_fits_task
from .specs import build_model, build_probes, build_task, describe_model, describe_probes, describe_task


def build_run(cfg: dict):
    """``Run`` from a config (module docstring). Every section is checked before the model is built, and the model
    against the task before the run is."""
    cfg = normalize(cfg)
    check_schedule(cfg["schedule"])
    _check_loss(cfg["loss"])
    task = build_task(cfg["task"], cfg["device"])
    method = construct(cfg["method"], method_classes(), "method")
    model = build_model(cfg["model"], task, cfg["seed"], cfg["device"])
    check_model_fits_task(model, task, cfg["model"])        # before any step (orthoscope.config.shapes)
    probes = build_probes(cfg["probes"], model)
    run = Run(model, task, method, loss=cfg["loss"], probes=probes, seed=cfg["seed"], name=cfg["name"])
    if cfg["schedule"] is not None:
        add_schedule(run, **{**cfg["schedule"], "total": cfg["schedule"].get("total") or cfg["steps"]})
    run.grad_accum = cfg["grad_accum"]
    run.config_extra = {"steps": cfg["steps"], "checkpoint": cfg["checkpoint"], "device": cfg["device"],
                        "probes_spec": cfg["probes"]}
    return run


def from_config(cfg: dict, overrides=()) -> Run:
    """The run a config describes, with ``key.path=value`` overrides; checked before anything is built."""
    return build_run(apply_overrides(cfg, list(overrides)))


def run_config(run) -> dict:
    """The config that rebuilds ``run`` exactly (module docstring), checked against the run it builds
    (``orthoscope.config.exact``); a ``ConfigError`` names what cannot be expressed and the first difference."""
    extra = getattr(run, "config_extra", {})
    if type(run.method).__name__ not in method_classes():
        raise ConfigError(f"method {type(run.method).__name__} is not a method of the orthoscope package")
    method_spec = describe_method(run)
    loss = [name for name, fn in LOSSES.items() if fn is run.loss_fn]
    if not loss:
        raise ConfigError(f"loss {bounded(run.loss_fn)} is a custom callable, which a config cannot express; "
                          f"use one of {sorted(LOSSES)}")
    schedules = [iv for iv in run.interventions if isinstance(iv, LRSchedule)]
    cfg = {"name": run.name if run.name != run.method.label() else None, "seed": run.seed,
           "steps": extra.get("steps", DEFAULTS["steps"]), "grad_accum": getattr(run, "grad_accum", 1),
           "device": extra.get("device", "cpu"),
           "task": describe_task(run.task), "model": describe_model(run.model, run.seed),
           "method": method_spec, "loss": loss[0], "schedule": schedules[0].spec() if schedules else None,
           "probes": extra.get("probes_spec") or describe_probes(run.probes),
           "checkpoint": extra.get("checkpoint", copy.deepcopy(DEFAULTS["checkpoint"]))}
    json.dumps(cfg)                                   # a config is JSON data by construction
    verify(run, normalize(cfg))                       # the run it builds is this one, or a ConfigError says where
    return cfg
