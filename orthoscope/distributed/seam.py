"""The distributed seam: how a ``Run`` executes under ``torchrun``, with PyTorch's own machinery.

    torchrun --nproc_per_node 2 train.py                     # Run(...) detects torchrun; DDP by default
    Run(model, task, AdamW(), distributed="fsdp")            # FSDP2: fully_shard on a 1-D DeviceMesh
    ORTHOSCOPE_DISTRIBUTED=fsdp torchrun ... train.py        # the default mode from the environment

Nothing here is home-made: the process group is ``torch.distributed`` (``gloo`` on CPU, ``nccl`` on CUDA), data
parallelism is ``DistributedDataParallel``, sharding is FSDP2's ``fully_shard`` on a ``DeviceMesh``.

**Equivalence with one process.** Every rank draws the *global* batch ``(x, y)`` of size B from the same seeded
generator (so the data stream is one stream, identical on every rank and identical to one process's) and keeps rows
``[⌊r·B/N⌋, ⌊(r+1)·B/N⌋)`` — n_r rows, any B at any N (``rows``). The task losses are means over the rows, both DDP
(all-reduce) and FSDP2 (reduce-scatter) average gradients over ranks, and rank r's mean loss is scaled by N·n_r/B
(``loss_weight``; exactly 1 when N divides B), so the gradient is

    (1/N) Σ_r (N·n_r/B) (1/n_r) Σ_{i ∈ shard r} ∇ℓ_i  =  (1/B) Σ_i ∇ℓ_i,

the one-process gradient up to the order of fp32 additions (a relative difference of a few ulps per step). The loss
reported on every rank is the row-weighted all-reduced mean of the shard losses (``mean``), the same mean. So a
checkpoint resumes at any world size with the same global batch (docs/distributed.md "Elastic resume"). Randomness inside the forward
(dropout) is drawn per rank and does not reproduce one process; models without it do.

**Rank 0 observes.** The progress bar, the History, callbacks and files are rank 0's; under FSDP2 the gradient norm
runs on the shards (one all-reduce) and the other probes inside one all-gather of the weights (``run_probes``,
``full_weights``), entered only on steps where such a probe is due, because gathering is collective.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch import nn

MODES = ("ddp", "fsdp")
ENV_MODE = "ORTHOSCOPE_DISTRIBUTED"
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# Methods whose distributed runs are proven equal to one process by tests/test_distributed.py, per mode.
# A method missing here fails before training with the list of what is supported.
SUPPORTED = {
    "ddp": {"AdamW", "SGD", "Muon", "Pion", "Hyperball", "FOCUS", "LoRA", "OFT", "POET", "BOFT", "QOFT", "SoRA"},
    "fsdp": {"AdamW", "SGD", "Muon", "Pion", "Hyperball", "FOCUS", "LoRA", "OFT", "POET", "BOFT", "QOFT", "SoRA"},
}

# Methods whose intervention merges unsharded weights (``needs_full_weights``): refused under bf16 FSDP2, whose
# gathered weights are bf16 copies of the fp32 shards.
MERGES_FULL_MATRICES = {"POET"}


class DistributedError(ValueError):
    """A run that cannot execute in the chosen distributed mode (raised before the first step)."""


def under_torchrun() -> bool:
    """True when the torchrun environment (rank, world size, rendezvous address) is set."""
    return all(k in os.environ for k in TORCHRUN_ENV)


def resolve_mode(distributed) -> str | None:
    """``None``/``False`` → one process; ``"auto"`` → under torchrun the mode in ``$ORTHOSCOPE_DISTRIBUTED``
    (default ``"ddp"``), else one process; ``"ddp"``/``"fsdp"`` → that mode (torchrun or a process group needed)."""
    if distributed is None or distributed is False:
        return None
    if distributed == "auto":
        if not (under_torchrun() or dist.is_initialized()):
            return None
        distributed = os.environ.get(ENV_MODE, "ddp")
        where = f"${ENV_MODE}"
    else:
        where = "distributed"
    if distributed not in MODES:
        raise DistributedError(f"{where} must be one of {MODES} (or 'auto' / None for the argument), "
                               f"got {distributed!r}")
    if not (under_torchrun() or dist.is_initialized()):
        raise DistributedError(f"distributed={distributed!r} needs a process group: launch with torchrun "
                               f"(environment {', '.join(TORCHRUN_ENV)} not set)")
    return distributed


def setup(distributed, run) -> "Seam | None":
    """The seam for ``run`` (``None`` in one process), with every check done before training starts."""
    mode = resolve_mode(distributed)
    if mode is None:
        return None
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        init_process_group("nccl" if cuda else "gloo")
    seam = Seam(mode)
    seam.check(run)
    return seam


def init_process_group(backend: str) -> None:
    """``dist.init_process_group(backend)`` from the torchrun environment, with its keys under a prefix of the
    restart attempt (``$TORCHELASTIC_RESTART_COUNT``).

    torchrun's agent keeps one TCPStore for all attempts (``--max-restarts``); the process group writes each rank's
    address into it under the same keys every attempt, so after a restart a rank can read the *dead* peer's address
    before the new peer has overwritten it, and gloo's ``connectFullMesh`` fails with "Connection refused" (measured
    on this 2-core machine: 2 restarts of 2 failed so). A fresh prefix per attempt leaves no stale key to read."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        dist.init_process_group(backend)
        return
    store, rank, world = next(dist.rendezvous("env://"))
    dist.init_process_group(backend, store=dist.PrefixStore(f"orthoscope/attempt-{attempt}", store), rank=rank,
                            world_size=world)


