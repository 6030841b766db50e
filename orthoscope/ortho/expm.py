"""Matrix exponential, exact and truncated (used by Pion's Lie-algebra steps and as a reference for rotations).

For skew-symmetric ``A`` the exact ``exp(A)`` is orthogonal; the truncated series

    E_d(A) = Σ_{i=0}^{d} Aⁱ / i!

is orthogonal only up to O(‖A‖^{d+1}) (Pion uses d = 2 by default).
"""
from __future__ import annotations

import torch


def _check_square(a: torch.Tensor) -> None:
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"A must be a (batch of) square matrices [..., n, n], got shape {tuple(a.shape)}")


def expm_truncated(a: torch.Tensor, degree: int) -> torch.Tensor:
    """``Σ_{i ≤ degree} Aⁱ / i!`` for ``A[..., n, n]`` (Horner: ``I + A(I + A/2(I + A/3(…)))``, ``degree`` products)."""
    _check_square(a)
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"degree must be an int ≥ 0, got {degree!r}")
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    out = eye
    for i in range(degree, 0, -1):
        out = eye + (a @ out) / i
    return out


def expm(a: torch.Tensor) -> torch.Tensor:
    """Exact matrix exponential (``torch.matrix_exp``: scaling-and-squaring Padé, differentiable)."""
    _check_square(a)
    return torch.matrix_exp(a)
