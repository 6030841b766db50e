"""What a rank holds, measured: the parameter bytes of per-block FSDP2 during forward and backward (``HeldBytes``) and
the optimizer-state bytes while a checkpoint is written (``measured_save``). The tests (tests/test_fsdp_blocks.py,
tests/test_owner_state.py) and benchmarks/bench_memory.py check the bounds of ``orthoscope.distributed.sharding``
and ``matrix_state`` with them.

    held = HeldBytes(run.model)          # after Seam.prepare: hooks on every FSDP unit
    held.during_training_passes(run)     # sample only inside the training forward/backward
    run.train(8); held.report()          # {"peak": bytes, "samples": n, "units": {name: {"full", "shard"}}}

**What ``HeldBytes`` counts** at each unit's forward pre/post and backward pre/post hook: for every FSDP parameter
group, its full (unsharded) bytes when the group is unsharded or an all-gather of it is in flight (a prefetch),
otherwise this rank's shard bytes. It reads FSDP2's group state (``_fsdp_param_group``, ``is_unsharded``,
``_all_gather_result``; torch 2.13 has no public getter), so it counts logical parameter bytes, not allocator
memory: FSDP2's flat all-gather buffers, gradients and activations are not in it.
"""
from __future__ import annotations

import torch


class HeldBytes:
    """Samples, at every hook of every FSDP unit, the parameter bytes this rank holds: the full size of each unit
    whose parameters are unsharded (or being gathered: a prefetch), this rank's shard of every other unit."""

    def __init__(self, model: torch.nn.Module):
        from torch.distributed.fsdp import FSDPModule

        self.groups = []                               # (name, group, full bytes, shard bytes)
        for name, module in model.named_modules():
            if isinstance(module, FSDPModule):
                group = module._get_fsdp_state()._fsdp_param_group
                if group is None:
                    continue
                full = sum(_numel(p._orig_size) * p.sharded_param.element_size() for p in group.fsdp_params)
                shard = sum(p.sharded_param._local_tensor.numel() * p.sharded_param.element_size()
                            for p in group.fsdp_params)
                self.groups.append((name or "<root>", group, full, shard))
                if name:
                    self._hook(module)
        self.peak, self.samples, self.active = 0, 0, False

    def during_training_passes(self, run) -> None:
        """Sample only inside ``run``'s forward and backward (not in the probes' gathers of the whole model)."""
        inner = run._forward_backward

        def forward_backward(x, y):
            self.active = True
            try:
                return inner(x, y)
            finally:
                self.active = False
        run._forward_backward = forward_backward

    def _hook(self, module) -> None:
        module.register_forward_pre_hook(lambda *_: self.sample())                 # after FSDP's unshard
        module.register_forward_hook(lambda *_: self.sample(), prepend=True)       # before FSDP's reshard
        module.register_full_backward_pre_hook(lambda *_: self.sample())
        module.register_full_backward_hook(lambda *_: self.sample())

    def sample(self) -> None:
        if not self.active:
            return
        held = sum(full if (g.is_unsharded or g._all_gather_result is not None) else shard
                   for _, g, full, shard in self.groups)
        self.peak, self.samples = max(self.peak, held), self.samples + 1

    def report(self) -> dict:
        return {"peak": self.peak, "samples": self.samples,
                "units": {name: {"full": full, "shard": shard} for name, _, full, shard in self.groups}}


def bound(units: dict, unsharded: int) -> int:
    """The bound a ``report()["units"]`` allows: every unit's shard plus the ``unsharded`` largest units' remainder
    (full − shard) — 1 for ``prefetch=0``, 2 for ``prefetch=1``."""
    extra = sorted((u["full"] - u["shard"] for u in units.values()), reverse=True)
    return sum(u["shard"] for u in units.values()) + sum(extra[:unsharded])


def _numel(size) -> int:
    n = 1
    for s in size:
        n *= s
    return n


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a DTensor counts by its local shard)."""
    seen = {}
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def measured_save(run, directory) -> int:
    """``run.save(directory)``, returning the optimizer-state bytes this rank holds while DCP writes.

    ``torch.distributed.checkpoint.save`` is wrapped; when the run's save calls it, the wrapper adds up the bytes of
    the distinct storages (by data pointer) of (a) every ``optim.*`` tensor handed to DCP — a DTensor by its local
    shard — and (b) every tensor in the optimizer's state as this rank holds it. Copies made to write the state (a
    broadcast of each matrix's state to every rank) are new storages and count; the state written as held counts
    once. DCP's own write buffers are not counted."""
    import torch.distributed.checkpoint as dcp

    original, seen = dcp.save, []

    def counting(state_dict, *args, **kwargs):
        held = [v for state in run.optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
        seen.append(storage_bytes([v for k, v in state_dict.items() if k.startswith("optim.")] + held))
        return original(state_dict, *args, **kwargs)

    dcp.save = counting
    try:
        run.save(directory)
    finally:
        dcp.save = original
    if len(seen) != 1:
        raise RuntimeError(f"the save called dcp.save {len(seen)} times, expected once")
    return seen[0]
