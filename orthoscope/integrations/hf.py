"""``OrthoscopeCallback``: orthoscope's probes inside a Hugging Face ``transformers.Trainer``.

    cb = OrthoscopeCallback(every=10, run_dir="runs/gpt2-tiny")
    Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
    Dashboard(cb.recorder)            # or Dashboard.watch("runs/gpt2-tiny") from another notebook

A recorder (``orthoscope.training.recorder``) is built at ``on_train_begin`` from the Trainer's model and optimizer,
and records at ``on_optimizer_step``: after ``optimizer.step()`` and before the Trainer's ``model.zero_grad()``, so
the gradient norm sees the step's gradients, and before its scheduler steps, so ``lr/group0`` is the rate this step
used — the ``learning_rate`` the Trainer logs. ``grad_norm/total`` is the norm of the gradient the optimizer used,
after the Trainer's clipping to ``max_grad_norm`` (the Trainer's own ``grad_norm`` log is the norm before). Steps are numbered as the Trainer's ``global_step`` (a resumed Trainer
goes on from its step).

The loss (``loss/batch``) is the one the model returns (``outputs.loss``), read by a forward hook that changes
nothing: the sum of the micro-batches' losses when the Trainer passes ``num_items_in_batch`` (each is then a share of
the step's loss), else their mean — the loss the Trainer logs. A model that returns no loss (a custom
``compute_loss``) records no ``loss/batch``. Under torchrun every process runs the callback; rank 0 records.
"""
from __future__ import annotations

try:
    from transformers import TrainerCallback
except ImportError as e:          # transformers is in the `test` extra
    raise ImportError("orthoscope.integrations.hf needs transformers: pip install transformers "
                      "(or orthoscope[test])") from e

from ..training.recorder import Recorder


class OrthoscopeCallback(TrainerCallback):
    """Record orthoscope probes from a ``transformers.Trainer``; arguments as ``orthoscope.observe``'s.
    ``.recorder`` (after training starts) holds the ``Recorder``; ``.history`` its History."""

    def __init__(self, probes=None, *, every: int | None = None, run_dir=None, name: str | None = None):
        self.probes, self.every, self.run_dir, self.name = probes, every, run_dir, name
        self.recorder: Recorder | None = None
        self._losses: list = []
        self._sum = False
        self._hook = None

    @property
    def history(self):
        if self.recorder is None:
            raise RuntimeError("the callback records once trainer.train() starts; nothing is recorded yet")
        return self.recorder.history

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.recorder = Recorder(model, self.probes, every=self.every, optimizer=optimizer, run_dir=self.run_dir,
                                 name=self.name, start=state.global_step,
                                 steps=state.max_steps if state.max_steps and state.max_steps > 0 else None)
        self._hook = model.register_forward_hook(self._capture_loss, with_kwargs=True)

    def _capture_loss(self, module, args, kwargs, output) -> None:
        loss = output.get("loss") if hasattr(output, "get") else None
        if module.training and loss is not None:
            self._losses.append(loss.detach())
            self._sum = kwargs.get("num_items_in_batch") is not None

    def on_optimizer_step(self, args, state, control, **kwargs):
        losses, self._losses = self._losses, []
        loss = None
        if losses:
            total = sum(losses)
            loss = total if self._sum else total / len(losses)
        self.recorder.step(loss=loss, step=state.global_step + 1)   # the Trainer adds 1 after zero_grad

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            self.recorder.close()
