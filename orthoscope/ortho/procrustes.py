"""Orthogonal Procrustes: the rotation that best maps A onto B (OrthoMerge's alignment step).

    R* = argmin_{RᵀR = I} ‖A R − B‖_F = U Vᵀ,   where  U Σ Vᵀ = Aᵀ B  (SVD)

(Schönemann 1966). ``R*`` is orthogonal (it may be a reflection, det = −1; pass ``proper=True`` for the best
rotation with det = +1, which flips the sign of the last singular direction).
"""
from __future__ import annotations

import torch


def procrustes(A: torch.Tensor, B: torch.Tensor, proper: bool = False) -> torch.Tensor:
    """The orthogonal ``R[n, n]`` minimizing ``‖A R − B‖_F`` for ``A, B`` of shape ``[m, n]`` (module docstring).

    Computed in float64 for accuracy and cast back to ``A``'s dtype.
    """
    if A.dim() != 2 or A.shape != B.shape:
        raise ValueError(f"A and B must be matrices of the same shape [m, n], got {tuple(A.shape)} and "
                         f"{tuple(B.shape)}")
    m = (A.double().T @ B.double())
    U, _, Vh = torch.linalg.svd(m)
    if proper:
        d = torch.sign(torch.linalg.det(U @ Vh))
        U = torch.cat([U[:, :-1], U[:, -1:] * d], dim=1)
    return (U @ Vh).to(A.dtype)
