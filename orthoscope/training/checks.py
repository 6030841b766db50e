"""What ``Run`` checks before anything is built or trained: its arguments, the first forward, an override.

Each error names the argument, the value and what is allowed (single numbers: ``orthoscope.core.validate``)."""
from __future__ import annotations

import numbers

import torch
from torch import nn

from ..methods.base import Method
from ..core.validate import check_number


def check_run_arguments(model, task, method, probes, seed, name) -> None:
    """What ``Run(model, task, method, probes=…, seed=…, name=…)`` needs, checked before anything is built."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"Run(model=...): model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}")
    if not callable(getattr(task, "batch", None)) or not callable(getattr(task, "eval_sets", None)):
        raise TypeError(f"Run(task=...): task must be an orthoscope task (with batch(generator) and eval_sets()), "
                        f"got {type(task).__name__} {task!r:.60}")
    if method is not None and not isinstance(method, Method):
        hint = " (a method is an object: AdamW(lr=1e-3), POET(block=32), ...)" if isinstance(method, str) else ""
        raise TypeError(f"Run(method=...): method must be an orthoscope method, got {type(method).__name__} "
                        f"{method!r:.60}{hint}")
    if probes is not None:
        if isinstance(probes, (str, bytes)) or not hasattr(probes, "__iter__"):
            raise TypeError(f"Run(probes=...): probes must be a list of probes, got {type(probes).__name__} "
                            f"{probes!r:.60}")
        for i, probe in enumerate(probes):
            if not callable(probe) or not isinstance(getattr(probe, "every", None), numbers.Integral):
                raise TypeError(f"Run(probes=...): probes[{i}] must be a probe (callable with an integer .every), "
                                f"got {type(probe).__name__} {probe!r:.60}")
    check_number("Run(seed=...)", seed, low=0, high=2 ** 63 - 1, integer=True)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"Run(name=...): name must be a string or None, got {type(name).__name__} {name!r:.60}")


def check_model_fits_task(model: nn.Module, task, x, y):
    """The first forward of a run: an input the model cannot embed, or an output width that is not the task's
    number of classes, is named with both sizes. Returns the model's output."""
    try:
        out = model(x)
    except IndexError as e:
        vocab = getattr(task, "vocab_size", None)
        top = int(x.max()) if not x.is_floating_point() and x.numel() else None
        raise ValueError(f"model {type(model).__name__} cannot take task {type(task).__name__}'s inputs: "
                         f"token ids go up to {top}" + (f" (vocab_size {vocab})" if vocab is not None else "")
                         + f", and the model's embedding is smaller ({e})") from e
    n_classes = getattr(task, "n_classes", None)
    classes = isinstance(out, torch.Tensor) and out.is_floating_point() and not y.is_floating_point()
    if classes and isinstance(n_classes, numbers.Integral) and out.shape[-1] != n_classes:
        raise ValueError(f"model {type(model).__name__} outputs {out.shape[-1]} values per example, but task "
                         f"{type(task).__name__} has {n_classes} classes: build the model with "
                         f"{n_classes} outputs")
    return out


def check_override(optimizer: torch.optim.Optimizer, hyperparameters: dict) -> None:
    """``Run.override``/``Run.load(override=...)``: names every parameter group has, with finite number values."""
    if not isinstance(hyperparameters, dict):
        raise TypeError(f"override must be a dict of hyperparameters, e.g. {{'lr': 1e-4}}, got "
                        f"{type(hyperparameters).__name__}")
    valid = sorted(set.intersection(*(set(g) - {"params"} for g in optimizer.param_groups)))
    for key, value in hyperparameters.items():
        if key not in valid:
            raise ValueError(f"override: {key!r} is not a hyperparameter of {type(optimizer).__name__}; valid: {valid}")
        check_number(f"override {key}", value, low=0)
