"""Pure tensor functions behind the probes. Each is tested on matrices with known answers.

Conventions (DESIGN §5; names follow WeightWatcher with its one fix: ``spectral_norm`` is σ_max, not σ_max²):

* ``sv_entropy``: ``H = −Σ pᵢ log pᵢ / log r`` with ``pᵢ = σᵢ² / Σσⱼ²`` over the ``r = min(m, n)`` singular values;
  1 for a flat spectrum, 0 for rank one.
* ``stable_rank``: ``‖W‖_F² / ‖W‖₂² = Σσᵢ² / σ₁²`` (n for an n×n orthogonal matrix, 1 for rank one).
* ``condition_number``: ``σ_max / σ_min`` (inf when σ_min = 0).
* ``orthogonality_error``: ``‖RᵀR − I‖_F / √b`` for b×b (or batched) R.
* An all-zero matrix (a zero-initialized layer) has no spectral shape: ``sv_entropy`` is NaN there (History keeps
  NaN, plots leave a gap), ``stable_rank`` 0 and ``condition_number`` inf.
* ``hyperspherical_energy``: see ``orthoscope.kernels.pairwise_energy`` (mean over ordered pairs, rows normalized).
"""
from __future__ import annotations

import math

import torch


def as_matrix(w: torch.Tensor, name: str = "weight") -> torch.Tensor:
    """View a weight as a 2-D matrix: Conv kernels ``(out, in, *k)`` become ``(out, in·∏k)``; 1-D is an error."""
    if w.dim() < 2:
        raise ValueError(f"{name} is {w.dim()}-D with shape {tuple(w.shape)}; spectral metrics need a matrix "
                         "(select modules with 2-D weights, e.g. Linear, Embedding or Conv layers)")
    return w.reshape(w.shape[0], -1)


def singular_values(w: torch.Tensor) -> torch.Tensor:
    """Singular values in descending order, computed in float32 (float64 stays float64)."""
    w = as_matrix(w)
    return torch.linalg.svdvals(w if w.dtype == torch.float64 else w.float())


def sv_entropy(sv: torch.Tensor) -> torch.Tensor:
    """Normalized singular-value entropy of a spectrum ``sv`` (see module docstring); a value in [0, 1]."""
    r = sv.numel()
    if r < 2:
        return sv.new_tensor(0.0)
    p = sv.double() ** 2
    p = p / p.sum()
    h = -(p * torch.log(p.clamp_min(1e-300))).sum()   # 0·log 0 = 0
    return (h / math.log(r)).to(sv.dtype)


def stable_rank(sv: torch.Tensor) -> torch.Tensor:
    return (sv ** 2).sum() / (sv[0] ** 2).clamp_min(torch.finfo(sv.dtype).tiny)


def spectral_norm(sv: torch.Tensor) -> torch.Tensor:
    return sv[0]


def condition_number(sv: torch.Tensor) -> torch.Tensor:
    smallest = sv[-1]
    return sv[0] / smallest if smallest > 0 else sv.new_tensor(float("inf"))


def orthogonality_error(r: torch.Tensor) -> torch.Tensor:
    """``‖RᵀR − I‖_F / √b`` for ``R`` of shape ``(…, b, b)``; one number per matrix."""
    b = r.shape[-1]
    eye = torch.eye(b, dtype=r.dtype, device=r.device)
    return torch.linalg.matrix_norm(r.transpose(-1, -2) @ r - eye) / math.sqrt(b)


def mp_edge(m: int, n: int, sigma: float = 1.0) -> float:
    """Largest singular value of an m×n matrix with iid N(0, σ²) entries as m, n → ∞: ``σ(√m + √n)``
    (the Marchenko–Pastur bulk edge, in singular-value units)."""
    return sigma * (math.sqrt(m) + math.sqrt(n))


def hyperspherical_energy(w: torch.Tensor, s: float = 1.0, angular: bool = False,
                          half_space: bool = False) -> torch.Tensor:
    from orthoscope import kernels

    return kernels.pairwise_energy(as_matrix(w), s=s, angular=angular, half_space=half_space)
