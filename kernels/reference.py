"""Pure-torch twins of every kernel: the reference implementations, on any device, with autograd.

Each function here has the exact signature of its Triton counterpart, so tests can compare the two on the same
inputs, and CPU users run these.
"""
from __future__ import annotations

import math

import torch


def pairwise_energy(w: torch.Tensor, s: float = 1.0, angular: bool = False, half_space: bool = False,
                    eps: float = 1e-6, chunk: int = 1024) -> torch.Tensor:
    """Hyperspherical energy of the n rows of ``w`` after normalizing each to unit length (MHE, Liu et al. 2018).

    ``E_s = mean_{i≠j} f_s(d_ij)`` with ``f_s(d) = d^(−s)`` for s > 0 and ``f_0(d) = −log d``, where ``d_ij`` is the
    Euclidean distance ``‖ŵ_i − ŵ_j‖`` (or, when ``angular``, the geodesic angle divided by π: ``arccos(ŵ_iᵀŵ_j)/π``).
    ``half_space`` uses the 2n points ``{ŵ_i} ∪ {−ŵ_i}`` (mean over their ordered pairs i≠j). Distances are clamped
    at ``eps`` so duplicate rows give a large finite energy. The mean is over ordered pairs, so it does not grow with
    n. Rows are processed in chunks, so memory is O(chunk·n), never n×n at once.
    """
    if w.dim() != 2:
        raise ValueError(f"pairwise_energy needs a 2-D matrix, got shape {tuple(w.shape)}")
    if s < 0:
        raise ValueError(f"s must be ≥ 0, got {s}")
    w = w.float()
    u = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if half_space:
        u = torch.cat([u, -u], 0)
    n = u.shape[0]
    if n < 2:
        raise ValueError("pairwise_energy needs at least 2 rows")
    total = u.new_zeros(())
    for start in range(0, n, chunk):
        cos = (u[start:start + chunk] @ u.T).clamp(-1.0, 1.0)             # (c, n)
        if angular:
            d = torch.arccos(cos) / math.pi
        else:
            d = (2.0 - 2.0 * cos).clamp_min(0.0).sqrt()
        d = d.clamp_min(eps)
        f = -torch.log(d) if s == 0 else d.pow(-s)
        rows = torch.arange(start, min(start + chunk, n), device=u.device)
        f = f.index_put((rows - start, rows), f.new_zeros(len(rows)))    # drop i == j
        total = total + f.sum()
    return total / (n * (n - 1))
