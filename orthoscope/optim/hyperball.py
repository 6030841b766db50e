"""Hyperball optimization: AdamH and MuonH (Wen, Dang, Lyu, Ma, Liang, Dec 2025; blog "From Weight Decay to
Hyperball Optimization").

Weight decay's real job, the blog argues, is to hold the weight norm at an equilibrium where the effective (angular)
step is ``∝ √(η·λ)``. Hyperball holds the norm fixed directly and makes the angular step the hyperparameter. For a
hidden matrix ``W`` with base update direction ``u`` (Adam's ``m̂/(√v̂+ε)`` for AdamH, Muon's ``orth(u)`` for MuonH)::

    W ← R · Norm(W − η · R · Norm(u)),     Norm(x) = x / ‖x‖,   R = ‖W₀‖ (the norm at the first step)

so ``‖W‖ = R`` after every step and ``W`` turns by an angle of at most ``asin(η)`` (``atan(η)`` when ``u ⟂ W``) on
the sphere of radius R: η is an angular step size, independent of the scale of ``u``.

Which norm. The blog formula and the public AdamH code use the Frobenius norm of the whole matrix; the same public
file's MuonH normalizes **per column** (``norm(dim=0)`` of the PyTorch ``[out, in]`` weight: one norm per input
feature) and stores per-column initial norms. We default to ``granularity="frobenius"`` for both (the blog's
definition, and one rule for both bases, so AdamH and MuonH differ only in ``u``); ``granularity="column"`` reproduces
the per-column variant. ``radius=None`` keeps ``‖W₀‖`` (the code's ``rescale_to_unit_ball=False``); ``radius=r``
rescales the weight to norm r at the first step (``r = 1`` is ``rescale_to_unit_ball=True``).

There is no weight decay on the sphere: a decay term only shrinks ``W`` radially, which the projection undoes. A
``weight_decay`` ≠ 0 on the matrix path is still added to ``u`` (as the base optimizer would) but triggers a warning.
Embeddings, head and vectors go to AdamW inside the same optimizer (``"matrix": False`` groups).
"""
from __future__ import annotations

import math
import warnings

import torch

from .common import (GroupedOptimizer, adamw_defaults, check_beta, check_betas, check_choice, check_nonneg,
                     setup_groups)
from .muon import BACKENDS, muon_update

GRANULARITIES = ("frobenius", "column")


def _norm(x: torch.Tensor, granularity: str) -> torch.Tensor:
    return x.norm() if granularity == "frobenius" else x.norm(dim=0, keepdim=True)


def hyperball_update(w: torch.Tensor, direction: torch.Tensor, lr: float, radius: torch.Tensor,
                     granularity: str = "frobenius", eps: float = 1e-12) -> torch.Tensor:
    """The new weight ``R · Norm(W − lr · R · Norm(u))`` (a new tensor; ``radius`` is a scalar or a ``[1, in]``
    row of column norms). A zero direction leaves W unchanged up to the final renormalization."""
    step = direction / _norm(direction, granularity).clamp_min(eps)
    moved = w - lr * radius * step
    return moved * (radius / _norm(moved, granularity).clamp_min(eps))


class _Hyperball(GroupedOptimizer):
    """Shared machinery of AdamH/MuonH: groups, checks, the radius and the step. Subclasses give ``_direction``."""

    name = "Hyperball"

    def __init__(self, params, matrix_defaults: dict, adamw: dict, check_finite: bool):
        matrix_defaults = {**matrix_defaults}
        groups = setup_groups(self.name, params, matrix_defaults, adamw)
        for group in groups:
            if group["matrix"]:
                check_choice(group["granularity"], "granularity", GRANULARITIES)
                if group["radius"] is not None and not (isinstance(group["radius"], (int, float))
                                                        and math.isfinite(group["radius"]) and group["radius"] > 0):
                    raise ValueError(f"radius must be None (keep ‖W₀‖) or a number > 0, got {group['radius']!r}")
                if group["weight_decay"] != 0:
                    warnings.warn(f"{self.name}: weight_decay={group['weight_decay']} on the matrix path has almost "
                                  "no effect — the hyperball projection holds ‖W‖ fixed and undoes radial decay; "
                                  "use weight_decay=0", stacklevel=3)
        super().__init__(groups, check_finite)

    def _direction(self, p: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        raise NotImplementedError

    def update(self, p, state, group):
        if not state:
            state["step"] = 0
            if group["radius"] is None:
                state["radius"] = _norm(p, group["granularity"]).clone()
            else:                                 # rescale to the chosen radius once, before the first move
                state["radius"] = torch.full_like(_norm(p, group["granularity"]), group["radius"])
                p.mul_(state["radius"] / _norm(p, group["granularity"]).clamp_min(1e-12))
        state["step"] += 1
        u = self._direction(p, state, group)
        if group["weight_decay"] != 0:
            u = u + group["weight_decay"] * p
        p.copy_(hyperball_update(p, u, group["lr"], state["radius"], group["granularity"]))


class AdamH(_Hyperball):
    """Adam's direction ``m̂/(√v̂+ε)`` on the hyperball (math in the module docstring); AdamW on other groups.

    Args:
        lr: angular step η per update (radians, roughly). betas, eps: Adam moments of the direction.
        granularity: ``"frobenius"`` or ``"column"``. radius: None (keep ‖W₀‖) or the norm to hold.
        weight_decay: should stay 0 (warns otherwise). adamw_*: the AdamW groups.
    """

    name = "AdamH"

    def __init__(self, params, lr: float = 0.01, betas=(0.9, 0.95), eps: float = 1e-8, weight_decay: float = 0.0,
                 granularity: str = "frobenius", radius: float | None = None, adamw_lr: float = 1e-3,
                 adamw_betas=(0.9, 0.95), adamw_eps: float = 1e-8, adamw_weight_decay: float = 0.0,
                 check_finite: bool = True):
        check_betas(betas)
        matrix = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                  "granularity": granularity, "radius": radius}
        super().__init__(params, matrix, adamw_defaults(adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay),
                         check_finite)

    def _direction(self, p, state, group):
        beta1, beta2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m.lerp_(p.grad, 1 - beta1)
        v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        return (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + group["eps"])


class MuonH(_Hyperball):
    """Muon's direction ``orth(Nesterov momentum)`` on the hyperball; AdamW on other groups.

    Args:
        lr: angular step η. momentum, nesterov, ns_steps, backend: as in ``Muon``.
        granularity, radius, weight_decay, adamw_*: as in ``AdamH``.
    """

    name = "MuonH"

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 backend: str = "newton_schulz", weight_decay: float = 0.0, granularity: str = "frobenius",
                 radius: float | None = None, adamw_lr: float = 1e-3, adamw_betas=(0.9, 0.95),
                 adamw_eps: float = 1e-8, adamw_weight_decay: float = 0.0, check_finite: bool = True):
        check_beta(momentum, "momentum")
        check_choice(backend, "backend", BACKENDS)
        if not isinstance(ns_steps, int) or ns_steps < 1:
            raise ValueError(f"ns_steps must be a positive integer, got {ns_steps!r}")
        check_nonneg(weight_decay, "weight_decay")
        matrix = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps, "backend": backend,
                  "weight_decay": weight_decay, "granularity": granularity, "radius": radius}
        super().__init__(params, matrix, adamw_defaults(adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay),
                         check_finite)

    def _direction(self, p, state, group):
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return muon_update(p.grad, state["momentum_buffer"], group["momentum"], group["nesterov"],
                           group["ns_steps"], group["backend"])
