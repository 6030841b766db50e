"""Whole-matrix work across ranks: each matrix is worked on by one *owner* rank, the results are redistributed.

Muon, Pion and Hyperball update a weight matrix as a whole (Newton–Schulz on the momentum, Lie-algebra rotations of
W, norms of W), and POET's merge multiplies whole matrices, so neither can run on FSDP2's row shards one by one.
This module is the seam's answer, after microsoft/dion's Muon for FSDP2 and KellerJordan's distributed Muon:

* **owners balanced by size** (``balanced_owners``): the matrices are dealt largest first, each to the rank with the
  least work so far (ties: the lower index, the lower rank) — deterministic, so every rank computes the same table.
  The work per rank differs from the mean by at most one matrix (``i mod N`` could put every large matrix on one
  rank);
* only the owner runs the unchanged single-process code on the full matrix (``optimizer.update``, the POET layer's
  float64 merge) and only the owner holds that matrix's optimizer state: work and state are split, not repeated;
* **bucketed, overlapped communication** (``run_jobs``): the jobs are cut into buckets of about ``bucket_bytes``;
  the gathers of bucket k+1 are issued (``async_op=True``) before the owners compute bucket k, and each result is
  sent back asynchronously as soon as it is computed, so communication runs while the owners compute. Every rank
  issues the same collectives in the same order (the jobs' order), which is all torch.distributed asks.

Per matrix of n elements:

* FSDP2 (rows sharded, ``torch.chunk`` layout): the owner gathers W and ∇W (one ``dist.gather`` of both shards
  stacked) and scatters the new W back (``dist.scatter``): 3·n·(N−1)/N elements cross the wire;
* DDP (W and the all-reduced ∇W already full on every rank): the owner broadcasts the new W: n·(N−1) elements.

The update is the one-process update of that matrix bit for bit (same code, same full tensors); the gathers and
scatters only copy. ``GroupedOptimizer.step`` calls ``optimizer.full_matrices(optimizer, group)`` for matrix groups
when the seam has set it (``Seam.adopt``); the pure ``*_update`` functions never see a collective.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

#: default bucket size of ``run_jobs`` (read at each call): the bytes of sources gathered per round (≥ one job)
BUCKET_BYTES = 64 * 2 ** 20


def is_sharded(t: torch.Tensor) -> bool:
    return hasattr(t, "to_local")


def balanced_owners(sizes: list[int], world: int) -> list[int]:
    """The owning rank of each item of ``sizes``: largest first (ties: lower index) to the least-loaded rank (ties:
    lower rank). Deterministic, identical on every rank; the largest load exceeds the mean by at most one item."""
    load, owners = [0] * world, [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world), key=lambda r: (load[r], r))
        owners[i] = rank
        load[rank] += sizes[i]
    return owners


@dataclass
class Job:
    """One matrix's work. ``sources`` are read whole on ``owner`` (a DTensor's row shards gathered to it, a plain
    tensor as it is); ``compute(full)`` runs on every rank, in job order — ``full`` is the list of whole sources on
    the owner and ``None`` elsewhere — and returns, on the owner, the whole values of ``targets`` (``None``
    elsewhere); each target is then written everywhere: a DTensor's rows scattered, a plain tensor broadcast."""

    sources: list[torch.Tensor]
    owner: int
    compute: Callable[[list[torch.Tensor] | None], list[torch.Tensor] | None]
    targets: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(math.prod(t.shape) * t.element_size() for t in self.sources)


