"""Run: the visible training loop.

    run = Run(model, task, AdamW(lr=1e-3, weight_decay=1.0), probes=default_probes(), seed=0)
    run.train(2000)          # tqdm progress bar; probes record into run.history on their schedule
    run.step()               # one step, so a widget or a notebook cell can drive it
    run.on_step(callback)    # callback(run, record) after every step (how widgets subscribe)
    run.save("ckpt.safetensors"); run.load("ckpt.safetensors")   # bit-identical resume on CPU

Under ``torchrun`` the same ``Run`` trains with DDP or FSDP2 (``distributed=``; see ``orthoscope.distributed``).

The order inside one step is: zero_grad → forward → loss → backward → interventions.before_step (clipping) →
optimizer.step → step_count += 1 → interventions.after_step (merges) → probes due at this step → callbacks.
Optimizers that re-evaluate the loss (LBFGS: ``method.needs_closure``) get a closure that runs forward → loss →
backward → interventions.before_step, so clipping applies to every gradient they see.
Probes also run once at step 0, before the first update, so every curve starts at initialization.
Every step is also timed (``run.throughput``, ``orthoscope.training.throughput``): every 10 steps the History gets
``throughput/step_s``, tokens (or examples) per second, TFLOP/s and, where the device's peak is known, MFU.
"""
from __future__ import annotations

import numbers
import time
from typing import Callable, Sequence

import torch
from torch import nn

from ..core.checkpoint import (CheckpointError, check_structure, comparable_method_config, flatten_optimizer_state,
                               read_checked, require, rng_state, set_rng_state, unflatten_optimizer_state, write_atomic)
from ..core.history import History
from ..core.keys import key
from ..core.structure import fingerprint, tensor_digests
from ..distributed import seam as _dist
from ..methods.base import AdamW, Method
from ..methods.losses import resolve_loss
from ..probes.base import warn_unreached
from ..probes.view import ProbeView
from ..tasks.base import load_task_state, task_state
from .checks import check_model_fits_task, check_override, check_run_arguments
from .throughput import Throughput

