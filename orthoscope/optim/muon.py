"""Muon: momentum orthogonalized by Newton–Schulz (Keller Jordan, 2024; ``KellerJordan/Muon/muon.py``).

For a hidden weight matrix ``W`` (PyTorch layout ``[out, in]``) with gradient ``G``::

    m ← lerp(m, G, 1−β)                       # EMA of gradients, β = 0.95
    u = lerp(G, m, β)   (Nesterov)  or  u = m
    O = orth(u) ≈ U Vᵀ   where u = U S Vᵀ       # the "matrix sign" of u
    W ← W(1 − lr·wd) − lr · s · O

``orth`` is a backend: ``"newton_schulz"`` (default) runs 5 steps of the quintic iteration with the tuned
coefficients (a, b, c) = (3.4445, −4.7750, 2.0315) on ``X = u/‖u‖_F`` (transposed so that rows ≤ cols)::

    A = X Xᵀ;  X ← aX + (bA + cA²) X

which maps every singular value σ ∈ (0, 1] to roughly U(0.5, 1.5) rather than exactly to 1 — faster, and good enough
for the update (the reference says so). ``"svd"`` returns the exact ``U Vᵀ`` and is the reference the tests compare
against. ``register_backend`` adds others (e.g. Polar Express coefficients).

The scale ``s`` is Keller's shape factor ``max(1, out/in)^{1/2}`` by default. With ``rms_match=c`` it is
``c·√max(out, in)`` instead (Kimi/Moonlight; the "Muon (Kimi)" baseline of POET uses c = 0.2): since
``‖U Vᵀ‖_F = √min(out, in)``, the update then has RMS ``c·lr``, the typical RMS of an AdamW update, so AdamW's
learning rate and weight decay carry over.

Numerics: the reference runs Newton–Schulz in bfloat16 on GPU; here it runs in float32 (float64 inputs stay float64)
so CPU results are deterministic and comparable with the ``svd`` backend.

Only hidden matrices take this path; embeddings, the output head and vectors go to AdamW in the same optimizer
(groups with ``"matrix": False``; see ``orthoscope.optim.common``). Weights with more than two dimensions (conv
kernels) are flattened to ``[out, rest]`` as in the reference.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .common import GroupedOptimizer, adamw_defaults, check_beta, check_choice, check_nonneg, setup_groups

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Quintic Newton–Schulz approximation of ``U Vᵀ`` for a 2-D ``g = U S Vᵀ`` (float32 unless g is float64)."""
    a, b, c = NS_COEFFICIENTS
    x = g.double() if g.dtype == torch.float64 else g.float()
    transposed = x.size(0) > x.size(1)
    if transposed:                        # iterate on the short side: X Xᵀ is min(out, in)² instead of max²
        x = x.mT
    x = x / (x.norm() + eps)              # ‖X‖₂ ≤ ‖X‖_F ≤ 1 puts every σ inside the iteration's basin (0, 1]
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if transposed else x).to(g.dtype)


def svd_orthogonalize(g: torch.Tensor, steps: int = 0) -> torch.Tensor:
    """Exact ``U Vᵀ`` from the thin SVD (the reference; ``steps`` is ignored). Zero singular values give
    arbitrary directions, where Newton–Schulz gives 0 — compare them on full-rank inputs."""
    u, _, vh = torch.linalg.svd(g.double() if g.dtype == torch.float64 else g.float(), full_matrices=False)
    return (u @ vh).to(g.dtype)


BACKENDS: dict[str, Callable[..., torch.Tensor]] = {"newton_schulz": newton_schulz, "svd": svd_orthogonalize}


def register_backend(name: str, fn: Callable[..., torch.Tensor]) -> None:
    """Add an orthogonalization ``fn(g_2d, steps) -> O`` usable as ``Muon(backend=name)``."""
    if not callable(fn):
        raise TypeError(f"backend {name!r} must be callable, got {fn!r}")
    BACKENDS[name] = fn


def muon_scale(shape: torch.Size, rms_match: float | None) -> float:
    """Keller's ``max(1, out/in)^{1/2}``, or ``rms_match·√max(out, in)`` (Kimi) when ``rms_match`` is set."""
    rows, cols = shape[0], math.prod(shape[1:])
    if rms_match is None:
        return max(1.0, rows / cols) ** 0.5
    return rms_match * math.sqrt(max(rows, cols))


def muon_update(grad: torch.Tensor, momentum: torch.Tensor, beta: float = 0.95, nesterov: bool = True,
                ns_steps: int = 5, backend: str = "newton_schulz") -> torch.Tensor:
    """The unscaled Muon direction ``orth(u)`` for one matrix; updates the ``momentum`` buffer in place.
    ``grad`` is not modified. Conv-shaped inputs are orthogonalized as ``[out, rest]`` and reshaped back."""
    momentum.lerp_(grad, 1 - beta)
    u = grad.lerp(momentum, beta) if nesterov else momentum
    o = BACKENDS[backend](u.reshape(u.size(0), -1), ns_steps)
    return o.view_as(grad)


class Muon(GroupedOptimizer):
    """Muon on ``"matrix"`` groups, AdamW on the others (see the module docstring for the math).

    Args:
        params: parameters, ``(name, tensor)`` pairs or group dicts with ``"matrix": bool`` (plain list = matrices).
        lr: Muon learning rate (reference default 0.02; with ``rms_match=0.2`` use an AdamW-sized lr).
        momentum: β of the gradient EMA. nesterov: use the Nesterov look-ahead ``lerp(G, m, β)``.
        weight_decay: decoupled, ``W ← W(1 − lr·wd)``. ns_steps: Newton–Schulz iterations.
        backend: ``"newton_schulz"``, ``"svd"`` or a registered name. rms_match: None (shape scaling) or c (Kimi).
        adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay: the AdamW groups (reference aux Adam defaults).
        check_finite: refuse a step whose gradients hold NaN/inf (``NonFiniteGradError`` naming the parameter).
    """

    name = "Muon"
    matrix_max_dim = 4                      # conv filters [out, in, kh, kw] are flattened to 2-D

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, backend: str = "newton_schulz",
                 rms_match: float | None = None, adamw_lr: float = 3e-4, adamw_betas=(0.9, 0.95),
                 adamw_eps: float = 1e-10, adamw_weight_decay: float = 0.0, check_finite: bool = True):
        matrix = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
                  "ns_steps": ns_steps, "backend": backend, "rms_match": rms_match}
        groups = setup_groups("Muon", params, matrix, adamw_defaults(adamw_lr, adamw_betas, adamw_eps,
                                                                      adamw_weight_decay))
        for gi, group in enumerate(groups):
            if group["matrix"]:
                check_beta(group["momentum"], "momentum")
                check_choice(group["backend"], "backend", BACKENDS)
                if not isinstance(group["ns_steps"], int) or group["ns_steps"] < 1:
                    raise ValueError(f"ns_steps must be a positive integer, got {group['ns_steps']!r}")
                if group["rms_match"] is not None:
                    check_nonneg(group["rms_match"], "rms_match")
        super().__init__(groups, check_finite)

    def update(self, p, state, group):
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        o = muon_update(p.grad, state["momentum_buffer"], group["momentum"], group["nesterov"], group["ns_steps"],
                        group["backend"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(o, alpha=-group["lr"] * muon_scale(p.shape, group["rms_match"]))
