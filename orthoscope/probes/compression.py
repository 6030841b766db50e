"""The linear mapping number (LMN) of "Grokking as Compression: A Nonlinear Complexity Perspective" (Liu, Zhong &
Tegmark 2023; arXiv 2310.05918) — a count of the distinct (local) linear maps a network applies to a set of samples,
the generalization of a ReLU network's number of linear regions to smooth activations.

**Definition — the paper's §2** (recovered 2026-12-07 from the paper's text, arXiv 2310.05918v1, as stored in the
public repository kraidiky/grokking-conceptual-review_en, ``papers/2310.05918…/original/…md``; it replaces the
earlier reconstruction from the IAIFI summary, which pooled R² over outputs and clipped negative eigenvalues):

1. for samples ``x_i, x_j`` interpolate ``x(λ) = x_i + λ (x_j − x_i)`` at **21** evenly spaced λ ∈ [0, 1] (Eq. 1,
   footnote 1) and push the path through the network ``f: R^d1 → R^d2``;
2. ``L_ij = (1/d2) Σ_k r²(y_k(λ), λ)`` — the **average over output dimensions** of the squared Pearson correlation
   of each output coordinate with λ (Eq. 2); ``L_ii = 1``; ``L_ij ∈ [0, 1]``: 1 for a straight output line, 0 for a
   symmetric parabola;
3. the eigenvalues of the symmetric ``L`` in **absolute value**, normalized, ``λ̃_i = |λ_i| / Σ|λ_j|`` (L is only
   almost positive semi-definite: the paper takes absolute values of the few small negative ones);
   ``S_NL = −Σ λ̃ log₂ λ̃`` and ``LMN = 2^S_NL`` (Eq. 3; the same number as ``exp`` of the entropy in nats).

So an affine map has LMN 1, and ``c`` equal clusters that are linear within and not at all across give exactly
``c``. The paper measures the LMN **between the first hidden layer and the output logits** (its §3: the samples are
mapped to their first-hidden-layer activations, and the path is interpolated there and pushed through the rest of
the network; Appendix A: the embedding and second hidden layer are less meaningful). ``LinearMappingNumber(split=…)``
does that. Our one choice the paper leaves open: an output coordinate that does not move along a path (zero
variance, r² undefined) counts as linear, r² = 1.
"""
from __future__ import annotations

import torch

from .base import Probe


@torch.no_grad()
def linear_connectivity(fn, x: torch.Tensor, *, n_interp: int = 21, max_batch: int = 65536) -> torch.Tensor:
    """``L[i, j]`` = mean over output coordinates of the r² of each coordinate against λ along the straight path
    from ``x[i]`` to ``x[j]`` (the paper's Eq. 2).

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
        raw = fn(path.reshape(-1, *x.shape[1:]))
        eps = torch.finfo(raw.dtype).eps if raw.is_floating_point() else 0.0
        out = raw.double()
        out = out.reshape(path.shape[0], n_interp, -1)                            # [P, K, D]
        centred = out - out.mean(1, keepdim=True)
        # Pearson r² of each output coordinate with λ: (Σ tc·y)² / (Σ tc² · Σ (y − ȳ)²), then the mean over
        # coordinates (the paper's Eq. 2); a coordinate that does not move (Σ (y − ȳ)² = 0) counts as linear
        tcd = tc.double()
        cov = torch.einsum("k,pkd->pd", tcd, centred)
        var_y = (centred ** 2).sum(1)
        # "does not move": its spread is at the output dtype's rounding level of its own magnitude
        moving = var_y > n_interp * (16 * eps * out.abs().amax(1)) ** 2 + 1e-300
        r2_d = torch.where(moving, cov ** 2 / ((tcd ** 2).sum() * torch.where(moving, var_y, torch.ones_like(var_y))),
                           torch.ones_like(var_y))
        chunk = r2_d.clamp(0.0, 1.0).mean(1)
        r2[start:start + len(chunk)] = chunk
    L = torch.eye(n, dtype=torch.float64, device=x.device)
    L[i, j] = r2
    L[j, i] = r2
    return L


def linear_mapping_number(L: torch.Tensor) -> float:
    """``2^S_NL``, ``S_NL`` the base-2 entropy of ``L``'s normalized absolute eigenvalues (the paper's Eq. 3)."""
    if not torch.is_tensor(L) or L.dim() != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(f"L must be a square matrix, got {getattr(L, 'shape', type(L).__name__)}")
    lam = torch.linalg.eigvalsh(0.5 * (L + L.T).double()).abs()
    total = lam.sum()
    if total <= 0:
        raise ValueError("L has only zero eigenvalues; is it a linear connectivity matrix (L_ii = 1)?")
    p = lam / total
    p = p[p > 0]
    return float(2.0 ** -(p * p.log2()).sum())


class LinearMappingNumber(Probe):
    """Records ``lmn/model``: the linear mapping number on fixed ``inputs`` (taken at construction; a few dozen
    samples are typical: the cost is ``N²/2 · n_interp`` forwards). Reads only the model.

    ``split(model) -> (head, tail)`` measures it at a hidden layer, as the paper does (between the first hidden layer
    and the logits): the samples are mapped by ``head`` at every call (the representation moves with training) and
    the paths are interpolated there and pushed through ``tail``. Without ``split``, ``fn(model)`` (default: the
    model itself) is probed on the inputs directly."""

    name = "linear_mapping_number"

    def __init__(self, inputs: torch.Tensor, every: int = 100, *, n_interp: int = 21, fn=None, split=None):
        super().__init__(every)
        if not torch.is_tensor(inputs) or not inputs.is_floating_point() or inputs.dim() < 2 or len(inputs) < 2:
            raise ValueError("LinearMappingNumber(inputs=...) needs a floating-point tensor of at least 2 samples "
                             "[N, features...] (interpolating between samples needs continuous inputs; for tokens "
                             "pass one-hot or embedded inputs and a matching fn, or a split at a hidden layer)")
        if fn is not None and split is not None:
            raise ValueError("LinearMappingNumber takes fn or split, not both")
        self.inputs, self.n_interp, self.fn, self.split = inputs.detach().clone(), n_interp, fn, split

    @torch.no_grad()
    def __call__(self, run) -> dict:
        model = run.model
        was_training = model.training
        model.eval()
        try:
            if self.split is not None:
                head, tail = self.split(model)
                L = linear_connectivity(tail, head(self.inputs), n_interp=self.n_interp)
            else:
                f = self.fn(model) if self.fn is not None else model
                L = linear_connectivity(f, self.inputs, n_interp=self.n_interp)
        finally:
            model.train(was_training)
        return {"lmn/model": linear_mapping_number(L)}
