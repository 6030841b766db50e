"""Probes of the training signal: evaluation loss/accuracy and gradient norms."""
from __future__ import annotations

import torch

from ..core.keys import key
from ..methods.losses import accuracy
from .base import Probe


class Evaluate(Probe):
    """Loss (``loss/<split>``) and accuracy (``acc/<split>``) on every evaluation set of the task, in eval mode."""

    name = "evaluate"
    needs_task = True

    def __init__(self, every: int = 10, splits=None, max_examples: int | None = 20_000):
        super().__init__(every)
        if splits is not None and (isinstance(splits, str) or not all(isinstance(s, str) for s in splits)):
            raise TypeError(f"Evaluate(splits=...) must be a list of split names such as ['train', 'test'], "
                            f"got {splits!r:.60}")
        self.splits, self.max_examples = (None if splits is None else list(splits)), max_examples

    @torch.no_grad()
    def __call__(self, view) -> dict:
        if self.splits is not None:
            unknown = sorted(set(self.splits) - set(view.task.eval_sets()))
            if unknown:
                raise ValueError(f"Evaluate(splits=...): {unknown} not among task {type(view.task).__name__}'s "
                                 f"evaluation sets {sorted(view.task.eval_sets())}")
        was_training = view.model.training
        view.model.eval()
        out = {}
        try:
            for split, (x, y) in view.task.eval_sets().items():
                if self.splits is not None and split not in self.splits:
                    continue
                if self.max_examples is not None:
                    x, y = x[: self.max_examples], y[: self.max_examples]
                output = view.model(x)
                out[key("loss", split)] = view.loss_fn(output, y).item()
                if getattr(view.task, "has_accuracy", True):
                    out[key("acc", split)] = accuracy(output, y)
        finally:
            view.model.train(was_training)
        return out


class GradNorm(Probe):
    """Global gradient norm of the last step (``grad_norm/total``), and per parameter with ``per_parameter``."""

    name = "grad_norm"

    def __init__(self, every: int = 1, per_parameter: bool = False):
        super().__init__(every)
        self.per_parameter = per_parameter

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out, total = {}, 0.0
        for name, p in view.model.named_parameters():
            if p.grad is None:
                continue
            n = p.grad.float().norm().item()
            total += n * n
            if self.per_parameter:
                out[key("grad_norm", name)] = n
        if view.step_count > 0:
            out["grad_norm/total"] = total ** 0.5
        return out
