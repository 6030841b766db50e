"""ProbeView: the narrow, read-only view of training that every probe reads.

A probe is called as ``probe(view) -> {key: value}``. ``Run`` builds the view from itself; the recorder for any loop
(``orthoscope.observe``) builds it from the model and optimizer it was given. So one probe class serves both: the
same code reads a ``Run``'s model and your own loop's model, on the same schedule, into the same History.

What a view holds (the names are ``Run``'s, so a probe written against ``probe(run)`` that reads only these keeps
working unchanged):

==============  ===================================================================================================
``model``       the plain ``nn.Module`` (never the DDP wrapper; under FSDP2 the probes of a gather see full weights)
``step``        the number of optimizer steps taken so far (0 before the first; ``step_count`` is the same number)
``last_loss``   the loss of the last step as a float (the global-batch mean under torchrun), or ``None``
``optimizer``   the ``torch.optim.Optimizer`` (learning rates from its ``param_groups``), or ``None``
``task``        what ``Evaluate`` reads evaluation sets from (``eval_sets()``), or ``None``
``loss_fn``     ``loss_fn(output, target)`` for evaluation, or ``None``
``history``     the History recorded so far (read it; never log into it: what a probe returns is logged)
``dist``        the distributed seam (``orthoscope.distributed.seam.Seam``: rank, world size, mode), or ``None``
``name``        the run's label
==============  ===================================================================================================

Anything else a ``Run`` has (``method``, ``generator``, ``interventions``, …) is deliberately absent: a probe that
needs it is an intervention, not an observer. Reading it raises an ``AttributeError`` that says so.
"""
from __future__ import annotations

from typing import NamedTuple

from torch import nn


class ProbeView(NamedTuple):
    """What a probe may read at one step (module docstring). Immutable: probes cannot rebind what they see."""

    model: nn.Module
    step: int
    last_loss: float | None = None
    optimizer: object | None = None
    task: object | None = None
    loss_fn: object | None = None
    history: object | None = None
    dist: object | None = None
    name: str = "run"

    @property
    def step_count(self) -> int:
        """``step`` under ``Run``'s name, so probes written for ``probe(run)`` read it unchanged."""
        return self.step

    def __getattr__(self, attribute: str):
        # only reached for names the view does not hold
        raise AttributeError(f"a probe reads a ProbeView, which has no {attribute!r}: it holds {list(self._fields)} "
                             "and step_count. A probe that needs more of a Run (its method, generator or "
                             "interventions) should be an intervention (orthoscope.methods.Intervention)")


def require_task(view: ProbeView, probe) -> object:
    """The view's task, or a clear error for a probe that reads evaluation sets where there are none."""
    if view.task is None:
        raise ValueError(f"{type(probe).__name__} reads evaluation sets, and this recorder was given none: pass "
                         "task= (anything with eval_sets() -> {split: (x, y)}) and loss= to orthoscope.observe, or "
                         "leave the probe out")
    return view.task
