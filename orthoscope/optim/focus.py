"""FOCUS: First Order Concentrated Updating Scheme (Liu, Liu, Gore; arXiv 2501.12243; ``liuyz0/FOCUS/focus.py``).

Per parameter tensor θ with gradient g, at step t = 1, 2, …::

    m_t = β1 m_{t−1} + (1 − β1) g_t                 # momentum (no bias correction: sign ignores its scale)
    p̄_t = β2 p̄_{t−1} + (1 − β2) θ_{t−1}             # EMA of the parameters themselves
    p̂_t = p̄_t / (1 − β2ᵗ)                           # bias-corrected EMA
    θ_t = θ_{t−1} − lr · [sign(m_t) + γ · sign(θ_{t−1} − p̂_t)]
    θ_t ← θ_t − lr · wd · p̂_t                       # weight decay acts on the EMA, not on θ

The first term is Signum (sign of momentum): a fixed-size step that ignores gradient noise magnitudes. The second
pulls θ toward its own running mean, i.e. toward the floor of a narrowing valley, while the step size stays large —
the paper's picture of why FOCUS beats Adam when gradient noise is large relative to the valley's sharpness.
With γ = 0 FOCUS is Signum (β2 then matters only through the EMA-based weight decay; with β2 = 0, p̂ = θ and the
decay is ordinary decoupled decay). Class defaults are the reference's: lr 0.01, betas (0.9, 0.999), γ 0.1, wd 0.

At t = 1, p̂_1 = θ_0 exactly, so the attraction term is 0 on the first step. ``sign(0) = 0``.
FOCUS treats every parameter alike; there is no matrix path.
"""
from __future__ import annotations

import torch

from .common import GroupedOptimizer, check_betas, check_lr, check_nonneg, normalize_groups


def focus_update(p: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, pbar: torch.Tensor, step: int,
                 lr: float, betas: tuple[float, float], gamma: float, weight_decay: float) -> None:
    """One FOCUS step in place on ``p`` and its state (``exp_avg`` = m, ``pbar`` = p̄); ``step`` is t ≥ 1."""
    beta1, beta2 = betas
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    pbar.mul_(beta2).add_(p, alpha=1 - beta2)
    pbar_hat = pbar / (1 - beta2 ** step)
    update = torch.sign(exp_avg)
    if gamma != 0:
        update.add_(torch.sign(p - pbar_hat), alpha=gamma)
    p.add_(update, alpha=-lr)
    if weight_decay != 0:
        p.add_(pbar_hat, alpha=-lr * weight_decay)


class FOCUS(GroupedOptimizer):
    """FOCUS over every parameter (math in the module docstring). ``gamma=0`` gives Signum.

    Args:
        params: parameters, ``(name, tensor)`` pairs or group dicts.
        lr: step size (each coordinate moves by lr·(±1 ± γ)). betas: (β1 momentum, β2 parameter EMA).
        gamma: attraction to the parameter EMA (γ ≥ 0). weight_decay: decay toward 0 applied via the EMA.
        check_finite: refuse a step whose gradients hold NaN/inf (``NonFiniteGradError`` naming the parameter).
    """

    name = "FOCUS"
    aux_adamw = False                       # one rule for every parameter, vectors included

    def __init__(self, params, lr: float = 0.01, betas=(0.9, 0.999), gamma: float = 0.1,
                 weight_decay: float = 0.0, check_finite: bool = True):
        groups = normalize_groups(params)
        for group in groups:
            for k, v in {"lr": lr, "betas": tuple(betas), "gamma": gamma, "weight_decay": weight_decay}.items():
                group.setdefault(k, v)
            check_lr(group["lr"])
            check_betas(group["betas"])
            check_nonneg(group["gamma"], "gamma")
            check_nonneg(group["weight_decay"], "weight_decay")
        super().__init__(groups, check_finite)

    def update(self, p, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["pbar"] = torch.zeros_like(p)
        state["step"] += 1
        focus_update(p, p.grad, state["exp_avg"], state["pbar"], state["step"], group["lr"], tuple(group["betas"]),
                     group["gamma"], group["weight_decay"])
