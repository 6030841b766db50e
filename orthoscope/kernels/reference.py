"""Pure-torch twins of every kernel: the reference implementations, on any device, with autograd.

Each function here has the exact signature of its Triton counterpart, so tests can compare the two on the same
inputs, and CPU users run these.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..ortho.blockdiag import block_rotate as _block_rotate      # the ortho package sits below the seam: pure algebra
from ..ortho.cayley import cayley_neumann_packed
from .bspline import kan_spline_torch
from .harmonic import harmonic_logits


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
        # Self pairs (i, i) are dropped and antipodal pairs (u_i, −u_i) are exactly opposite: their cosines are set
        # to the exact constants +1 / −1, outside the graph. Computed, they are ±(1 − ulp), where arccos is off by
        # √(2·ulp) ≈ 3e-4; and sqrt/arccos have infinite slope at ±1, so 0·∞ would make every gradient NaN.
        own = torch.arange(start, min(start + chunk, n), device=u.device)
        exact = torch.zeros_like(cos)
        exact[own - start, own] = 1.0
        if half_space:
            exact[own - start, (own + n // 2) % n] = -1.0
        cos = torch.where(exact != 0, exact, cos)
        if angular:
            d = torch.arccos(cos) / math.pi
        else:
            d = (2.0 - 2.0 * cos).clamp_min(0.0).sqrt()
        d = d.clamp_min(eps)
        f = -torch.log(d) if s == 0 else d.pow(-s)
        f = f.index_put((own - start, own), f.new_zeros(len(own)))       # drop i == j
        total = total + f.sum()
    return total / (n * (n - 1))


def cayley_neumann(q_packed: torch.Tensor, b: int, k: int = 3) -> torch.Tensor:
    """Cayley–Neumann rotations from packed skew blocks: ``q_packed[r, b(b−1)/2]`` → ``R[r, b, b]``.

    ``Q`` = skew-symmetric matrix whose strict upper triangle (``triu_indices(b, b, 1)`` order) is the packed row;
    ``R = (I + Q)(I + Q + … + Q^k) = I + 2Q + … + 2Q^k + Q^{k+1}`` (k = 3: the POET Triton kernel's formula).
    """
    if q_packed.dim() != 2:
        raise ValueError(f"q_packed must have shape [r, b(b-1)/2], got {tuple(q_packed.shape)}")
    return cayley_neumann_packed(q_packed, b, k)          # saves only q_packed for backward, like the kernel


def block_rotate(x: torch.Tensor, R: torch.Tensor, perm: torch.Tensor | None = None) -> torch.Tensor:
    """``y = (x[..., perm] if perm is not None else x).view(..., r, b) @ R`` per block, i.e. the row vectors ``x``
    times ``blockdiag(R)`` (input-centric; the (r·b)×(r·b) matrix is never built)."""
    return _block_rotate(x, R, perm)


def kan_spline(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int,
               base_weight: torch.Tensor | None = None, base_fun: str = "silu") -> torch.Tensor:
    """KAN layer contraction ``y[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i]) (+ Σ_i b(x[b, i])·base_weight[i, o])``.

    ``x[B, in]``, ``grid[in, G+2k+1]`` (pykan's extended knots), ``coef[in, out, G+k]``, order ``k``; B-splines
    are pykan's (Cox–de Boor, zero outside the knots). The optional base branch (``base_weight[in, out]``, b =
    ``base_fun``: "silu" or "identity") is folded into the same contraction as one more basis function.
    Differentiable in ``x``, ``coef`` and ``base_weight`` (analytic backward). The twin computes the k+1 non-zero
    B-splines per input and does one matmul forward, two backward (see ``orthoscope/kernels/bspline.py``)."""
    return kan_spline_torch(x, grid, coef, k, base_weight, base_fun)


def harmonic_nll(h: torch.Tensor, centers: torch.Tensor, target: torch.Tensor, n: float) -> torch.Tensor:
    """Mean harmonic loss: ``mean_b [logsumexp_v ℓ_bv − ℓ_b,target]`` with ``ℓ_bv = −(n/2)·log(‖h_b − w_v‖² + ε)``,
    ``h[N, D]``, ``centers[V, D]``, ``target[N]``, ε = ``HARMONIC_EPS`` (see ``harmonic.py``)."""
    if h.dim() != 2 or target.shape != h.shape[:1]:
        raise ValueError(f"harmonic_nll needs h[N, D] and target[N]; got {tuple(h.shape)}, {tuple(target.shape)}")
    return F.cross_entropy(harmonic_logits(h, centers, n), target)
