"""Skew-symmetric matrices stored as their strict upper triangle (DESIGN §5, reference §1.2).

A b×b skew-symmetric ``Q`` (``Qᵀ = −Q``, zero diagonal) has ``b(b−1)/2`` free numbers. Every Sphere-Lab code base
(POET, peft OFT, OrthoMerge) stores exactly these, row-major in ``torch.triu_indices(b, b, 1)`` order:

    Q[..., rows, cols] = vec;  Q = Q − Qᵀ        (rows, cols = triu_indices(b, b, 1))

so ``vec[0] = Q[0, 1]``, ``vec[1] = Q[0, 2]``, …; parameters initialized to 0 give ``Q = 0`` and hence ``R = I``.
"""
from __future__ import annotations

import torch


def n_packed(b: int) -> int:
    """Number of stored numbers for a b×b skew-symmetric block: ``b(b−1)/2``."""
    return b * (b - 1) // 2


def block_size_from_packed(n: int) -> int:
    """Inverse of ``n_packed``: the b with ``b(b−1)/2 = n`` (ValueError when there is none)."""
    b = int(round((1 + (1 + 8 * n) ** 0.5) / 2))
    if n_packed(b) != n:
        raise ValueError(f"{n} is not b(b-1)/2 for any integer b (the packed length of a skew-symmetric block)")
    return b


def _triu(b: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(b, b, 1, device=device)
    return rows, cols


def skew_from_packed(vec: torch.Tensor, b: int) -> torch.Tensor:
    """``vec[..., b(b−1)/2]`` → skew-symmetric ``Q[..., b, b]`` (strict upper triangle = ``vec``, see module doc).

    Differentiable: the gradient of the packed vector is ``G[rows, cols] − G[cols, rows]``.
    """
    if not isinstance(b, int) or b <= 0:
        raise ValueError(f"b must be a positive int, got {b!r}")
    if vec.shape[-1:] != (n_packed(b),):
        raise ValueError(f"vec must have last dimension b(b-1)/2 = {n_packed(b)} for b={b}, got shape "
                         f"{tuple(vec.shape)}")
    rows, cols = _triu(b, vec.device)
    # Out-of-place scatter into the flattened last two dims: autograd-friendly for any batch shape.
    flat = vec.new_zeros(*vec.shape[:-1], b * b)
    index = (rows * b + cols).expand(*vec.shape[:-1], -1)
    upper = flat.scatter(-1, index, vec).reshape(*vec.shape[:-1], b, b)
    return upper - upper.transpose(-1, -2)


def packed_from_skew(q: torch.Tensor) -> torch.Tensor:
    """``Q[..., b, b]`` → ``vec[..., b(b−1)/2]``: its strict upper triangle (the lower one is ignored, so the
    round trip ``skew_from_packed(packed_from_skew(Q))`` returns ``Q`` exactly only for skew-symmetric ``Q``)."""
    if q.dim() < 2 or q.shape[-1] != q.shape[-2]:
        raise ValueError(f"q must be a (batch of) square matrices, got shape {tuple(q.shape)}")
    rows, cols = _triu(q.shape[-1], q.device)
    return q[..., rows, cols]
