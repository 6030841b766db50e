"""Methods and losses: what a ``Run`` optimizes and how, below every model, adapter and optimizer that uses them.

* ``base`` — the ``Method`` protocol (attach / make_optimizer / interventions), ``Intervention``, ``ClipGradNorm``,
  and the plain baselines ``AdamW`` and ``SGD`` (re-exported here: ``from orthoscope.methods import AdamW``);
* ``losses`` — cross-entropy, MSE and the harmonic loss, by name (``resolve_loss``), and accuracy;
* ``schedules`` — learning-rate schedules, as an intervention.

The orthogonal and matrix methods build on ``Method`` one floor up: Muon, Pion, Hyperball and FOCUS in
``orthoscope.optim.methods``, POET, OFT, BOFT, QOFT, LoRA in ``orthoscope.adapters``.
"""
from .base import (SGD, AdamW, ClipGradNorm, Intervention, Method, check_betas, check_grad_clip,  # noqa: F401
                   check_positive, trainable)

__all__ = ["Method", "Intervention", "ClipGradNorm", "AdamW", "SGD", "trainable", "check_positive",
           "check_grad_clip", "check_betas"]