class FullMatrices:
    """``full_matrices(optimizer, group)``: one step of ``optimizer.update`` over ``group``'s matrices, each on its
    owning rank (``owners``: balanced by size over all matrix groups, identical everywhere)."""

    def __init__(self, rank: int, world: int, bucket_bytes: int | None = None):
        self.rank, self.world, self.bucket_bytes = rank, world, bucket_bytes
        self._owners: tuple[tuple, dict[int, int]] = ((), {})

    def owners(self, optimizer) -> dict[int, int]:
        """``id(param) → owning rank`` for every parameter of ``optimizer``'s matrix groups, balanced by element
        count (``balanced_owners``) over all of them together, in group order."""
        params = [p for g in optimizer.param_groups if g.get("matrix") for p in g["params"]]
        key = tuple(id(p) for p in params)
        if self._owners[0] != key:
            ranks = balanced_owners([math.prod(p.shape) for p in params], self.world)
            self._owners = (key, {id(p): r for p, r in zip(params, ranks)})
        return self._owners[1]

    @torch.no_grad()
    def __call__(self, optimizer, group: dict) -> None:
        owners = self.owners(optimizer)

        def job(p) -> Job:
            def compute(full):
                if full is None:
                    return None
                w = full[0].clone()
                w.grad = full[1]
                optimizer.update(w, optimizer.state[p], group)     # the one-process code on the full matrix
                return [w]
            return Job([p.detach(), p.grad], owners[id(p)], compute, [p.detach()])

        # p.grad is None the same way on every rank (gradients are synchronized)
        run_jobs([job(p) for p in group["params"] if p.grad is not None], self.rank, self.world, self.bucket_bytes)


# ---- the pipeline ------------------------------------------------------------------------------------------------

def run_jobs(jobs: list[Job], rank: int, world: int, bucket_bytes: int | None = None) -> None:
    """Run ``jobs`` (module docstring): bucket k+1's gathers in flight while bucket k is computed; each bucket's
    results sent asynchronously and received (written into the targets) one bucket later."""
    buckets = _buckets(jobs, BUCKET_BYTES if bucket_bytes is None else bucket_bytes)
    if not buckets:
        return
    gathering = [_Gather(job, rank, world) for job in buckets[0]]
    sending: deque[list[_Send]] = deque()
    for k in range(len(buckets)):
        following = [_Gather(job, rank, world) for job in buckets[k + 1]] if k + 1 < len(buckets) else []
        sends = []
        for job, gather in zip(buckets[k], gathering):
            results = job.compute(gather.wait())
            sends.extend(_Send(t, None if results is None else results[i], job.owner, rank, world)
                         for i, t in enumerate(job.targets))
        sending.append(sends)
        if len(sending) > 1:                         # one bucket of results in flight at a time
            for send in sending.popleft():
                send.wait()
        gathering = following
    for sends in sending:
        for send in sends:
            send.wait()


def _buckets(jobs: list[Job], limit: int) -> list[list[Job]]:
    """Consecutive jobs, each bucket at most ``limit`` bytes of sources (or one job)."""
    buckets, size = [], 0
    for job in jobs:
        if not buckets or size + job.nbytes > limit:
            buckets.append([])
            size = 0
        buckets[-1].append(job)
        size += job.nbytes
    return buckets


