"""What ``Run.load`` checks before it changes anything, and the snapshot that makes a load all-or-nothing.

A checkpoint is applied in two phases. ``check_run_checkpoint`` validates every field and tensor the run will use
against the run it goes into (types, ranges, sizes, references, RNG states) and raises ``CheckpointError`` naming the
file and the field. Only then is the state applied, under ``snapshot``/``restore``: if applying still fails (an
intervention refusing its state, say), the run is put back exactly as it was before the call.
"""
from __future__ import annotations

import copy
import math

import torch

from ..core.checkpoint import MAX_STEP, CheckpointError, require
from ..core.history import check_history
from ..tasks.base import check_task_state, load_task_state, task_state

def check_run_checkpoint(path, meta: dict, tensors: dict[str, torch.Tensor], run, override: dict) -> None:
    """Every field of a run checkpoint, checked against ``run`` (see the module docstring)."""
    def fail(field, what):
        raise CheckpointError(f"checkpoint {str(path)!r}: field {field!r} {what}")

    require(path, meta, "step", int, low=0, high=MAX_STEP)
    require(path, meta, "seed", int, low=-2 ** 63, high=2 ** 64 - 1)
    require(path, meta, "last_loss", float, optional=True)
    require(path, meta, "wall_time", float, low=0)
    require(path, meta, "method", dict)
    saved_overrides = require(path, meta, "overrides", dict, optional=True) or {}
    _check_model(path, require(path, meta, "signature", dict), tensors, run, fail)
    _check_optimizer(path, require(path, meta, "optimizer", dict), tensors, run, saved_overrides, set(override), fail)
    check_history(require(path, meta, "history", dict), tensors, fail)
    for name in ("rng.generator", "rng.torch"):
        t = tensors.get(name)
        if t is None or t.dtype != torch.uint8 or t.dim() != 1:
            fail(name, "must be a 1-D uint8 RNG state")
        try:
            torch.Generator().set_state(t)
        except RuntimeError as e:
            fail(name, f"is not a valid RNG state: {e}")
    try:
        check_task_state(run.task, meta.get("task"))
    except ValueError as e:
        fail("task", str(e))
    for i, iv in enumerate(run.interventions):
        for key, value in iv.state_dict().items():
            name = f"intervention{i}.{key}"
            # same dtype and rank; sizes may differ (a schedule's state is JSON bytes of varying length)
            if name not in tensors or tensors[name].dtype != value.dtype or tensors[name].dim() != value.dim():
                fail(name, f"must be a {value.dim()}-D {value.dtype} tensor for {type(iv).__name__}")


def _check_model(path, signature: dict, tensors, run, fail) -> None:
    for name, shape in signature.items():
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            fail(f"signature.{name}", f"must be a list of sizes, got {shape!r:.80}")
    for name, value in run.model.state_dict().items():
        t = tensors.get(f"model.{name}")
        if t is None:
            fail(f"model.{name}", "is missing")
        if t.shape != value.shape or t.dtype != value.dtype:
            fail(f"model.{name}", f"is {t.dtype} {list(t.shape)}, the model has {value.dtype} {list(value.shape)}")


def _check_optimizer(path, optim: dict, tensors, run, overrides: dict, replaced: set, fail) -> None:
    """``overrides``: what the saved run had overridden (its groups hold those values); ``replaced``: the keys this
    load overrides (their saved values are about to be replaced, so they are not compared)."""
    state, groups = optim.get("state"), optim.get("param_groups")
    mine = run.optimizer.state_dict()["param_groups"]
    if not isinstance(state, dict) or not isinstance(groups, list):
        fail("optimizer", "must hold a 'state' object and a 'param_groups' list")
    if len(groups) != len(mine):
        fail("optimizer.param_groups", f"has {len(groups)} groups, the run's optimizer has {len(mine)}")
    n_params = sum(len(g["params"]) for g in mine)
    # hyperparameters an intervention changes as it goes (an LR schedule's "lr") differ from the method's by design
    scheduled = {k for iv in run.interventions for k in getattr(iv, "scheduled_hyperparameters", ())}
    for i, (theirs, ours) in enumerate(zip(groups, mine)):
        if not isinstance(theirs, dict) or theirs.get("params") != ours["params"]:
            fail(f"optimizer.param_groups[{i}].params", f"must be {ours['params']}")
        if set(theirs) != set(ours):
            fail(f"optimizer.param_groups[{i}]", f"has keys {sorted(theirs)}, the run's optimizer {sorted(ours)}")
        for key, value in theirs.items():
            expected = overrides.get(key, ours[key])
            if key == "params" or key in scheduled or key in replaced:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"optimizer.param_groups[{i}].{key}", f"is {value}")
            if _normalized(value) != _normalized(expected):
                fail(f"optimizer.param_groups[{i}].{key}", f"is {value!r:.60}, the run's method says {expected!r:.60} "
                     "(to change a hyperparameter on resume, pass it in load(..., override={...}))")
    for idx, slot in state.items():
        if not (idx.isdigit() and int(idx) < n_params) or not isinstance(slot, dict):
            fail(f"optimizer.state.{idx}", f"must be a parameter index below {n_params} holding an object")
        for key, entry in slot.items():
            if not isinstance(entry, dict) or not ({"tensor"} == set(entry) or {"value"} == set(entry)):
                fail(f"optimizer.state.{idx}.{key}", "must be {'tensor': name} or {'value': v}")
            if "tensor" in entry and entry["tensor"] not in tensors:
                fail(f"optimizer.state.{idx}.{key}", f"names a tensor {entry['tensor']!r} that the file lacks")


def _normalized(value):
    return list(value) if isinstance(value, tuple) else value


# ---- all-or-nothing ------------------------------------------------------------------------------------------------

def snapshot(run) -> dict:
    """Everything ``Run.load`` may change, copied."""
    return {"model": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
            "optimizer": copy.deepcopy(run.optimizer.state_dict()),
            "generator": run.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "interventions": [{k: v.clone() for k, v in iv.state_dict().items()} for iv in run.interventions],
            "task": copy.deepcopy(task_state(run.task, run.generator)),
            "attrs": {k: copy.copy(getattr(run, k)) for k in ("history", "step_count", "last_loss", "wall_time",
                                                              "overrides")}}


def restore(run, saved: dict) -> None:
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    for iv, state in zip(run.interventions, saved["interventions"]):
        iv.load_state_dict(state)
    load_task_state(run.task, saved["task"], run.generator)
    for k, v in saved["attrs"].items():
        setattr(run, k, v)
