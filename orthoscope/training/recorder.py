"""The recorder: orthoscope's probes, History and Dashboard on a training loop you already have.

    rec = orthoscope.observe(model, optimizer=opt, run_dir="runs/mine")      # 1. once, before training
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.step(loss=loss)                                                  # 2. after the update, before zero_grad
    Dashboard(rec)                                                           # 3. (or Dashboard.watch("runs/mine"))

The probes are the ones a ``Run`` calls, on the same schedule (step 0 at ``observe``, then every ``every`` steps),
reading the same narrow view (``orthoscope.probes.view.ProbeView``), into the same ``History``; with the same model,
data order and optimizer a ``Run`` and your loop record identical values (tests/test_recorder.py).

**When to call ``step``.** After ``loss.backward()`` and ``optimizer.step()``, before the next ``zero_grad()``: the
gradient norm reads the gradients of the step, and ``zero_grad()`` (``set_to_none=True``, torch's default) removes
them. Called where no parameter has a gradient, ``step`` refuses with "step() before any backward". Or let the
optimizer call it: ``rec.attach(optimizer)`` (``register_step_post_hook``; the loss from ``loss=lambda: ...``).

**Under torchrun** (DDP or FSDP2), call ``observe`` and ``step`` on every rank, as you call the model: the loss is
averaged over ranks (the global-batch loss), and under FSDP2 weights are gathered — collectively — only on steps
where a probe that reads them is due (``orthoscope.distributed.seam``). Rank 0 records: the History, callbacks and
``run_dir`` are rank 0's, and reading ``rec.history`` on another rank is an error that says so.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..core.history import History
from ..core.stream import CONFIG, HISTORY, HistoryStream, cut_history
from ..methods.losses import resolve_loss
from ..probes.base import Probe, warn_unreached
from ..probes.view import ProbeView

DEFAULT_EVERY = 20


def loop_probes(every: int = DEFAULT_EVERY, optimizer=None, task=None) -> list[Probe]:
    """The default probes of a recorder: ``default_probes`` without evaluation unless there is a ``task``, plus the
    learning rate when there is an ``optimizer``."""
    from ..probes import Energy, Evaluate, GradNorm, LearningRate, Spectrum, WeightNorm

    probes = [Spectrum(every), WeightNorm(every), Energy(every, s=(1,)), GradNorm(every)]
    return ([Evaluate(every)] if task is not None else []) + probes + \
        ([LearningRate(every)] if optimizer is not None else [])


class Recorder:
    """Records probes of ``model`` trained by your own loop; build it with ``orthoscope.observe`` (its arguments)."""

    def __init__(self, model: nn.Module, probes: Sequence[Probe] | None = None, *, every: int | None = None,
                 optimizer=None, run_dir=None, task=None, loss=None, steps: int | None = None,
                 name: str | None = None, start: int = 0):
        self.model = unwrap(model)
        self.optimizer = optimizer
        self.task = task
        self.loss_fn = resolve_loss(loss) if loss is not None else (
            resolve_loss(getattr(task, "default_loss", "cross_entropy")) if task is not None else None)
        self.probes = _probe_list(probes, every, optimizer, task)
        self.name = name or type(self.model).__name__
        self.dist = seam_for(model)
        self.step_count = _non_negative_int(start, "start")
        self.last_loss: float | None = None
        self._history = History()
        self._callbacks: list[Callable] = []
        self._hooks: list = []
        view = self.probe_view()
        for probe in self.probes:
            if hasattr(probe, "check"):
                probe.check(view)                      # a clear error now, not at the first due step
        if steps is not None:
            warn_unreached(self.probes, _non_negative_int(steps, "steps"), stacklevel=4)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._stream = self._open_stream() if self.run_dir is not None and self.is_main else None
        self._observe(initial=True)

    # ---- the loop's one line ------------------------------------------------------------------------------------
    def step(self, loss=None, *, step: int | None = None) -> dict:
        """Record one optimizer step: ``loss`` (a tensor or number; logged as ``loss/batch``) and the probes due.

        Call it after ``backward`` and ``optimizer.step()``, before ``zero_grad`` (module docstring). ``step=``
        sets the step number (a loop that counts its own, e.g. the HF Trainer's ``global_step``); by default it is
        the previous one plus one. Returns the record (on every rank; only rank 0's is logged)."""
        if not any(p.grad is not None for p in self.model.parameters() if p.requires_grad):
            raise RuntimeError(
                "rec.step() found no gradient on any trainable parameter: step() before any backward, or after "
                "optimizer.zero_grad() removed them. Call it after loss.backward() and optimizer.step(), before "
                "the next zero_grad() (the gradient norm reads them)")
        new = self.step_count + 1 if step is None else _non_negative_int(step, "step")
        if new <= self.step_count:
            raise ValueError(f"step={new} is not after the last recorded step {self.step_count}")
        self.step_count = new
        if loss is not None:
            self.last_loss = self._global_loss(loss)
        return self._observe(batch_loss=None if loss is None else self.last_loss)

    def attach(self, optimizer, loss: Callable[[], object] | None = None) -> "Recorder":
        """Record after every ``optimizer.step()`` (``register_step_post_hook``) instead of calling ``step``.
        The optimizer never sees the loss: pass ``loss=lambda: last_loss`` to log it. ``close()`` detaches."""
        if not hasattr(optimizer, "register_step_post_hook"):
            raise TypeError(f"attach(optimizer): {type(optimizer).__name__} is not a torch.optim.Optimizer "
                            "(no register_step_post_hook)")
        if self.optimizer is None:
            self.optimizer = optimizer
        self._hooks.append(optimizer.register_step_post_hook(
            lambda *_: self.step(loss=None if loss is None else loss())))
        return self

    # ---- what it recorded ---------------------------------------------------------------------------------------
    @property
    def history(self) -> History:
        if not self.is_main:
            raise RuntimeError(f"rank {self.dist.rank} does not record: the History lives on rank 0 (rank 0 "
                               "records for all ranks). Read it, plot it or open a Dashboard under "
                               "`if rec.is_main:`")
        return self._history

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def on_step(self, callback: Callable[["Recorder", dict], None]) -> Callable[[], None]:
        """Call ``callback(rec, record)`` after every recorded step (as ``Run.on_step``); returns an unsubscriber."""
        if not callable(callback):
            raise TypeError(f"on_step(callback): callback must be callable as callback(rec, record), got "
                            f"{callback!r:.60}")
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def refresh(self) -> int:
        """For the Dashboard: your loop trains and records this run; there is nothing to read or to train here."""
        return 0

    def probe_view(self) -> ProbeView:
        return ProbeView(self.model, self.step_count, self.last_loss, self.optimizer, self.task, self.loss_fn,
                         self._history, self.dist, self.name)

    def close(self) -> None:
        """Detach from the optimizer and close the run directory's History file."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Recorder({self.name!r}, step={self.step_count}, probes={len(self.probes)})"

    # ---- inside ---------------------------------------------------------------------------------------------------
    def _observe(self, batch_loss: float | None = None, initial: bool = False) -> dict:
        """The probe-calling path of ``Run._observe``: the due probes on the view, rank 0 logs and notifies."""
        record = {} if batch_loss is None else {"loss/batch": batch_loss}
        due = [probe for probe in self.probes if initial or self.step_count % probe.every == 0]
        if due and self.dist is not None and self.dist.probes_here:
            record.update(self.dist.run_probes(due, self.probe_view()))
        elif due and self.dist is None:
            view = self.probe_view()
            for probe in due:
                record.update(probe(view))
        if not self.is_main:
            return record
        self._history.log(self.step_count, record)
        if self._stream is not None:
            self._stream(self, record)
        for cb in self._callbacks:
            cb(self, record)
        return record

    def _global_loss(self, loss) -> float:
        """The loss as a float; under torchrun the mean over ranks (each rank's shard → the global batch)."""
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(f"rec.step(loss=...): the loss must be one number, got a tensor of shape "
                                 f"{tuple(loss.shape)}")
            loss = loss.detach()
        elif not isinstance(loss, numbers.Real) or isinstance(loss, bool):
            raise TypeError(f"rec.step(loss=...): the loss must be a number or a one-element tensor, got "
                            f"{type(loss).__name__}")
        if self.dist is None:
            return float(loss)
        return self.dist.mean(torch.as_tensor(loss, dtype=torch.float32, device=self.dist.device).reshape(())).item()

    def _open_stream(self) -> HistoryStream:
        """The run directory's ``config.yaml`` (what recorded it) and ``history.jsonl`` (streamed), so
        ``Dashboard.watch(run_dir)`` follows it as it follows ``orthoscope train``."""
        import yaml

        history = self.run_dir / HISTORY
        if history.is_file() and history.stat().st_size and self.step_count == 0:
            raise FileExistsError(f"run_dir {str(self.run_dir)!r} already holds a History ({HISTORY}); choose a new "
                                  "run_dir, or delete it to record again from step 0 (a resumed loop passes start=)")
        cut_history(history, self.step_count - 1)      # a resumed loop: its records from `start` on are written anew
        self.run_dir.mkdir(parents=True, exist_ok=True)
        described = {"recorder": {"name": self.name, "model": type(self.model).__name__,
                                  "optimizer": None if self.optimizer is None else type(self.optimizer).__name__,
                                  "probes": [repr(p) for p in self.probes],
                                  "world_size": 1 if self.dist is None else self.dist.world}}
        (self.run_dir / CONFIG).write_text(yaml.safe_dump(described, sort_keys=False))
        return HistoryStream(history)


def observe(model: nn.Module, probes: Sequence[Probe] | None = None, *, every: int | None = None, optimizer=None,
            run_dir=None, task=None, loss=None, steps: int | None = None, name: str | None = None,
            start: int = 0) -> Recorder:
    """Record orthoscope's probes from your own training loop (module docstring); returns the ``Recorder``.

    Args:
        model: your ``nn.Module`` (a DDP or ``torch.compile`` wrapper is unwrapped; an FSDP2-sharded one is
            gathered when a probe is due). Probes record at step 0 here, then on their schedule.
        probes: a list of probes (``orthoscope.probes``); ``None``: spectra, weight norms, hyperspherical energy and
            gradient norm every ``every`` steps, plus the learning rate with ``optimizer`` and evaluation with ``task``.
        every: the default probes' interval (default 20); probes you pass carry their own.
        optimizer: your optimizer, for the learning rate of each param group (``lr/group<i>``).
        run_dir: stream the History to ``run_dir/history.jsonl`` (the format ``orthoscope train`` writes), so
            ``Dashboard.watch(run_dir)`` follows your script from a notebook.
        task, loss: evaluation sets (anything with ``eval_sets() -> {split: (x, y)}``) and the loss for them,
            for ``Evaluate``.
        steps: the steps you plan; a probe whose ``every`` is longer would record only step 0 (a warning).
        name: label in legends (default: the model's class). start: the step your loop is at (a resumed loop).
    """
    return Recorder(model, probes, every=every, optimizer=optimizer, run_dir=run_dir, task=task, loss=loss,
                    steps=steps, name=name, start=start)


def unwrap(model) -> nn.Module:
    """The module probes should name paths in: the model inside DDP / DataParallel / ``torch.compile``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"observe(model): model must be a torch.nn.Module, got {type(model).__name__}")
    if type(model).__name__ == "FullyShardedDataParallel":
        raise TypeError("observe(model): FSDP1 (FullyShardedDataParallel) is not supported; shard with FSDP2's "
                        "torch.distributed.fsdp.fully_shard, which the recorder gathers when a probe is due")
    while True:
        inner = getattr(model, "module", None) if type(model).__name__ in ("DistributedDataParallel",
                                                                          "DataParallel") else None
        inner = inner if inner is not None else getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def seam_for(model: nn.Module):
    """The distributed seam the recorder observes through: ``None`` in one process; under an initialized process
    group ``"fsdp"`` when the model is FSDP2-sharded, else ``"ddp"`` (each rank holds the whole model)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    from ..distributed.seam import Seam

    sharded = any(hasattr(m, "unshard") and hasattr(m, "reshard") for m in model.modules())
    return Seam("fsdp" if sharded else "ddp", make_mesh=False)


def _probe_list(probes, every, optimizer, task) -> list[Probe]:
    if probes is None:
        return loop_probes(DEFAULT_EVERY if every is None else _positive_int(every, "every"), optimizer, task)
    if every is not None:
        raise ValueError("observe(every=...) sets the interval of the default probes; the probes you pass carry "
                         "their own (Spectrum(every=50), ...)")
    probes = list(probes)
    bad = [p for p in probes if not (callable(p) and isinstance(getattr(p, "every", None), int))]
    if bad:
        raise TypeError(f"observe(probes=...): {bad[0]!r:.60} is not a probe (a callable with an integer `every`, "
                        "e.g. orthoscope.probes.Spectrum(every=20))")
    return probes


def _positive_int(value, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(value, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}")
    return int(value)