def _rows(n: int, world: int) -> tuple[int, list[tuple[int, int]]]:
    """``torch.chunk`` rows of an n-row tensor over the ranks: chunk size c = ⌈n/N⌉, rank r holds
    ``[r·c, min((r+1)·c, n))`` (possibly empty) — FSDP2's ``Shard(0)`` layout."""
    c = -(-n // world)
    return c, [(min(r * c, n), min((r + 1) * c, n)) for r in range(world)]


def _padded_shard(t: torch.Tensor, rank: int, world: int) -> tuple[torch.Tensor, int]:
    """This rank's rows of the DTensor ``t``, zero-padded to the chunk size c (so every rank sends c rows)."""
    shard = t.to_local()
    c, rows = _rows(t.shape[0], world)
    lo, hi = rows[rank]
    if shard.shape[0] != hi - lo:
        raise RuntimeError(f"FSDP2 shard of {tuple(t.shape)} on rank {rank} has {shard.shape[0]} rows; expected "
                           f"the torch.chunk layout {rows}")
    padded = shard.new_zeros((c, *shard.shape[1:]))
    padded[: hi - lo] = shard
    return padded, c


class _Gather:
    """The sources of ``job`` whole on its owner: the row shards of same-shaped DTensor sources (W and ∇W) stacked
    into one asynchronous ``dist.gather``, other DTensors gathered one each, plain tensors taken as they are."""

    def __init__(self, job: Job, rank: int, world: int):
        self.job, self.rank, self.world, self.works, self.parts = job, rank, world, [], []
        self.is_owner = rank == job.owner
        sharded = [t for t in job.sources if is_sharded(t)]
        stack = len(sharded) > 1 and all(t.shape == sharded[0].shape and t.dtype == sharded[0].dtype
                                         for t in sharded)
        self.groups = [sharded] if stack else [[t] for t in sharded]
        for group in self.groups:
            padded = torch.stack([_padded_shard(t, rank, world)[0] for t in group])
            parts = [torch.empty_like(padded) for _ in range(world)] if self.is_owner else None
            self.works.append(dist.gather(padded, parts, dst=job.owner, async_op=True))
            self.parts.append(parts)

    def wait(self) -> list[torch.Tensor] | None:
        for work in self.works:
            work.wait()
        if not self.is_owner:
            return None
        whole = {}
        for group, parts in zip(self.groups, self.parts):
            stacked = torch.cat(parts, dim=1)            # [len(group), N·c, ...]
            for j, t in enumerate(group):
                whole[id(t)] = stacked[j, : t.shape[0]]
        return [whole.get(id(t), t) for t in self.job.sources]


class _Send:
    """Write ``value`` (the owner's whole result; ``None`` elsewhere) into ``target`` on every rank: a DTensor's
    rows by an asynchronous ``dist.scatter``, a plain tensor by an asynchronous ``dist.broadcast``."""

    def __init__(self, target: torch.Tensor, value, owner: int, rank: int, world: int):
        self.target, self.rank = target, rank
        if not is_sharded(target):
            if rank == owner:
                target.copy_(value)
            self.work, self.out = dist.broadcast(target, src=owner, async_op=True), None
            return
        shard = target.to_local()
        c, rows = _rows(target.shape[0], world)
        self.out, self.length = shard.new_empty((c, *shard.shape[1:])), rows[rank][1] - rows[rank][0]
        parts = None
        if rank == owner:
            padded = value.new_zeros((c * world, *value.shape[1:]))
            padded[: target.shape[0]] = value
            parts = list(padded.chunk(world))
        self.work = dist.scatter(self.out, parts, src=owner, async_op=True)

    def wait(self) -> None:
        self.work.wait()
        if self.out is not None:
            self.target.to_local().copy_(self.out[: self.length])


# ---- POET's merge, once per layer --------------------------------------------------------------------------------

class OwnerMerges:
    """``merge_layers(layers, generator)`` for ``POETMerge.after_step`` under FSDP2: each layer's float64 merge runs
    once, on its owner (balanced by m·n), instead of on every rank after gathering the whole model.

    Per layer, in order: W_s and the packed skews are gathered to the owner, which computes ``merge_result`` (the
    one-process arithmetic on the same whole tensors); every rank draws the layer's new permutations from its copy
    of the seeded generator (the same stream as one process: layer by layer, in order); the owner stores the new
    ``W_s = W_eff[inv(perm_out)][:, perm_in]``, whose rows are scattered into every rank's shard; the probe vector
    ``u`` (replicated) is broadcast; every rank zeroes its rows of Q."""

    def __init__(self, rank: int, world: int, bucket_bytes: int | None = None):
        self.rank, self.world, self.bucket_bytes = rank, world, bucket_bytes

    @torch.no_grad()
    def __call__(self, layers: list, generator: torch.Generator) -> None:
        owners = balanced_owners([layer.perm_in.numel() * layer.perm_out.numel() for _, layer in layers], self.world)
        run_jobs([self._job(layer, owner, generator) for (_, layer), owner in zip(layers, owners)],
                 self.rank, self.world, self.bucket_bytes)

    def _job(self, layer, owner: int, generator: torch.Generator) -> Job:
        stored, q_in, q_out = layer.stored_weight(), layer.poet_q_in, layer.poet_q_out

        def compute(full):
            merged = layer.merge_result(*full) if full is not None else None
            layer.draw_permutations(generator)             # every rank: the generator stays one stream
            for q in (q_in, q_out):
                (q.to_local() if is_sharded(q) else q).zero_()
            return None if merged is None else [layer.permuted(merged[0]), merged[1]]

        return Job([stored.detach(), q_in.detach(), q_out.detach()], owner, compute,
                   [stored.detach(), layer.probe_u])
