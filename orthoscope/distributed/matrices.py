"""Full-matrix updates across ranks: each rank updates a share of the matrices, the results are redistributed.

Muon, Pion and Hyperball update a weight matrix as a whole (Newton–Schulz on the momentum, Lie-algebra rotations of
W, norms of W), so they cannot run on FSDP2's row shards one by one. ``FullMatrices`` is the seam's answer, after
microsoft/dion's Muon for FSDP2 and KellerJordan's distributed Muon: matrix ``i`` of a matrix group is *owned* by rank
``i mod N``; only the owner runs the optimizer's own ``update`` on it (the unchanged single-process code, on the full
weight and full gradient), and only the owner holds that matrix's optimizer state — so the work and the state are
split across ranks instead of repeated. Per matrix of n elements:

* FSDP2 (rows sharded, ``torch.chunk`` layout): the owner gathers W and ∇W (``dist.gather``) and scatters the new W
  back (``dist.scatter``): 3·n·(N−1)/N elements cross the wire;
* DDP (W and the all-reduced ∇W already full on every rank): the owner broadcasts the new W: n·(N−1) elements.

The update is the one-process update of that matrix bit for bit (same code, same full tensors); the gathers and
scatters only copy. ``GroupedOptimizer.step`` calls ``optimizer.full_matrices(optimizer, group)`` for matrix groups
when the seam has set it (``Seam.adopt``); the pure ``*_update`` functions never see a collective.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_sharded(t: torch.Tensor) -> bool:
    return hasattr(t, "to_local")


class FullMatrices:
    """``full_matrices(optimizer, group)``: one step of ``optimizer.update`` over ``group``'s matrices, each on its
    owning rank. ``owners[i]`` is the rank that updates ``group["params"][i]`` (round robin, identical everywhere)."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def owner(self, index: int) -> int:
        return index % self.world

    @torch.no_grad()
    def __call__(self, optimizer, group: dict) -> None:
        for i, p in enumerate(group["params"]):
            if p.grad is None:                         # the same on every rank (gradients are synchronized)
                continue
            owner = self.owner(i)
            if is_sharded(p):
                w, g = self._gather(p, owner), self._gather(p.grad, owner)
            else:
                w, g = p.detach(), p.grad
            if self.rank == owner:
                w = w.clone()
                w.grad = g
                optimizer.update(w, optimizer.state[p], group)     # the one-process code on the full matrix
            if is_sharded(p):
                self._scatter(w if self.rank == owner else None, owner, p)
            else:
                if self.rank == owner:
                    p.copy_(w)
                dist.broadcast(p.data, src=owner)

    def _rows(self, n: int) -> tuple[int, list[tuple[int, int]]]:
        """``torch.chunk`` rows of an n-row tensor over the ranks: chunk size c = ⌈n/N⌉, rank r holds
        ``[r·c, min((r+1)·c, n))`` (possibly empty) — FSDP2's ``Shard(0)`` layout."""
        c = -(-n // self.world)
        return c, [(min(r * c, n), min((r + 1) * c, n)) for r in range(self.world)]

    def _gather(self, t, owner: int):
        """The full tensor on ``owner`` (``None`` elsewhere) from the row shards of the DTensor ``t``."""
        shard = t.to_local()
        n = t.shape[0]
        c, rows = self._rows(n)
        lo, hi = rows[self.rank]
        if shard.shape[0] != hi - lo:
            raise RuntimeError(f"FSDP2 shard of {tuple(t.shape)} on rank {self.rank} has {shard.shape[0]} rows; "
                               f"expected the torch.chunk layout {rows}")
        padded = shard.new_zeros((c, *shard.shape[1:]))
        padded[: hi - lo] = shard
        parts = [torch.empty_like(padded) for _ in range(self.world)] if self.rank == owner else None
        dist.gather(padded, parts, dst=owner)
        return torch.cat(parts)[:n] if self.rank == owner else None

    def _scatter(self, full, owner: int, p) -> None:
        """Write rows of ``full`` (on ``owner``) into every rank's shard of the DTensor parameter ``p``."""
        shard = p.to_local()
        n = p.shape[0]
        c, rows = self._rows(n)
        lo, hi = rows[self.rank]
        out = shard.new_empty((c, *shard.shape[1:]))
        parts = None
        if self.rank == owner:
            padded = full.new_zeros((c * self.world, *full.shape[1:]))
            padded[:n] = full
            parts = list(padded.chunk(self.world))
        dist.scatter(out, parts, src=owner)
        shard.copy_(out[: hi - lo])
