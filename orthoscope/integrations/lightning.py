"""``OrthoscopeCallback``: orthoscope's probes inside a Lightning ``Trainer`` (``lightning.pytorch``).

    cb = OrthoscopeCallback(every=10, run_dir="runs/lit")
    lightning.Trainer(max_steps=500, callbacks=[cb]).fit(module, loader)
    Dashboard(cb.recorder)

A recorder (``orthoscope.training.recorder``) is built at ``on_train_start`` from the LightningModule (probe paths
are its ``named_modules()``) and the Trainer's first optimizer, and records at ``on_train_batch_end`` of every batch
that completed an optimizer step (``trainer.global_step`` moved; with ``accumulate_grad_batches`` the others only
add their loss). There the gradients of the step are still in place (Lightning's automatic optimization zeroes them
just before the next backward) and a step-interval scheduler has already stepped. ``loss/batch`` is the sum of the
micro-batches' ``training_step`` losses (Lightning hands each one divided by ``accumulate_grad_batches``): the mean
loss of the step. Under a multi-process strategy every process runs the callback; rank 0 records.
"""
from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError as e:
    raise ImportError("orthoscope.integrations.lightning needs lightning: pip install orthoscope[integrations]") from e

from ..training.recorder import Recorder


class OrthoscopeCallback(Callback):
    """Record orthoscope probes from a Lightning ``Trainer``; arguments as ``orthoscope.observe``'s.
    ``.recorder`` (after training starts) holds the ``Recorder``; ``.history`` its History."""

    def __init__(self, probes=None, *, every: int | None = None, run_dir=None, name: str | None = None):
        self.probes, self.every, self.run_dir, self.name = probes, every, run_dir, name
        self.recorder: Recorder | None = None
        self._losses: list = []

    @property
    def history(self):
        if self.recorder is None:
            raise RuntimeError("the callback records once trainer.fit() starts; nothing is recorded yet")
        return self.recorder.history

    def on_train_start(self, trainer, pl_module) -> None:
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self.recorder = Recorder(pl_module, self.probes, every=self.every, optimizer=optimizer, run_dir=self.run_dir,
                                 name=self.name or type(pl_module).__name__, start=trainer.global_step, steps=steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(loss.detach())
        if trainer.global_step > self.recorder.step_count:        # this batch completed an optimizer step
            losses, self._losses = self._losses, []
            self.recorder.step(loss=sum(losses) if losses else None, step=trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            self.recorder.close()