CHECKPOINT_KIND = "orthoscope.Run"
GUARD_MAX_PARAMS = 5_000_000


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient. The model and optimizer keep their last good state."""

    def __init__(self, message: str, step: int, parameter: str | None):
        super().__init__(message)
        self.step, self.parameter = step, parameter


class Run:
    """One seeded, deterministic training run of ``model`` on ``task`` with ``method``.

    Args:
        model: any ``nn.Module`` mapping a task's inputs to outputs the loss understands.
        task: a ``orthoscope.tasks.Task`` (``batch(generator)``, ``eval_sets()``).
        method: an ``orthoscope.methods.Method`` (default ``AdamW()``); it may attach an adapter to the model.
        loss: a loss name (``"cross_entropy"``, ``"mse_onehot"``, …) or callable; default: the task's.
        probes: list of probes; ``None`` for ``default_probes()``, ``[]`` for none.
        seed: seeds the data order and torch's global RNG (dropout). Model init is the caller's (seed it first).
        name: label in legends (default: the method's label).
        distributed: ``"auto"`` (under torchrun: ``$ORTHOSCOPE_DISTRIBUTED``, default ``"ddp"``; else one process),
            ``"ddp"``, ``"fsdp"`` (FSDP2) or ``None`` (one process). See ``orthoscope.distributed``.
    """

    def __init__(self, model: nn.Module, task, method: Method | None = None, *, loss=None,
                 probes: Sequence | None = None, seed: int = 0, name: str | None = None, distributed="auto"):
        from ..probes import default_probes

        check_run_arguments(model, task, method, probes, seed, name)
        self.method = method if method is not None else AdamW()
        self.task = task
        self.dist = _dist.setup(distributed, self)     # None in one process; checks run before anything changes
        self.model = self._attach(model)
        self._forward = self._place_model()            # FSDP2 shards in place; a meta-device model gets its values
        self.optimizer = self.method.make_optimizer(self.model)
        if self.dist is not None:
            self.dist.adopt(self.optimizer)            # full-matrix optimizers split their work across ranks
        self.interventions = list(self.method.interventions(self.model))
        self.loss_fn = resolve_loss(loss if loss is not None else getattr(task, "default_loss", "cross_entropy"))
        self.probes = list(default_probes() if probes is None else probes)
        self.seed = int(seed)
        self.name = name or self.method.label()
        self.generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.history = History()
        self.step_count = 0
        self.last_loss: float | None = None
        self.wall_time = 0.0
        self.overrides: dict = {}             # hyperparameters changed deliberately (``override``), as saved
        self._callbacks: list[Callable] = []
        self.throughput = Throughput()        # step time, tokens/s, MFU into the History (training/throughput.py)

    # ---- the loop ----------------------------------------------------------------------------------------------
    def train(self, steps: int, *, progress: bool = True, checkpoint_every: int | None = None,
              checkpoint_path=None, until: Callable[["Run"], bool] | None = None) -> "Run":
        """Train ``steps`` more steps (stopping early when ``until(run)`` is true). Returns ``self``.

        Every ``checkpoint_every`` steps: ``run.save(checkpoint_path)``, or ``checkpoint_path(run)`` when it is a
        callable that writes the checkpoint itself (``orthoscope train``'s step-numbered directories)."""
        if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        steps = int(steps)
        if checkpoint_every is not None and (checkpoint_every <= 0 or checkpoint_path is None):
            raise ValueError("checkpoint_every needs a positive interval and a checkpoint_path")
        from tqdm.auto import tqdm

        warn_unreached(self.probes, self.step_count + steps)

        bar = tqdm(total=steps, desc=self.name, disable=not progress or not self._is_main, leave=False)
        try:
            for _ in range(steps):
                record = self.step()
                bar.update(1)
                bar.set_postfix(loss=f"{self.last_loss:.4g}", refresh=False)
                if checkpoint_every and self.step_count % checkpoint_every == 0:   # on every rank: collective
                    checkpoint_path(self) if callable(checkpoint_path) else self.save(checkpoint_path)
                if until is not None and until(self):
                    break
        finally:
            bar.close()
        return self

    def step(self) -> dict:
        """One training step; returns the record logged at this step (probes that were due, and the batch loss)."""
        if self.step_count == 0 and len(self.history) == 0:
            if self.dist is None:
                self._record_initial_state()           # the values training starts from, edits after Run(...) too
            self._observe(initial=True)
        t0 = time.perf_counter()
        self.throughput.begin(self.model)
        self.model.train()
        x, y = self.task.batch(self.generator)         # the global batch; under torchrun each rank keeps its rows
        self.throughput.add_batch(x, y)                # the global batch: its tokens (or examples) on all ranks
        if getattr(self.method, "needs_closure", False):
            return self._closure_step(x, y, t0)
        self.optimizer.zero_grad(set_to_none=True)
        with self.throughput.counting(self.dist):     # FLOPs of the first step (FlopCounterMode), once
            loss = self._forward_backward(x, y)
        for iv in self.interventions:
            iv.before_step(self)
        bad = self._first_non_finite(grads=True)
        if bad is not None:
            raise self._non_finite(f"gradient of {bad!r} is non-finite at step {self.step_count + 1}", grads=True)
        snapshot = self._snapshot()
        self.optimizer.step()
        bad = self._first_non_finite(grads=False)
        if bad is not None:
            self._restore(snapshot)
            raise self._non_finite(f"parameter {bad!r} became non-finite in the update of step "
                                   f"{self.step_count + 1}", grads=False, param=bad, restored=snapshot is not None)
        self.step_count += 1
        for iv in self.interventions:
            self.dist.after_step(iv, self) if self.dist is not None else iv.after_step(self)
        self.last_loss = loss.item()                  # the global-batch mean (all-reduced under torchrun)
        self.wall_time += time.perf_counter() - t0
        self.throughput.end()
        return self._observe(batch_loss=self.last_loss)

    def _output(self, x, y):
        """The (wrapped, under torchrun) model's output; on the first step, also check that model and task fit
        (sizes named, not an IndexError from deep inside torch)."""
        if self.step_count > 0:
            return self._forward(x)

        return check_model_fits_task(self._forward, self.task, x, y)

    def _forward_backward(self, x, y) -> torch.Tensor:
        """Forward and backward of one global batch, or of ``grad_accum`` batches (the first is ``x, y``; the others
        are drawn after it) with each loss divided by ``grad_accum``, so the gradient is that of their mean loss.
        Under torchrun each rank runs its rows of each batch (``Seam.shard_batch``, uneven when N does not divide
        B), its mean loss weighted by ``Seam.loss_weight`` so the averaged gradient is the one-process one."""
        accum = getattr(self, "grad_accum", 1)
        total = 0.0
        for i in range(accum):
            if i:
                x, y = self.task.batch(self.generator)
                self.throughput.add_batch(x, y)
            batch = len(x)
            if self.dist is not None:
                x_all, (x, y) = x, self.dist.shard_batch(x, y)
            output = self._output(x, y)
            if len(x) == 0:       # a rank with no rows of a batch smaller than the world: a zero gradient, through
                loss = output.sum() * 0.0              # the whole graph so DDP/FSDP2's collectives still run
            else:
                loss = self.loss_fn(output, y)
            reported = self.dist.mean(loss, batch) if self.dist is not None else loss   # the global-batch mean
            if not torch.isfinite(reported):
                whole = x_all if self.dist is not None else x
                if whole.is_floating_point() and not torch.isfinite(whole).all():
                    raise NonFiniteError(f"training stopped: the input batch of step {self.step_count + 1} holds "
                                         f"{int((~torch.isfinite(whole)).sum())} non-finite value(s) (NaN/inf) — "
                                         "the data, not the learning rate; nothing was updated", self.step_count, None)
                raise self._non_finite(f"loss is {reported.item()} at step {self.step_count + 1}", grads=False)
            weight = 1.0 if self.dist is None else self.dist.loss_weight(batch)
            if weight != 1.0:
                loss = loss * weight
            (loss if accum == 1 else loss / accum).backward()
            total = total + reported.detach()
        return total if accum == 1 else total / accum

    def _closure_step(self, x, y, t0) -> dict:
        """For optimizers that re-evaluate the loss (LBFGS): ``optimizer.step(closure)``; the loss is re-checked."""
        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self._forward(x), y)
            loss.backward()
            for iv in self.interventions:               # every evaluation's gradient, as in the plain path
                iv.before_step(self)
            return loss

        snapshot = self._snapshot()
        with self.throughput.counting(self.dist):
            loss = self.optimizer.step(closure)
        bad = self._first_non_finite(grads=False)
        if bad is not None or not torch.isfinite(loss):
            self._restore(snapshot)
            raise self._non_finite(f"loss {loss.detach().item()} / parameter {bad!r} non-finite at step {self.step_count + 1}",
                                   grads=False, param=bad, restored=snapshot is not None)
        self.step_count += 1
        for iv in self.interventions:
            self.dist.after_step(iv, self) if self.dist is not None else iv.after_step(self)
        self.last_loss = float(loss.detach())
        self.wall_time += time.perf_counter() - t0
        self.throughput.end()
        return self._observe(batch_loss=self.last_loss)

    def _observe(self, batch_loss: float | None = None, initial: bool = False) -> dict:
        record = {} if batch_loss is None else {"loss/batch": batch_loss}
        if not initial:
            record.update(self.throughput.record(self.step_count, self.dist))   # collective under torchrun
        due = [probe for probe in self.probes if initial or self.step_count % probe.every == 0]
        if due and self.dist is not None and self.dist.probes_here:
            record.update(self.dist.run_probes(due, self.probe_view()))    # FSDP2: gathers only when needed
        elif due and self.dist is None:
            view = self.probe_view()
            for probe in due:
                record.update(probe(view))
        if not self._is_main:
            return record                              # rank 0 observes: History and callbacks live there
        self.history.log(self.step_count, record)
        for cb in self._callbacks:
            cb(self, record)
        return record

    def probe_view(self) -> ProbeView:
        """What the probes read at this step: the narrow view a recorder of your own loop provides too."""
        return ProbeView(self.model, self.step_count, self.last_loss, self.optimizer, self.task, self.loss_fn,
                         self.history, self.dist, self.name)

    def on_step(self, callback: Callable[["Run", dict], None]) -> Callable[[], None]:
        """Call ``callback(run, record)`` after every step; returns a function that unsubscribes it."""
        if not callable(callback):
            raise TypeError(f"on_step(callback): callback must be callable as callback(run, record), got "
                            f"{callback!r:.60}")
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def _attach(self, model: nn.Module) -> nn.Module:
        """``method.attach(model)``. A method whose attach computes with the weights' values (POET no longer: it
        keeps its draws for ``materialize``) cannot attach on the meta device: in one process and under DDP, where
        the model is whole anyway, it is materialised first; under FSDP2 that would put the whole model on every
        rank, so it is refused with a message that says so."""
        from ..distributed import pretrained

        try:
            return self.method.attach(model)
        except NotImplementedError as e:
            if not pretrained.on_meta(model):
                raise
            if self.dist is not None and self.dist.mode == "fsdp":
                raise ValueError(
                    f"method {type(self.method).__name__} cannot attach to a model on the meta device (init_device="
                    f"'meta' / pretrained): its attach computes with the weights' values "
                    f"({str(e).splitlines()[0][:100]}), and under FSDP2 the whole model would have to be on every "
                    "rank first; run it in one process or under DDP, or build the model with its values") from e
        device = self.dist.device if self.dist is not None else model.meta_init.device
        self.load_report = pretrained.materialize(model, device)   # attach failed before changing the model
        return self.method.attach(model)

    def _place_model(self) -> nn.Module:
        """The module the training forward calls: the model itself, or the seam's wrapper (DDP) / sharded model
        (FSDP2). The values training starts from are recorded (``_record_initial_state``) before FSDP2 shards them.

        A model built on the meta device (``build_llama(..., init_device="meta")``) is materialised here by its
        ``meta_init`` plan (``orthoscope.distributed.pretrained``): under FSDP2 *after* sharding, so each rank fills
        only its rows; elsewhere before (DDP broadcasts values at wrapping). Its full values are then never on one
        rank under FSDP2, so run.config checks such a run's structure and its recorded seed or weights directory."""
        from ..distributed import pretrained

        if not pretrained.on_meta(self.model):
            self._record_initial_state()               # before FSDP2 shards it: run.config checks the values
            return self.dist.prepare(self.model) if self.dist else self.model
        if self.dist is not None and self.dist.mode == "fsdp":
            forward = self.dist.prepare(self.model)
            self.load_report = pretrained.materialize(self.model, self.dist.device)
            self.initial_digests = None
            return forward
        device = self.dist.device if self.dist is not None else self.model.meta_init.device
        self.load_report = pretrained.materialize(self.model, device)
        self._record_initial_state()
        return self.dist.prepare(self.model) if self.dist else self.model

    def _record_initial_state(self) -> None:
        """Digests of the model's values as training starts (``tensor_digests``), so ``run.config`` can check that
        its config builds these very weights; kept for models up to ``GUARD_MAX_PARAMS`` parameters, where hashing
        them is cheap (larger ones are checked for structure only, and must record their ``init_seed``)."""
        small = sum(p.numel() for p in self.model.parameters()) <= GUARD_MAX_PARAMS
        self.initial_digests = tensor_digests(self.model) if small else None

    @property
    def _is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    # ---- non-finite guard -------------------------------------------------------------------------------------
    def _first_non_finite(self, grads: bool) -> str | None:
        bad = None
        for name, p in self.model.named_parameters():
            t = p.grad if grads else p
            if t is not None and not torch.isfinite(_dist.local(t)).all():   # under FSDP2: this rank's shard
                bad = name
                break
        if self.dist is not None:                      # every rank must take the same branch
            bad = self.dist.first_bad([n for n, _ in self.model.named_parameters()], bad)
        return bad

    def _snapshot(self):
        """Copies of parameters and optimizer state taken before an update, so a non-finite update can be undone.
        Taken only for models up to ``GUARD_MAX_PARAMS`` parameters (a copy per step is cheap there, not at LLM size)."""
        if sum(p.numel() for p in self.model.parameters()) > GUARD_MAX_PARAMS:
            return None
        params = [p.detach().clone() for p in self.model.parameters()]
        state = {id(p): {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
                 for p, s in self.optimizer.state.items()}
        return params, state

    def _restore(self, snapshot) -> None:
        if snapshot is None:
            return
        params, state = snapshot
        with torch.no_grad():
            for p, saved in zip(self.model.parameters(), params):
                p.copy_(saved)
        for p in list(self.optimizer.state):
            if id(p) in state:
                self.optimizer.state[p] = state[id(p)]
            else:
                del self.optimizer.state[p]

    def _non_finite(self, what: str, grads: bool, param: str | None = None, restored: bool = True):
        param = param or self._first_non_finite(grads=grads)
        self.optimizer.zero_grad(set_to_none=True)
        largest = max((p.detach().abs().max().item() for p in self.model.parameters() if p.numel()), default=0.0)
        where = f"; first non-finite {'gradient' if grads else 'parameter'}: {param!r}" if param else \
            (f"; all parameters are finite but reach |w| = {largest:.1e} (the loss itself overflowed: the updates "
             "diverged — resume from an earlier checkpoint with run.load(path, override={'lr': smaller}))")
        kept = (f"The model and optimizer keep their state from step {self.step_count} (the last good one); to go on "
                "deliberately with other settings, run.override(lr=...) (recorded in the History) and train again."
                if restored else f"The model is too large for the undo copy; reload your last checkpoint "
                "(run.load(path, override={'lr': ...}) to resume with other settings).")
        return NonFiniteError(f"training stopped: {what}{where}. {kept}", self.step_count, param)

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def _signature(self) -> dict:
        return {name: list(t.shape) for name, t in self.model.state_dict().items()}

    def save(self, path) -> None:
        """Write model, optimizer, RNG, interventions and history to one safetensors file, atomically."""
        if self.dist is not None:                      # a directory of shards (torch.distributed.checkpoint)
            from ..distributed.checkpoint import save
            save(self, path)
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim_meta, optim_tensors = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(optim_tensors)
        tensors.update(rng_state(self.generator))
        for i, iv in enumerate(self.interventions):
            tensors.update({f"intervention{i}.{k}": v for k, v in iv.state_dict().items()})
        hist_meta, hist_tensors = self.history.state()
        tensors.update({f"history.{k}": v for k, v in hist_tensors.items()})
        meta = {"kind": CHECKPOINT_KIND, "step": self.step_count, "seed": self.seed, "last_loss": self.last_loss,
                "wall_time": self.wall_time, "method": self.method.config(), "signature": self._signature(),
                "structure": fingerprint(self.model), "optimizer": optim_meta, "history": hist_meta,
                "overrides": self.overrides,
                "task": task_state(self.task, self.generator)}     # DatasetTask: (seed, epoch, position); else None
        write_atomic(path, tensors, meta)

    def override(self, **hyperparameters) -> "Run":
        """Change optimizer hyperparameters deliberately (e.g. ``run.override(lr=1e-4)`` after a non-finite halt):
        set in every parameter group, kept in checkpoints, and recorded in the History as ``override/<name>``."""

        check_override(self.optimizer, hyperparameters)
        for group in self.optimizer.param_groups:
            group.update(hyperparameters)
        self.overrides.update(hyperparameters)
        self.history.log(self.step_count, {key("override", k): float(v) for k, v in hyperparameters.items()})
        return self

    def load(self, path, override: dict | None = None) -> "Run":
        """Restore a checkpoint written by ``save`` into this (identically constructed) run; with ``override``
        (e.g. ``{"lr": 1e-4}``), then change those hyperparameters as ``override`` does. A directory is a sharded
        checkpoint (``torch.distributed.checkpoint``, any world size; ``orthoscope.distributed.checkpoint``).

        All or nothing: every field is checked first (``orthoscope.training.state``), and if applying still fails the
        run is left exactly as it was. A bad file raises ``CheckpointError`` naming the file and the field."""
        from pathlib import Path

        from . import state as run_state

        override = dict(override or {})
        check_override(self.optimizer, override)
        folder = Path(path)
        if folder.is_dir() and (any((folder / name).is_file() for name in ("manifest.json", "run.safetensors"))
                                or any(folder.glob("shard-*-model-*.safetensors"))):
            # sharded, any world size; verified against its manifest before anything is applied
            from ..distributed.checkpoint import load
            saved = run_state.snapshot(self)
            try:
                load(self, path)
            except CheckpointError:
                run_state.restore(self, saved)
                raise
            except Exception as e:
                run_state.restore(self, saved)
                raise CheckpointError(f"checkpoint {str(path)!r} could not be applied ({type(e).__name__}: "
                                      f"{str(e)[:300]}); the run is unchanged") from e
            return self.override(**override) if override else self
        tensors, meta = read_checked(path, kind=CHECKPOINT_KIND)
        mismatch = _signature_mismatch(self._signature(), require(path, meta, "signature", dict))
        if mismatch:
            raise CheckpointError(f"checkpoint {str(path)!r} was saved from a model of another shape: {mismatch}")
        check_structure(path, meta, self.model)        # module types too: a HarmonicHead is not a Linear
        # The optimizer's hyperparameters come from the checkpoint; a run built with other ones would silently
        # train with the saved ones, so a checkpoint resumes only the run (method and settings) that wrote it.
        mine = comparable_method_config(self.method.config())
        theirs = comparable_method_config(require(path, meta, "method", dict))
        if mine != theirs:
            diff = [f"{k}: run has {mine.get(k)!r}, checkpoint has {theirs.get(k)!r}"
                    for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
            raise CheckpointError(f"checkpoint {str(path)!r} was saved by another method: {'; '.join(diff)}")
        run_state.check_run_checkpoint(path, meta, tensors, self, override)
        saved = run_state.snapshot(self)
        try:
            self._apply_checkpoint(tensors, meta)
        except Exception as e:
            run_state.restore(self, saved)
            raise CheckpointError(f"checkpoint {str(path)!r} could not be applied ({type(e).__name__}: {e}); the run "
                                  "is unchanged") from e
        if override:
            self.override(**override)
        return self

    def _apply_checkpoint(self, tensors: dict, meta: dict) -> None:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(unflatten_optimizer_state(meta["optimizer"], tensors))
        set_rng_state(self.generator, tensors)
        for i, iv in enumerate(self.interventions):
            prefix = f"intervention{i}."
            iv.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.history = History.from_state(
            meta["history"], {k[len("history."):]: v for k, v in tensors.items() if k.startswith("history.")})
        self.step_count, self.last_loss, self.wall_time = meta["step"], meta["last_loss"], meta["wall_time"]
        self.overrides = dict(meta.get("overrides") or {})
        load_task_state(self.task, meta.get("task"), self.generator)

    # ---- configs (orthoscope.config) ---------------------------------------------------------------------------
    # The config layer sits above Run (it must know every task, model and method), so Run never imports it: the
    # package root connects it (``connect_config_layer`` in orthoscope/__init__.py).
    @property
    def config(self) -> dict:
        """Plain JSON data that rebuilds this run with ``Run.from_config`` (``orthoscope.config``)."""
        return _config_layer().run_config(self)

    @classmethod
    def from_config(cls, config: dict, overrides: Sequence[str] = ()) -> "Run":
        """The run a config describes, with ``key.path=value`` overrides; checked before anything is built."""
        return _config_layer().from_config(config, overrides)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, step={self.step_count}, task={type(self.task).__name__})"


_config_layer_getter: Callable[[], object] | None = None


def connect_config_layer(getter: Callable[[], object]) -> None:
    """Give ``Run.config`` and ``Run.from_config`` the config layer: ``getter()`` returns a module with
    ``run_config(run)`` and ``from_config(cfg, overrides)`` (``orthoscope.config.build``), imported when first used."""
    global _config_layer_getter
    _config_layer_getter = getter


def _config_layer():
    if _config_layer_getter is None:
        raise RuntimeError("Run.config / Run.from_config need the config layer, which `import orthoscope` connects")
    return _config_layer_getter()


def _signature_mismatch(mine: dict, theirs: dict) -> str:
    problems = [f"{k}: run has {mine[k]}, checkpoint has {theirs[k]}" for k in mine if k in theirs and mine[k] != theirs[k]]
    problems += [f"{k} missing from checkpoint" for k in mine if k not in theirs]
    problems += [f"unexpected {k} in checkpoint" for k in theirs if k not in mine]
    return "; ".join(problems[:8]) + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
