"""Harmonic (distance) logits: the math shared by the harmonic loss, ``HarmonicHead`` and the kernel seam's
``harmonic_nll`` twin. It lives here, inside ``orthoscope.kernels``, so that the seam never imports its callers
(``orthoscope.methods.losses`` and ``orthoscope.models.heads`` import it from here; docs/design.md, "Layers")."""
from __future__ import annotations

import math as _math

import torch

# Convention: the exponent n applies to d (not d²). The official code (grow-crystals, DistLayer) raises the
# SQUARED distance to −n_code, i.e. p ∝ d^(−2·n_code): n here = 2·n_code there (its MNIST n_code = 28 = √784 is
# n = 56 here). Default n = √D for a D-dimensional representation (the code's recommended range is 1 … D).
# Numerics: log-space throughout, logits = −(n/2)·log(d² + ε) with d² = ‖x‖² + ‖w‖² − 2x·w clamped at 0, i.e.
# d = sqrt(d² + ε), ε = HARMONIC_EPS: as d → 0 the logit stays finite and the gradient is bounded by
# n/(2√ε) per unit of x; the ratio test d_i/d_j is unaffected while d² ≫ ε.

HARMONIC_EPS = 1e-6


def check_harmonic_exponent(n) -> float:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not _math.isfinite(n) or n <= 0:
        raise ValueError(f"harmonic exponent n must be a finite number > 0, got {n!r}")
    return float(n)


def squared_distances(h: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``‖h_b − w_v‖²`` for ``h[..., D]``, ``centers[V, D]`` → ``[..., V]`` (matmul expansion, clamped at 0)."""
    if centers.dim() != 2 or h.shape[-1] != centers.shape[1]:
        raise ValueError(f"centers must be [V, D] with D = h.shape[-1]; got h {tuple(h.shape)}, "
                         f"centers {tuple(centers.shape)}")
    cross = h @ centers.T
    return ((h * h).sum(-1, keepdim=True) + (centers * centers).sum(-1) - 2.0 * cross).clamp_min(0.0)


def harmonic_logits(h: torch.Tensor, centers: torch.Tensor, n: float, eps: float = HARMONIC_EPS) -> torch.Tensor:
    """``−n·log d`` with ``d = sqrt(‖h − w‖² + eps)``: logits whose softmax is HarMax, so cross-entropy on them is
    the harmonic loss and their argmax is the nearest centre."""
    n = check_harmonic_exponent(n)
    return (-0.5 * n) * torch.log(squared_distances(h, centers) + eps)
