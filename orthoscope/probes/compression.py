"""The linear mapping number (LMN) of "Grokking as Compression: A Nonlinear Complexity Perspective" (Liu, Zhong &
Tegmark 2023; arXiv 2310.05918) — a count of the distinct (local) linear maps a network applies to a set of samples,
the generalization of a ReLU network's number of linear regions to smooth activations.

**Definition, and where it comes from.** No official code exists and the paper's own text was not in the stored
sources we could search (2026-11-24); the definition below is the one stated by the IAIFI research summary of the
paper (research.iaifi.org, "Grokking as Compression", which describes the paper's three steps):

1. for every pair of samples ``(x_i, x_j)`` interpolate a straight path ``x(t) = x_i + t (x_j − x_i)``, ``t ∈ [0, 1]``,
   push it through the network and measure how straight the output path is by the **R² of a linear regression** of
   the outputs on t — ``L_ij = R²``, the **linear connectivity matrix** (``L_ii = 1``; ``L`` is symmetric);
2. stack the pairs into the ``N × N`` matrix ``L``;
3. treat the eigenvalue spectrum of ``L`` as a probability distribution and exponentiate its entropy (a von Neumann
   entropy): ``LMN = exp(−Σ_k p_k log p_k)``, ``p_k = λ_k / Σ λ``.

So if every pair maps linearly (``L = 𝟙𝟙ᵀ``) the LMN is 1; if samples fall into ``r`` groups, linear within a group
and not at all across (``L`` block diagonal with r equal blocks), it is exactly ``r`` — the region count. What the
summary leaves open, and our choice for each: the number of points on a path (``n_interp = 16``, evenly spaced,
ends included); R² for vector outputs (pooled: ``1 − Σ_d SS_res,d / Σ_d SS_tot,d``; a path whose output does not
move at all counts as linear, R² = 1); negative eigenvalues (L need not be positive semi-definite; they are
clipped to 0 before normalizing); which layer (the network's output, logits for a classifier); and which samples
(a fixed set you pass — the grokking toy uses training inputs). Every place that reports the number says that it
follows this reconstruction.
"""
from __future__ import annotations

import torch

from .base import Probe


@torch.no_grad()
def linear_connectivity(fn, x: torch.Tensor, *, n_interp: int = 16, max_batch: int = 65536) -> torch.Tensor:
    """``L[i, j]`` = pooled R² of the linear fit (in t) of ``fn`` along the straight path from ``x[i]`` to ``x[j]``.

    ``fn`` maps ``[B, *shape]`` inputs to ``[B, ...]`` outputs; ``x`` is ``[N, *shape]`` (floating point). Cost:
    ``N(N−1)/2 · n_interp`` forward evaluations, in chunks of at most ``max_batch`` inputs."""
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"x must be a floating-point tensor [N, features...]; got "
                         f"{type(x).__name__ if not torch.is_tensor(x) else (x.dtype, tuple(x.shape))}")
    if not isinstance(n_interp, int) or n_interp < 3:
        raise ValueError(f"n_interp must be an int ≥ 3 (a line through two points always fits), got {n_interp!r}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples, got {n}")
    i, j = torch.triu_indices(n, n, offset=1)
    t = torch.linspace(0.0, 1.0, n_interp, dtype=x.dtype, device=x.device)
    tc = t - t.mean()                                                  # centred regressor
    r2 = torch.empty(len(i), dtype=torch.float64, device=x.device)
    pairs_per_chunk = max(1, max_batch // n_interp)
    for start in range(0, len(i), pairs_per_chunk):
        a, b = x[i[start:start + pairs_per_chunk]], x[j[start:start + pairs_per_chunk]]
        shape = (-1,) + (1,) * (x.dim() - 1)
        path = a[:, None] + t.view(1, -1, *shape[1:]) * (b - a)[:, None]        # [P, K, *shape]
        out = fn(path.reshape(-1, *x.shape[1:])).double()
        out = out.reshape(path.shape[0], n_interp, -1)                            # [P, K, D]
        centred = out - out.mean(1, keepdim=True)
        ss_tot = (centred ** 2).sum((1, 2))
        # least squares in t per output coordinate: slope = Σ tc·y / Σ tc²; explained SS = slope² Σ tc²
        tcd = tc.double()
        slope = torch.einsum("k,pkd->pd", tcd, centred) / (tcd ** 2).sum()
        ss_explained = (slope ** 2).sum(1) * (tcd ** 2).sum()
        ss_res = (ss_tot - ss_explained).clamp_min(0.0)
        chunk = torch.where(ss_tot > 0, 1.0 - ss_res / torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot)),
                            torch.ones_like(ss_tot))
        r2[start:start + len(chunk)] = chunk
    L = torch.eye(n, dtype=torch.float64, device=x.device)
    L[i, j] = r2
    L[j, i] = r2
    return L


def linear_mapping_number(L: torch.Tensor) -> float:
    """``exp`` of the entropy of ``L``'s eigenvalue distribution (negative eigenvalues clipped to 0)."""
    if not torch.is_tensor(L) or L.dim() != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(f"L must be a square matrix, got {getattr(L, 'shape', type(L).__name__)}")
    lam = torch.linalg.eigvalsh(0.5 * (L + L.T).double()).clamp_min(0.0)
    total = lam.sum()
    if total <= 0:
        raise ValueError("L has no positive eigenvalue; is it a linear connectivity matrix (L_ii = 1)?")
    p = lam / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


class LinearMappingNumber(Probe):
    """Records ``lmn/model``: the linear mapping number of the model's output on fixed ``inputs`` (taken at
    construction; a few dozen samples are typical: the cost is ``N²/2 · n_interp`` forwards). ``fn(model)`` may
    return the function to probe (default: the model itself). Reads only the model."""

    name = "linear_mapping_number"

    def __init__(self, inputs: torch.Tensor, every: int = 100, *, n_interp: int = 16, fn=None):
        super().__init__(every)
        if not torch.is_tensor(inputs) or not inputs.is_floating_point() or inputs.dim() < 2 or len(inputs) < 2:
            raise ValueError("LinearMappingNumber(inputs=...) needs a floating-point tensor of at least 2 samples "
                             "[N, features...] (interpolating between samples needs continuous inputs; for tokens "
                             "pass one-hot or embedded inputs and a matching fn)")
        self.inputs, self.n_interp, self.fn = inputs.detach().clone(), n_interp, fn

    @torch.no_grad()
    def __call__(self, run) -> dict:
        model = run.model
        was_training = model.training
        model.eval()
        try:
            f = self.fn(model) if self.fn is not None else model
            L = linear_connectivity(f, self.inputs, n_interp=self.n_interp)
        finally:
            model.train(was_training)
        return {"lmn/model": linear_mapping_number(L)}
