"""The learning rate each optimizer parameter group uses at the step (``lr/group<i>``), for the Dashboard's
training-signals panel: with a schedule (warm-up, cosine, a ``run.override(lr=...)``) the loss and gradient-norm
curves read differently once the learning rate is drawn beside them.

    Run(model, task, AdamW(lr=1e-3), probes=default_probes(20) + [LearningRate(20)])
"""
from __future__ import annotations

from .base import Probe


class LearningRate(Probe):
    """``lr/group<i>``: ``optimizer.param_groups[i]["lr"]`` after the step (the rate the next step will use).
    A group's lr that is a tensor (some fused optimizers) is read as a float."""

    name = "lr"

    def __call__(self, run) -> dict:
        optimizer = getattr(run, "optimizer", None)
        if optimizer is None:
            return {}
        return {f"lr/group{i}": float(group["lr"]) for i, group in enumerate(optimizer.param_groups)}
