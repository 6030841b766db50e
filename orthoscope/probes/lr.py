"""The learning rate each optimizer parameter group uses at the step (``lr/group<i>``), for the Dashboard's
training-signals panel: with a schedule (warm-up, cosine, a ``run.override(lr=...)``) the loss and gradient-norm
curves read differently once the learning rate is drawn beside them.

    Run(model, task, AdamW(lr=1e-3), probes=default_probes(20) + [LearningRate(20)])
"""
from __future__ import annotations

from .base import Probe


class LearningRate(Probe):
    """``lr/group<i>``: ``optimizer.param_groups[i]["lr"]`` when the probes run — in a ``Run`` after the step and its
    schedule (the rate the next step will use); in your own loop when ``rec.step()`` is called (after your scheduler's
    ``step()`` if you call it first). A group's lr that is a tensor (some fused optimizers) is read as a float."""

    name = "lr"

    def check(self, view) -> None:
        if view.optimizer is None:
            raise ValueError("LearningRate reads the optimizer's param groups, and this recorder was given no "
                             "optimizer: pass optimizer= to orthoscope.observe, or leave the probe out")

    def __call__(self, view) -> dict:
        optimizer = view.optimizer
        if optimizer is None:
            return {}
        return {f"lr/group{i}": float(group["lr"]) for i, group in enumerate(optimizer.param_groups)}
