"""Sharded checkpoints of the whole-matrix optimizers (Muon, Pion, AdamH, MuonH: ``GroupedOptimizer``).

Under torchrun their matrix state is held whole by one owning rank per matrix (``orthoscope.distributed.matrices``:
matrix i of a group on rank i mod N), which DCP's optimizer state dict cannot describe. This module writes and reads
that state itself, by parameter name, in the layout of ``orthoscope.distributed.checkpoint`` (``optim.<fqn>.<name>``):

* **save**: each matrix's state is broadcast from its owner, so every rank holds the same full tensors and DCP writes
  them once (it deduplicates replicated plain tensors); the state of the other parameters (the auxiliary AdamW on
  embeddings, vectors, the head) is written as it is held — row shards (DTensors) under FSDP2, replicated under DDP;
  integer state (``step``) as a 0-d int64 tensor.
* **load** at any world size, one process included: the keys, shapes and dtypes come from the checkpoint's own
  metadata; state shaped like its parameter is read into a tensor laid out like the parameter (DCP reshards row
  shards by offsets), matrix state in full, and each matrix's state is kept only by its owner at the new world size.

The transient cost of a save is one full copy of the matrix state on every rank, and one broadcast per matrix.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def applies(run) -> bool:
    """True for a ``GroupedOptimizer`` (it has the ``full_matrices`` hook slot, set or not)."""
    return hasattr(run.optimizer, "full_matrices")


def _owners(run) -> dict[int, int]:
    """``id(param) → owning rank`` for the matrix-group parameters under torchrun; empty in one process."""
    fm = run.optimizer.full_matrices
    if fm is None:
        return {}
    return {id(p): fm.owner(i) for g in run.optimizer.param_groups if g.get("matrix")
            for i, p in enumerate(g["params"])}


def _as_tensor(value):
    return value if isinstance(value, torch.Tensor) else torch.tensor(value)


def optimizer_tensors(run) -> dict[str, torch.Tensor]:
    """``{"optim.<fqn>.<name>": tensor}`` of ``run``'s optimizer (collective under torchrun)."""
    owners, rank = _owners(run), (run.dist.rank if run.dist is not None else 0)
    out = {}
    for fqn, p in run.model.named_parameters():
        state = run.optimizer.state.get(p, {})
        if id(p) not in owners:
            out.update({f"optim.{fqn}.{k}": _as_tensor(v) for k, v in state.items()})
            continue
        owner = owners[id(p)]
        box = [{k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
               if rank == owner else None]
        dist.broadcast_object_list(box, src=owner, device=run.dist.device)
        out.update({f"optim.{fqn}.{k}": _as_tensor(v) for k, v in box[0].items()})
    return out


def load_targets(run, metadata: dict) -> dict[str, torch.Tensor]:
    """Empty tensors to read every ``optim.*`` key of a checkpoint (``metadata``: DCP's ``state_dict_metadata``)
    into: laid out like the parameter when shaped like it (and not owned whole), else full and plain."""
    params, owners = dict(run.model.named_parameters()), _owners(run)
    targets = {}
    for key, md in metadata.items():
        if not key.startswith("optim."):
            continue
        fqn, _, _name = key[len("optim."):].rpartition(".")
        if fqn not in params:
            raise KeyError(f"checkpoint key {key!r} names no parameter of this model")
        p = params[fqn]
        if id(p) not in owners and tuple(md.size) == tuple(p.shape):
            targets[key] = torch.empty_like(p.detach(), dtype=md.properties.dtype)
        else:
            targets[key] = torch.empty(tuple(md.size), dtype=md.properties.dtype)
    return targets


def apply_optimizer(run, tensors: dict[str, torch.Tensor]) -> None:
    """Set ``run.optimizer.state`` from loaded ``optim.*`` tensors; each matrix's state only on its owner."""
    params, owners = dict(run.model.named_parameters()), _owners(run)
    rank = run.dist.rank if run.dist is not None else 0
    device = run.dist.device if run.dist is not None else None
    run.optimizer.state.clear()
    for key, t in tensors.items():
        if not key.startswith("optim."):
            continue
        fqn, _, name = key[len("optim."):].rpartition(".")
        p = params[fqn]
        if owners.get(id(p), rank) != rank:
            continue
        if t.dim() == 0 and t.dtype == torch.int64:
            value = int(t)                             # an integer counter (``step``), as the optimizer keeps it
        else:
            value = t if hasattr(t, "to_local") else t.to(device if device is not None else p.device)
        run.optimizer.state[p][name] = value
