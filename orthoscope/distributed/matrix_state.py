"""Optimizer state in sharded checkpoints, by parameter name, exactly as held (every optimizer).

Keys are ``optim.<fqn>.<name>`` (the layout of ``orthoscope.distributed.checkpoint``); a parameter without state —
none yet, or reset by POET's merge — has no key, and a load leaves it without state, so a run resumes at any step
as it was (issue 30: a POET checkpoint written on a merge step did not load). Each key's kind (tensor, or a Python
int/float/bool such as a ``step`` counter) travels in the run record and comes back as it was held. The optimizer's
own ``load_state_dict`` places the loaded state (torch's casting rules: ``step`` as saved, moments on the parameter's
device and dtype).

The whole-matrix optimizers (Muon, Pion, AdamH, MuonH: ``GroupedOptimizer``) hold each matrix's state whole on one
owning rank under torchrun (``orthoscope.distributed.matrices``: owners balanced by size), which DCP's optimizer
state dict cannot describe:

* **save (owner-only)**: each owner hands DCP its own matrices' state keys, as plain tensors exactly as held (no
  copy, no broadcast, no pickling); the other ranks have no such key. DCP plans a save from every rank's keys (its
  global plan is the union, with replicated keys written once), so each key is written once, by its owner. The
  state of the other parameters (the auxiliary AdamW on embeddings, vectors, the head; every parameter of a torch
  optimizer) is written as it is held — row shards (DTensors) under FSDP2, replicated under DDP. Only the keys'
  kinds (a few strings per matrix) are exchanged, so rank 0 can write the run record: a save holds no optimizer
  state beyond what the optimizer already holds.
* **load** at any world size, one process included: shapes and dtypes come from the checkpoint's own metadata; state
  shaped like its parameter is read into a tensor laid out like the parameter (DCP reshards row shards by offsets);
  each matrix's state is read in full by its owner at the new world size, and only by it.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def owners(run) -> dict[int, int]:
    """``id(param) → owning rank`` for the matrix-group parameters under torchrun; empty in one process and for
    optimizers without whole-matrix state."""
    fm = getattr(run.optimizer, "full_matrices", None)
    if fm is None:
        return {}
    return fm.owners(run.optimizer)


KINDS = ("tensor", "int", "float", "bool")
_PYTHON = {bool: ("bool", torch.bool), int: ("int", torch.int64), float: ("float", torch.float64)}


def as_saved(key: str, value) -> tuple[torch.Tensor, str]:
    """One optimizer state value as a tensor DCP can write, and its kind, so a load gives it back as it was held:
    a tensor as is, a Python ``int``/``float``/``bool`` as a 0-d int64/float64/bool tensor."""
    if isinstance(value, torch.Tensor):
        return value, "tensor"
    if type(value) in _PYTHON:
        kind, dtype = _PYTHON[type(value)]
        return torch.tensor(value, dtype=dtype), kind
    raise TypeError(f"optimizer state {key!r} holds a {type(value).__name__}; a checkpoint holds tensors, int, "
                    "float and bool")


def optimizer_tensors(run) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``{"optim.<fqn>.<name>": tensor}`` of ``run``'s optimizer state exactly as held — a parameter without state
    (none yet, or reset by POET's merge) has no key; a matrix another rank owns has none here — and every key's kind
    (``as_saved``), on every rank. Collective under torchrun for the whole-matrix optimizers (the kinds of the
    owners' keys are exchanged; no tensor is)."""
    own, rank = owners(run), (run.dist.rank if run.dist is not None else 0)
    tensors, kinds, owned_kinds = {}, {}, {}
    for fqn, p in run.model.named_parameters():
        if own.get(id(p), rank) != rank:
            continue                                   # another rank owns this matrix and writes its state
        for name, value in run.optimizer.state.get(p, {}).items():
            key = f"optim.{fqn}.{name}"
            tensors[key], kinds[key] = as_saved(key, value)
            if id(p) in own:
                owned_kinds[key] = kinds[key]
    if own:
        every = [None] * run.dist.world
        dist.all_gather_object(every, owned_kinds)    # strings only: the keys and kinds of each owner's state
        for theirs in every:
            kinds.update(theirs)
        kinds = {key: kinds[key] for key in _in_model_order(run, kinds)}
    return tensors, kinds


def _in_model_order(run, keys) -> list[str]:
    """``keys`` ordered by parameter (model order), then as each parameter's state lists them."""
    order = {fqn: i for i, (fqn, _) in enumerate(run.model.named_parameters())}
    return sorted(keys, key=lambda k: order[k[len("optim."):].rpartition(".")[0]])


def load_targets(run, metadata: dict) -> dict[str, torch.Tensor]:
    """Empty tensors to read the ``optim.*`` keys of ``metadata`` (DCP's ``state_dict_metadata``, restricted to the
    keys to load) into: laid out like the parameter when shaped like it (and not owned whole), else full and
    plain; a matrix another rank owns gets none (each owner reads only its matrices' keys)."""
    params, own = dict(run.model.named_parameters()), owners(run)
    rank = run.dist.rank if run.dist is not None else 0
    targets = {}
    for key, md in metadata.items():
        if not key.startswith("optim."):
            continue
        fqn, _, _name = key[len("optim."):].rpartition(".")
        p = params[fqn]
        if own.get(id(p), rank) != rank:
            continue
        if id(p) not in own and tuple(md.size) == tuple(p.shape):
            targets[key] = torch.empty_like(p.detach(), dtype=md.properties.dtype)
        else:
            targets[key] = torch.empty(tuple(md.size), dtype=md.properties.dtype)
    return targets


def apply_optimizer(run, tensors: dict[str, torch.Tensor], kinds: dict[str, str]) -> None:
    """Make ``run.optimizer.state`` exactly the loaded one: the keys of ``kinds``, each value of its kind, a
    parameter with no key without state; each matrix's state only on its owner. Goes through the optimizer's own
    ``load_state_dict`` (which places each tensor as the optimizer keeps it: ``step`` as saved, the moments on the
    parameter's device and dtype)."""
    params, own = dict(run.model.named_parameters()), owners(run)
    rank = run.dist.rank if run.dist is not None else 0
    index = {id(p): i for i, p in enumerate(p for g in run.optimizer.param_groups for p in g["params"])}
    state: dict[int, dict] = {}
    for key, kind in kinds.items():
        fqn, _, name = key[len("optim."):].rpartition(".")
        p = params[fqn]
        if own.get(id(p), rank) != rank:
            continue                                   # a matrix another rank owns
        t = tensors[key]
        value = t if kind == "tensor" else {"int": int, "float": float, "bool": bool}[kind](t.item())
        if kind == "tensor" and not hasattr(t, "to_local") and id(p) in own:
            value = t.to(run.dist.device)              # whole-matrix state on the owner's device
        state.setdefault(index[id(p)], {})[name] = value
    groups = run.optimizer.state_dict()["param_groups"]
    run.optimizer.load_state_dict({"state": state, "param_groups": groups})