def teardown(code: int = 0):
    """Leave a torchrun worker — the last call of every torchrun entry point (``orthoscope train``, the test workers,
    the benchmarks): a barrier (every rank's collectives done), ``destroy_process_group``, output flushed, then the
    process ends with ``os._exit(code)``, without the interpreter's finalization. Nothing runs after it (no
    ``atexit`` handler, no ``finally``): what the program writes must be on disk before.

    Why not an ordinary exit, measured (py-spy --native on ``orthoscope train`` under torchrun, DDP, gloo, which hung
    after its last step): the gloo process group's destructor joins gloo's worker threads while holding the GIL.
    A worker drops a finished ``Work`` only after ``wait()`` has returned (its run loop resets the work in progress
    after running it); the hung worker was destroying the last barrier's work, which kept the throughput meter's
    all-reduces and their tensors alive, tensors Python had already released — freeing them needs the GIL. When
    the group's last reference goes first (DDP's Reducer freed in the interpreter's finalization, after which a
    thread asking for the GIL waits forever), neither thread moves. No order of Python calls prevents it: dropping
    the models and collecting garbage while the group is alive only moves the last reference into
    ``destroy_process_group``, where the destructor holds the GIL the same way, and when a worker has dropped its
    last work cannot be observed from Python. So the destructor must not run. The other face of the race: a worker
    asking for the GIL once finalization has begun is ended by the interpreter inside gloo's C++ code, and the process
    aborts ("terminate called without an active exception"; reproduced in 4 of 28 launches of a 2-rank DDP script
    holding the GIL with ``sys.setswitchinterval(2)``, 0 of 20 when it ends here: docs/distributed.md)."""
    import sys

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()               # flush log files (atexit would have)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


class Seam:
    """One run's view of the process group: rank, world size, device, mesh, and the few collectives a run needs."""

    def __init__(self, mode: str, make_mesh: bool = True, precision: str | None = None,
                 prefetch: int | None = None):
        """``make_mesh=False``: no DeviceMesh of its own — for a model the caller already sharded (the recorder of
        your own loop, ``orthoscope.observe``), which the seam only observes. ``precision`` (FSDP2 only):
        ``"fp32"`` or ``"bf16"`` (``orthoscope.distributed.sharding``); ``None`` reads ``$ORTHOSCOPE_PRECISION``.
        ``prefetch`` (FSDP2 only): 1 (default) gathers the next block while one computes, 0 holds one block
        unsharded at a time; ``None`` reads ``$ORTHOSCOPE_PREFETCH``."""
        from .sharding import (ShardingError, resolve_precision, resolve_prefetch, resolve_unsharded_precision,
                               resolve_unsharded_prefetch)

        self.mode = mode
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        nccl = dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        try:
            self.precision = (resolve_precision(precision, self.device) if mode == "fsdp"
                              else resolve_unsharded_precision(precision, mode))
            self.prefetch = (resolve_prefetch(prefetch) if mode == "fsdp"
                             else resolve_unsharded_prefetch(prefetch, mode))
        except ShardingError as e:
            raise DistributedError(str(e)) from None
        self.mesh = None
        if mode == "fsdp" and make_mesh:
            from torch.distributed.device_mesh import init_device_mesh
            self.mesh = init_device_mesh(self.device.type, (self.world,))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def probes_here(self) -> bool:
        """Probes run on rank 0 under DDP (it holds the full model); on every rank under FSDP2 (gathers are
        collective), where only rank 0 records what they return."""
        return self.mode == "fsdp" or self.is_main

    def __repr__(self) -> str:
        return f"Seam({self.mode!r}, rank={self.rank}, world={self.world}, device={self.device})"

    # ---- before training ---------------------------------------------------------------------------------------
    def check(self, run) -> None:
        """Clear errors for what cannot run in this mode: the method, the batch size."""
        name = type(run.method).__name__
        if name not in SUPPORTED[self.mode]:
            modes = [m for m in MODES if name in SUPPORTED[m]]
            raise DistributedError(
                f"method {name} has no {self.mode!r} support (supported there: {sorted(SUPPORTED[self.mode])}"
                + (f"; {name} runs under {modes}" if modes else "") + ")")
        if self.precision != "fp32" and name in MERGES_FULL_MATRICES:
            raise DistributedError(f"method {name} merges whole matrices, which under precision={self.precision!r} "
                                   "would round the fp32 master weights to bf16 at every merge; use precision='fp32'")
        # Any global batch runs at any world size: uneven shards are weighted (``rows``, ``loss_weight``), and a
        # rank with no rows (a batch smaller than the world) still joins every collective with a zero gradient.

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to this rank's device and wrap it; returns the module the training forward calls.

        DDP: the run keeps the plain model (probes and names see it unchanged) and trains through the wrapper.
        FSDP2: ``fully_shard`` shards every parameter along dim 0 in place (they become ``DTensor``s), so the
        optimizer must be built after this call; each repeated block is its own unit, then the root
        (``orthoscope.distributed.sharding``: a rank holds one block unsharded at a time, plus the prefetched one
        unless ``self.prefetch`` is 0), in ``self.precision``.
        """
        on_meta = any(p.is_meta for p in model.parameters())      # materialised after sharding (pretrained.py)
        if not on_meta and any(t.device != self.device for t in [*model.parameters(), *model.buffers()]):
            model.to(self.device)
        if not any(p.requires_grad for p in model.parameters()):
            raise DistributedError("the model has no trainable parameters; nothing to distribute")
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids, **self._bucket_options(DistributedDataParallel))
        from .sharding import shard_per_block
        shard_per_block(model, self.mesh, self.precision, self.prefetch)
        return model

    def _bucket_options(self, ddp_class) -> dict:
        """DDP's gradient buckets, one parameter each at world size 3 and more, so a restarted run is bitwise the
        uninterrupted one.

        DDP all-reduces each bucket as one flat buffer, and the collective (gloo's ring, NCCL's ring or tree) splits
        a buffer into pieces by offset; each piece's sum starts on another rank, so *where* in its bucket a gradient
        lies decides the order in which the N ranks' values are added. DDP's first iteration puts every parameter in
        one bucket in registration order and then rebuilds the buckets in the order gradients became ready: the
        step after a restart is reduced in the first layout, the same step of the uninterrupted run in the rebuilt
        one, and at N ≥ 3, (a + b) + c ≠ a + (b + c) in the last bits (measured ≤ 1.2e-7 on the losses, 7.8e-5 on a
        condition number, tiny Llama, 5 + 5 steps). With one parameter per bucket (``bucket_cap_mb_list``: a limit
        of one byte, in the first layout and in the rebuilt one) each gradient is reduced alone, the same way in
        both. At N = 2 the sum of two values does not depend on their order (fp addition commutes), so DDP's
        default buckets — fewer, larger collectives — are kept. Torch versions without ``bucket_cap_mb_list`` keep
        the default buckets (restarts then agree within the bound in docs/distributed.md)."""
        import inspect

        if self.world < 3 or "bucket_cap_mb_list" not in inspect.signature(ddp_class).parameters:
            return {}
        return {"bucket_cap_mb_list": [1 / 2 ** 20]}        # MiB: one byte, so every bucket closes after one tensor

    def adopt(self, optimizer) -> None:
        """Give an optimizer with a full-matrix path (``GroupedOptimizer``: Muon, Pion, Hyperball) the
        ``FullMatrices`` hook, so each matrix is updated whole, on one rank."""
        if hasattr(optimizer, "full_matrices"):
            from .matrices import FullMatrices
            optimizer.full_matrices = FullMatrices(self.rank, self.world)

    # ---- during training ---------------------------------------------------------------------------------------
    def rows(self, batch: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``batch`` rows: the balanced split
        ``lo_r = ⌊r·B/N⌋``, the same on every rank and at every step, whatever B and N (shard sizes differ by at most
        one row; a batch smaller than the world leaves some ranks empty)."""
        return self.rank * batch // self.world, (self.rank + 1) * batch // self.world

    def shard_batch(self, x: torch.Tensor, y: torch.Tensor):
        """This rank's rows of the global batch (contiguous, in order; ``rows``), on this rank's device."""
        lo, hi = self.rows(len(x))
        return x[lo:hi].to(self.device), y[lo:hi].to(self.device)

    def loss_weight(self, batch: int) -> float:
        """The factor on this rank's *mean* loss over its ``n_r`` rows of a ``batch``-row global batch, so that the
        gradient DDP/FSDP2 average over the N ranks is the one-process gradient of the global mean:

            (1/N) Σ_r (N·n_r/B) · (1/n_r) Σ_{i ∈ r} ∇ℓ_i  =  (1/B) Σ_i ∇ℓ_i.

        With even shards (n_r = B/N) the factor is exactly 1.0, so an evenly divided batch computes what it did
        before uneven shards were allowed, bit for bit."""
        lo, hi = self.rows(batch)
        return self.world * (hi - lo) / batch

    def mean(self, value: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """The global-batch mean of a scalar: each rank's mean over its shard of a ``batch``-row global batch,
        weighted by its rows (``Σ_r n_r·v_r / B``, one all-reduce); without ``batch``, the plain mean over ranks.
        A rank with no rows contributes nothing (its ``value`` may be NaN, the mean of nothing). Even shards take
        the plain mean over ranks (the same number; kept so such runs are bitwise what they were)."""
        out = value.detach().clone()
        if batch is None or batch % self.world == 0:   # even shards: the plain mean, as before uneven ones existed
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
            return out / self.world
        lo, hi = self.rows(batch)
        out = out * (hi - lo) if hi > lo else torch.zeros_like(out)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / batch

    def first_bad(self, names: list[str], local_bad: str | None) -> str | None:
        """Agree on the first non-finite parameter name over all ranks (each rank checks only its shards)."""
        index = torch.tensor(len(names) if local_bad is None else names.index(local_bad), device=self.device)
        dist.all_reduce(index, op=dist.ReduceOp.MIN)
        return None if int(index) == len(names) else names[int(index)]

    def run_probes(self, probes: list, view) -> dict:
        """The records of ``probes`` (due at this step) on ``view`` (a ``ProbeView``), as one process would compute them.

        DDP: on rank 0 (the caller checks ``probes_here``), on its full model. FSDP2: a probe with a sharded form
        (``SHARDED_PROBES``: the gradient norm, due every step by default) runs on this rank's shards plus one
        all-reduce of a few numbers; the others run inside one ``full_weights`` gather, which is entered only when
        one of them is due — gathering the whole model and its gradients every step just for the gradient norm
        cost 48 % of the small Llama's step time (benchmarks/bench_distributed.py --probes). Inside the gather,
        probes that only read weights (``_weight_readers``: spectra, norms, energies) run on rank 0 alone, whose
        record is the one kept; probes that run the model (``Evaluate``) run on every rank, since FSDP2's forward
        is collective."""
        if self.mode != "fsdp":
            return {k: v for probe in probes for k, v in probe(view).items()}
        sharded, readers = _sharded_probes(), _weight_readers()
        results = {id(p): sharded[type(p)](p, view, self) for p in probes if type(p) in sharded}
        whole = [p for p in probes if type(p) not in sharded]
        if whole:
            with self.full_weights(view.model):
                for p in whole:                # a pure weight reader's result is rank 0's to record: run it there
                    results[id(p)] = p(view) if self.is_main or type(p) not in readers else {}
        return {k: v for p in probes for k, v in results[id(p)].items()}    # in the probes' order

    @contextlib.contextmanager
    def full_weights(self, model: nn.Module):
        """Under FSDP2, every parameter unsharded for the duration, with its full gradient (two all-gathers per
        probe step: weights and gradients), so probes see what one process sees; elsewhere nothing happens."""
        modules = [m for m in model.modules() if hasattr(m, "unshard") and hasattr(m, "reshard")]
        if self.mode != "fsdp" or not modules:
            yield
            return
        from .sharding import kept_unsharded

        grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        for m in modules:
            m.unshard()                                # the module attributes are now full plain Parameters
        unsharded = dict(model.named_parameters())
        try:
            for name, g in grads.items():         # under bf16 the gathered weights are bf16: so their grads
                unsharded[name].grad = full(g).to(unsharded[name].dtype)
            with kept_unsharded(modules):          # a probe's forward (Evaluate) must not reshard the blocks
                yield
        finally:
            for p in unsharded.values():               # FSDP2 accumulates into unsharded grads in backward:
                p.grad = None                          # leave none behind
            for m in modules:
                m.reshard()

    def after_step(self, intervention, run) -> None:
        """``intervention.after_step(run)`` (merges, reinitializations) on full weights.

        DDP: every rank runs it on its identical full model (the same permutations from the same seeded generator,
        the same merge schedule), so ranks stay identical. FSDP2: an elementwise intervention (SoRA's proximal
        step) runs on the shards. One with ``needs_full_weights`` (POET's merge), when due (on multiples of its
        ``every``), runs each layer's merge **once**, on the layer's owner (``matrices.OwnerMerges``: gather W_s
        and Q to it, merge in float64 there, scatter the new W_s's rows back) when it says it can
        (``owner_mergeable``); otherwise (a quantized POET base) on unsharded weights on every rank — the same
        full-matrix arithmetic as one process — with every parameter written back into this rank's rows of its
        shard (FSDP2 would otherwise drop changes made to unsharded weights). Inside that fallback, module
        attributes are the unsharded parameters, not the ones the optimizer holds: such an intervention must
        identify parameters it fixed at construction.
        """
        due = run.step_count % getattr(intervention, "every", 1) == 0
        if self.mode != "fsdp" or not getattr(intervention, "needs_full_weights", False) or not due:
            intervention.after_step(run)
            return
        if getattr(intervention, "owner_mergeable", False):
            from .matrices import OwnerMerges
            intervention.after_step(run, merge_layers=OwnerMerges(self.rank, self.world))
            return
        if self.precision != "fp32":      # the gathered weights are bf16 copies: writing them back rounds the masters
            raise DistributedError(f"{type(intervention).__name__} merges whole matrices, which under precision="
                                   f"{self.precision!r} would round the fp32 master weights to bf16; use "
                                   "precision='fp32' (nothing was changed at this step)")
        sharded = dict(run.model.named_parameters())
        with self.full_weights(run.model):
            unsharded = dict(run.model.named_parameters())
            storage = {name: p.data for name, p in unsharded.items()}
            intervention.after_step(run)
            with torch.no_grad():
                for name, p in run.model.named_parameters():
                    write_rows(sharded[name], p.detach())
                    unsharded[name].data = storage[name]      # FSDP2 owns the unsharded storage: give it back

    def barrier(self) -> None:
        dist.barrier()


def sharded_grad_norm(probe, view, seam: Seam) -> dict:
    """``GradNorm`` on FSDP2 shards: each rank sums the squares of its gradient rows per parameter, one all-reduce
    adds them over ranks, and the norms are their square roots — the one-process values up to the order of fp32
    additions (``probes.training.GradNorm`` sums squared per-parameter norms the same way)."""
    names = [name for name, _ in view.model.named_parameters()]
    squares = torch.zeros(len(names), dtype=torch.float64, device=seam.device)
    present = torch.zeros(len(names), dtype=torch.float64, device=seam.device)
    with torch.no_grad():
        for i, (_, p) in enumerate(view.model.named_parameters()):
            if p.grad is not None:
                squares[i] = local(p.grad).float().pow(2).sum().double()
                present[i] = 1.0
    dist.all_reduce(squares, op=dist.ReduceOp.SUM)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    out = {}
    if probe.per_parameter:
        out.update({f"grad_norm/{name}": squares[i].sqrt().item() for i, name in enumerate(names) if present[i]})
    if view.step_count > 0:
        out["grad_norm/total"] = squares[present > 0].sum().sqrt().item()
    return out


def _sharded_probes() -> dict:
    """Probe classes (exact types) that have a sharded form under FSDP2 → that form."""
    from ..probes.training import GradNorm

    return {GradNorm: sharded_grad_norm}


def _weight_readers() -> set:
    """Stateless probe classes (exact types) that only read the gathered weights: no collective inside them."""
    from ..probes.spectrum import Energy, Spectrum, WeightNorm

    return {Spectrum, WeightNorm, Energy}


def global_batch_size(task) -> int:
    """The number of rows ``task.batch`` returns (its ``batch_size``, or the full training set)."""
    if callable(getattr(task, "batch_sizes", None)):        # DatasetTask: the full batch (first), a shorter last one
        return task.batch_sizes()[0]
    size = getattr(task, "batch_size", None)
    n = len(task.x_train) if hasattr(task, "x_train") else None
    if size is None or (n is not None and size >= n):
        if n is None:
            raise DistributedError(f"cannot tell the batch size of {type(task).__name__}: set batch_size")
        return n
    return int(size)


def write_rows(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy the full ``value`` into ``param``: a ``DTensor`` keeps only its own rows (``Shard(0)`` placement)."""
    if not hasattr(param, "to_local"):
        param.copy_(value)
        return
    from torch.distributed.tensor import distribute_tensor
    # src_data_rank=None: every rank holds the same full value, so each slices its rows locally (no broadcast)
    param.to_local().copy_(distribute_tensor(value, param.device_mesh, param.placements,
                                             src_data_rank=None).to_local())


def local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this rank holds (a ``DTensor``'s local shard; any other tensor itself)."""
    return t.to_local() if hasattr(t, "to_local") else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole of ``t`` (a ``DTensor`` all-gathered; any other tensor itself). Collective for a DTensor."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: full CPU tensor}`` for every parameter and buffer (collective under FSDP2: call on every rank)."""
    return {k: full(v.detach()).cpu() for k, v in model.state_dict().items()}
